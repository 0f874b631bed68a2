"""Autograd helpers: a batched log density and its gradient in one call.

Exceptions in the log density: inside a ``DensityErrorLog`` context (``bayestorch.mcmc.sample``
opens one for every run), an exception raised by ``log_prob_fn`` while a sampler explores is
a rejected (divergent) proposal, not the end of the run, as in Stan. To find the chains
whose positions raise, the batch is evaluated again without gradient in halves, down to
single chains (bisection: ``k`` failing chains out of ``n`` cost about ``2 k log2(n / k)``
extra forward calls, ``2 n`` at most), then the other chains in one call with gradient.
The failing chains get log density ``-inf`` (and a NaN gradient), which every kernel here
rejects (the HMC family marks the transition divergent), and the log counts them per
chain. An exception that no single chain reproduces is not about a position and
propagates, as do exceptions outside ``DENSITY_ERRORS`` (a ``TypeError``, ``IndexError``,
... is a bug in the density) and every exception at a kernel's initial position
(``bayestorch.mcmc.base.check_initial_log_prob`` raises the density's own exception).
Outside such a context exceptions propagate unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "DENSITY_ERRORS",
    "SCALAR_CPU_OPTIONS",
    "CompiledLogProb",
    "DensityErrorLog",
    "DensityErrorWarning",
    "LogProbFn",
    "LogProbShapeError",
    "compiling",
    "evaluate_log_prob",
    "log_prob_and_grad",
]

LogProbFn = Callable[[Tensor], Tensor]
"""Maps positions ``(chains, dim)`` to unnormalised log densities ``(chains,)``."""

DENSITY_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError, RuntimeError)
"""What a log density raises at a bad point: torch.distributions' argument checks
(``ValueError``), a failed Cholesky (``torch.linalg.LinAlgError``, a ``RuntimeError``),
overflow and division by zero (``ArithmeticError``)."""


SCALAR_CPU_OPTIONS = {"cpp.simdlen": 1}
"""Inductor options every bayestorch compile uses: scalar C++ on CPU (``cpp.*`` options do
not touch GPU code). torch 2.13's vectorised CPU code is wrong here: the compiled value and
gradient of a logistic regression on 569 x 30 features are off by ~190 (1 and 128 chains;
right at 4 and 8) and a vectorised NUTS loop corrupts the heap at 3,000 chains; scalar code
gives autograd's values to round-off (tests/utils/test_autograd.py)."""


class LogProbShapeError(ValueError):
    """``log_prob_fn`` returned the wrong shape: a bug, never caught as a density error."""


class DensityErrorWarning(RuntimeWarning):
    """A run went on after ``log_prob_fn`` raised at some proposals (rejected as divergent)."""


_ACTIVE: contextvars.ContextVar[DensityErrorLog | None] = contextvars.ContextVar(
    "bayestorch_density_error_log", default=None
)


class DensityErrorLog:
    """Counts, per chain, the exceptions a log density raised; a context manager.

    Inside ``with log:`` the density evaluations of ``log_prob_and_grad`` and
    ``evaluate_log_prob`` turn an exception at some chains' positions into log density
    ``-inf`` there (see the module docstring). A batch of ``k * num_chains`` positions
    (e.g. both ends of the slice sampler's intervals) stacks ``k`` copies of the chains:
    row ``r`` belongs to chain ``r % num_chains``.

    Example::

        >>> errors = DensityErrorLog(num_chains=4)
        >>> with errors:
        ...     state, info = kernel.step(state)  # doctest: +SKIP
        >>> errors.take()  # exceptions per chain since the last take  # doctest: +SKIP
    """

    def __init__(self, num_chains: int) -> None:
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
        self.num_chains = num_chains
        self.total = 0
        self.first_error: Exception | None = None
        self._counts = [0] * num_chains  # since the last take()
        self._zeros: dict[torch.device, Tensor] = {}
        self._tokens: list[contextvars.Token] = []
        self._last: tuple[weakref.ref, list[int], Exception] | None = None

    def __enter__(self) -> DensityErrorLog:
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc_info) -> None:
        _ACTIVE.reset(self._tokens.pop())

    def record(self, rows: list[int], error: Exception, log_prob: Tensor) -> None:
        """Count the failed ``rows`` of one evaluation that returned ``log_prob``."""
        for row in rows:
            self._counts[row % self.num_chains] += 1
        self.total += len(rows)
        if self.first_error is None:
            self.first_error = error
        self._last = (weakref.ref(log_prob), rows, error)

    def failure(self, log_prob: Tensor) -> tuple[list[int], Exception] | None:
        """The failed rows and exception of the evaluation that returned ``log_prob``."""
        if self._last is None or self._last[0]() is not log_prob:
            return None
        return self._last[1], self._last[2]

    def take(self, device: torch.device | str | None = None) -> Tensor:
        """Exceptions per chain ``(chains,)`` (long) since the last call; resets the count.

        Without new exceptions this is a cached zero tensor (no host-to-device copy)."""
        device = torch.device(device if device is not None else "cpu")
        if not any(self._counts):
            if device not in self._zeros:
                self._zeros[device] = torch.zeros(self.num_chains, dtype=torch.long, device=device)
            return self._zeros[device]
        counts, self._counts = self._counts, [0] * self.num_chains
        return torch.tensor(counts, dtype=torch.long, device=device)


def density_failure(log_prob: Tensor) -> tuple[list[int], Exception] | None:
    """The exception (and failed rows) behind the ``-inf`` entries of ``log_prob``, if the
    active ``DensityErrorLog`` caught one in the evaluation that returned it."""
    log = _ACTIVE.get()
    return None if log is None else log.failure(log_prob)


def check_log_prob_output(log_prob: Tensor, position: Tensor) -> None:
    """Raise a clear error when a log density has the wrong type, shape or dtype.

    Only shapes are checked (no host synchronisation); values are checked where a caller
    can afford it (kernel ``init``)."""
    if not isinstance(log_prob, Tensor):
        raise TypeError(
            f"log_prob_fn must return a torch.Tensor of shape ({position.shape[0]},), "
            f"got {type(log_prob).__name__}"
        )
    if log_prob.shape != position.shape[:1]:
        raise LogProbShapeError(
            f"log_prob_fn must map positions of shape (chains, dim) = {tuple(position.shape)} "
            f"to log densities of shape (chains,) = ({position.shape[0]},), got shape "
            f"{tuple(log_prob.shape)}; sum over the event dims, keep the chain dim"
        )
    if not log_prob.is_floating_point():
        raise TypeError(f"log_prob_fn must return a floating tensor, got {log_prob.dtype}")


def _eager_value_and_grad(log_prob_fn: LogProbFn, position: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        x = position.detach().requires_grad_(True)
        log_prob = log_prob_fn(x)
        check_log_prob_output(log_prob, x)
        if not log_prob.requires_grad:
            # A log density that does not depend on the position (e.g. constant): zero gradient.
            return log_prob.detach(), torch.zeros_like(x)
        (grad,) = torch.autograd.grad(log_prob.sum(), x)
    return log_prob.detach(), grad.detach()


def _eager_value(log_prob_fn: LogProbFn, position: Tensor) -> tuple[Tensor, None]:
    with torch.no_grad():
        log_prob = log_prob_fn(position)
    check_log_prob_output(log_prob, position)
    return log_prob.detach(), None


def _bisect(eager, position: Tensor, offset: int, parts: list, failed: list) -> None:
    """Evaluate ``position`` (rows ``offset...``); on an exception, each half again, down to
    single chains: ``k`` failing chains out of ``n`` cost about ``2 k log2(n / k)`` calls."""
    try:
        value, grad = eager(position)
    except LogProbShapeError:
        raise
    except DENSITY_ERRORS as error:
        if position.shape[0] == 1:
            failed.append((offset, error))
            return
        half = position.shape[0] // 2
        _bisect(eager, position[:half], offset, parts, failed)
        _bisect(eager, position[half:], offset + half, parts, failed)
    else:
        parts.append((offset, value, grad))


def _locate(eager, position: Tensor) -> tuple[list, list]:
    """Bisect a failed batch: ``(parts, failed)`` with ``parts`` = ``(offset, value, grad)``
    of the sub-batches that evaluate and ``failed`` = ``(row, exception)``."""
    parts, failed = [], []
    if position.shape[0] == 1:
        try:
            parts.append((0, *eager(position)))
        except LogProbShapeError:
            raise
        except DENSITY_ERRORS as error:
            failed.append((0, error))
        return parts, failed
    half = position.shape[0] // 2
    _bisect(eager, position[:half], 0, parts, failed)
    _bisect(eager, position[half:], half, parts, failed)
    return parts, failed


def _guarded(evaluate, value_only, eager, position: Tensor, log: DensityErrorLog | None):
    """``evaluate(position)``; inside ``log``, an exception at some chains gives them -inf
    (and a NaN gradient, when ``eager`` returns one).

    The failing chains are found by bisection with the cheaper ``value_only`` (no
    gradient); ``eager`` then evaluates the other chains in one call (if that raises too,
    e.g. in the backward pass, the bisection is redone with ``eager``)."""
    if log is None:
        return evaluate(position)
    try:
        return evaluate(position)
    except LogProbShapeError:
        raise
    except DENSITY_ERRORS as error:
        batch_error = error
    parts, failed = _locate(value_only, position)
    if not failed:  # no position raises on its own: the batch's error is not about positions
        raise batch_error
    if eager is not value_only:
        rows = torch.ones(position.shape[0], dtype=torch.bool)
        rows[[row for row, _ in failed]] = False
        ok = rows.nonzero().flatten().tolist()
        try:
            value, grad = eager(position[rows.to(position.device)]) if ok else (None, None)
            parts = [(row, value[k : k + 1], grad[k : k + 1]) for k, row in enumerate(ok)]
        except LogProbShapeError:
            raise
        except DENSITY_ERRORS:
            parts, failed = _locate(eager, position)
    dtype = parts[0][1].dtype if parts else position.dtype
    log_prob = torch.full(position.shape[:1], -torch.inf, dtype=dtype, device=position.device)
    grad = None if eager is value_only else torch.full_like(position, torch.nan)
    for offset, value, part_grad in parts:
        log_prob[offset : offset + value.shape[0]] = value
        if grad is not None:
            grad[offset : offset + value.shape[0]] = part_grad
    log.record([row for row, _ in failed], failed[0][1], log_prob)
    return log_prob, grad


def log_prob_and_grad(log_prob_fn: LogProbFn, position: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate ``log_prob_fn`` and its gradient at every chain's position in one backward pass.

    Chains are independent, so the gradient of the sum over chains is each chain's own
    gradient. The results are detached: a sampler's trajectory is not differentiated.
    Inside a ``DensityErrorLog`` context, chains whose position makes ``log_prob_fn``
    raise get log density ``-inf`` and a NaN gradient (see the module docstring).

    Shape:
        ``position``: ``(chains, dim)``; returns ``(chains,)`` and ``(chains, dim)``.
    """
    value_and_grad = getattr(log_prob_fn, "value_and_grad", None)
    log = _ACTIVE.get()

    def eager(x: Tensor) -> tuple[Tensor, Tensor]:
        return _eager_value_and_grad(log_prob_fn, x)

    def value_only(x: Tensor) -> tuple[Tensor, None]:
        return _eager_value(log_prob_fn, x)

    if value_and_grad is None:
        return _guarded(eager, value_only, eager, position, log)

    def compiled(x: Tensor) -> tuple[Tensor, Tensor]:
        log_prob, grad = value_and_grad(x.detach())
        check_log_prob_output(log_prob, x)
        return log_prob, grad

    # Chain by chain, the eager density (no recompilation for a batch of one).
    return _guarded(compiled, value_only, eager, position, log)


def evaluate_log_prob(log_prob_fn: LogProbFn, position: Tensor, *, guard: bool = True) -> Tensor:
    """``log_prob_fn(position)`` without gradient, detached and checked (shape, dtype).

    The evaluation of the gradient-free kernels (Metropolis, slice). Inside a
    ``DensityErrorLog`` context and with ``guard``, chains whose position makes
    ``log_prob_fn`` raise get ``-inf`` (see the module docstring); ``guard=False`` is for
    functions that are not the target (e.g. an independence proposal's density, where
    ``-inf`` would wrongly favour the point).

    Shape:
        ``position``: ``(chains, dim)``; returns ``(chains,)``.
    """

    def eager(x: Tensor) -> tuple[Tensor, None]:
        return _eager_value(log_prob_fn, x)

    log = _ACTIVE.get() if guard else None
    return _guarded(eager, eager, eager, position, log)[0]


@contextlib.contextmanager
def compiling(validate_args: bool | None = None, quiet: bool = False):
    """Around torch tracing or compiling a log density: torch.distributions' argument
    validation is put back afterwards (dynamo's first compilation in a process turns it off
    for everyone, ``TorchPatcher.patch``), or set to ``validate_args`` meanwhile (value
    checks cannot be part of a graph); ``quiet``: torch's own deprecation warnings while it
    imports and compiles inductor are not the user's business."""
    validate = torch.distributions.Distribution._validate_args
    if validate_args is not None:
        torch.distributions.Distribution.set_default_validate_args(validate_args)
    try:
        if quiet:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                yield
        else:
            yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)


class CompiledLogProb:
    """A log density whose value and gradient are computed by one ``torch.compile``d function.

    ``torch.func.grad_and_value`` turns the batched log density into a pure function of the
    positions, which ``torch.compile`` fuses into a few kernels: on small models this removes
    most of eager PyTorch's per-operation overhead (e.g. 8x on eight schools on CPU). The first
    call compiles (seconds); a new number of chains or dtype recompiles once. The log density
    must be functional (no in-place ops on its input, no ``.item()``). On CPU the generated
    code is scalar (``SCALAR_CPU_OPTIONS``): on large tensors (e.g. 128 chains x 569 data
    points) ATen's vectorised eager kernels can be faster.

    Calling the object evaluates the plain (eager) log density;
    ``bayestorch.utils.log_prob_and_grad`` uses ``value_and_grad``.

    Shape:
        ``(chains, dim) -> (chains,)`` and ``(chains, dim)``.
    """

    def __init__(self, log_prob_fn: LogProbFn, **compile_kwargs) -> None:
        self.log_prob_fn = log_prob_fn

        def summed(x: Tensor):
            log_prob = log_prob_fn(x)
            return log_prob.sum(), log_prob

        grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

        def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
            grad, (_, log_prob) = grad_and_value(x)
            return log_prob, grad

        compile_kwargs.setdefault("dynamic", False)
        if compile_kwargs.get("backend", "inductor") == "inductor":
            options = compile_kwargs.get("options") or {}
            compile_kwargs["options"] = {**SCALAR_CPU_OPTIONS, **options}
        with compiling(quiet=True):
            self._compiled = torch.compile(value_and_grad, **compile_kwargs)
        self._called = False

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log density ``(chains,)`` and gradient ``(chains, dim)`` at ``x``, compiled."""
        if self._called:
            with compiling():  # a new layout recompiles
                return self._compiled(x)
        with compiling(quiet=True):
            out = self._compiled(x)
        self._called = True
        return out

    def __call__(self, x: Tensor) -> Tensor:
        return self.log_prob_fn(x)
