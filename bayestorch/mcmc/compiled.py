"""The HMC family's transitions, eager or as one ``torch.compile``d graph call.

A transition of HMC, ChEES-HMC or NUTS runs many small steps: leapfrog steps, and for NUTS a
leaf's multinomial and U-turn bookkeeping and each doubling's merge. In eager PyTorch each of
their ~170 ATen operations per step costs microseconds of dispatch whatever the tensor size,
which is the whole cost on small models. Compiled, the whole transition after the momentum
draw is one function (``nuts._transition``, ``integrators.masked_trajectory``) whose steps
run in a ``torch.while_loop`` with the loop state packed into a few tensors (``pack``), the
gradient through ``torch.func`` (``func_value_and_grad``), compiled with static shapes by
inductor with its C++ wrapper (``INDUCTOR_CPU_OPTIONS``): one graph call per transition.

* Same draws: the compiled and the eager paths take the same inputs (the momentum and one
  key from which every uniform of the transition is hashed,
  ``bayestorch.utils.random.counter_uniforms``), so draws agree to round-off (tests check
  ``1e-10`` in float64).
* Compile once: inductor's code cache (``TORCHINDUCTOR_CACHE_DIR``) keeps the generated C++;
  a second process with the same model and shapes compiles none again (torch 2.13's FX-graph
  cache does not take ``while_loop`` graphs, so dynamo's trace and inductor's lowering are
  redone: seconds).
* One graph: the log density must not break the graph (Python branches on values,
  ``.item()``): then the kernel warns once, says why, and goes on eagerly. torch.distributions'
  argument checks are off inside compiled calls (value checks cannot be in a graph).
* Fallback: a call whose density raises (``bayestorch.utils.autograd.DENSITY_ERRORS``) is
  rerun eagerly, where ``log_prob_and_grad`` turns the exception into a rejected proposal;
  a compiler failure warns once and the kernel stays eager.

``compile="auto"`` (the kernels' default) compiles only where it pays: see ``resolve_auto``.
"""

from __future__ import annotations

import logging
import os
import shutil
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from bayestorch.utils.autograd import DENSITY_ERRORS, LogProbFn

__all__ = [
    "AUTO_MAX_CHAINS",
    "AUTO_MIN_WARMUP",
    "INDUCTOR_CPU_OPTIONS",
    "POINTWISE_CAT_MAX_NUMEL",
    "TrajectoryFunction",
    "check_compile",
    "compile_backend",
    "func_value_and_grad",
    "inductor_options",
    "pack",
    "random_ops",
    "resolve_auto",
    "unpack",
]

logger = logging.getLogger(__name__)

AUTO_MIN_WARMUP = 1000
"""``compile="auto"`` compiles for a warm-up at least this long (Stan's default length). A
cold compile of NUTS costs tens of seconds on CPU, a warm one (on-disk cache) a few; a
compiled NUTS leaf on a small model saves a few hundred microseconds, so only runs of ~10^5
leapfrog steps repay a cold compile (measured in ``benchmarks/mcmc.py``)."""

AUTO_MAX_CHAINS = 16
"""``compile="auto"`` compiles for at most this many chains. A compiled transition runs
fixed-shape tensor code: every NUTS leaf reads and writes its U-turn checkpoints at all tree
levels, and the C++ is scalar (``INDUCTOR_CPU_OPTIONS``); the eager path touches only the
levels it needs with vectorised ATen kernels. Measured per NUTS leaf (CPU): 8-14x faster
compiled at 1-4 chains; at 128 chains 2-3x faster on eight schools (10-d) but 2.7x *slower*
on a 100-d Gaussian (``benchmarks/mcmc.py``)."""


INDUCTOR_CPU_OPTIONS = {"cpp_wrapper": True, "cpp.simdlen": 1}
"""Inductor's options on CPU. A compiled trajectory is a ``while_loop`` whose body runs
thousands of times per second: with inductor's default Python wrapper each iteration pays
~1 µs per buffer it allocates or views (~150 for a NUTS leaf), with the C++ wrapper
(``cpp_wrapper``) far less. ``cpp.simdlen=1`` (scalar C++): torch 2.13's vectorised CPU code
for the NUTS loop corrupts the heap from ~100 chains on ("free(): invalid next size", with
or without the C++ wrapper; the scalar code gives the eager draws to 3e-14 at 100 and 3,000
chains); on eight schools the scalar code was also faster at 128 chains (437 vs 946 µs per
leaf)."""

POINTWISE_CAT_MAX_NUMEL = 64
"""Positions ``(chains, dim)`` of at most this many numbers also get inductor's
``force_pointwise_cat``: the packed loop state is computed inside the fused kernel rather
than written through a view per part. That saves allocations (eight schools, 1 chain: 54 vs
68 µs per NUTS leaf; 4 chains: equal) but recomputes shared inputs per element, which at 128
chains cost 2.8x (1,229 vs 437 µs)."""


def inductor_options(device: torch.device, numel: int) -> dict | None:
    """Inductor's options for a trajectory on ``device`` whose positions hold ``numel``
    numbers (``None``: inductor's defaults, used off CPU, where they are not measured)."""
    if device.type != "cpu":
        return None
    return {**INDUCTOR_CPU_OPTIONS, "force_pointwise_cat": numel <= POINTWISE_CAT_MAX_NUMEL}


def compile_backend() -> str:
    """The ``torch.compile`` backend of compiled trajectories: the environment variable
    ``BAYESTORCH_COMPILE_BACKEND``, else ``"inductor"``. ``"aot_eager"`` traces and
    functionalises exactly as inductor does but runs the graph in eager ATen without
    generating code: the test suite uses it to run every kernel test compiled in seconds."""
    return os.environ.get("BAYESTORCH_COMPILE_BACKEND", "inductor")


def check_compile(compile: Any) -> bool | str:
    """Validate a kernel's ``compile`` argument: ``True``, ``False`` or ``"auto"``."""
    if compile is True or compile is False or compile == "auto":
        return compile
    raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")


def _compiler_available(device: torch.device) -> tuple[bool, str]:
    if shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"):
        return True, "a C++ compiler is available"
    return False, "no C++ compiler for inductor on CPU"


def resolve_auto(num_warmup: int, chains: int, device: torch.device) -> tuple[bool, str]:
    """``compile="auto"``'s choice for a run of ``chains`` with ``num_warmup`` warm-up steps.

    Compiles on CPU (where it was measured) when a C++ compiler is found, the warm-up is at
    least ``AUTO_MIN_WARMUP`` long and there are at most ``AUTO_MAX_CHAINS`` chains. The
    choice is deterministic (never timed), so a seed gives the same draws on every machine.
    Returns ``(compile, reason)``.
    """
    if device.type != "cpu":
        return False, f"eager: compiling is not measured on {device.type} yet (compile=True)"
    available, why = _compiler_available(device)
    if not available:
        return False, f"eager: {why}"
    if chains > AUTO_MAX_CHAINS:
        return False, (
            f"eager: at {chains} > {AUTO_MAX_CHAINS} chains compiling does not pay on CPU "
            "(pass compile=True to compile anyway)"
        )
    if num_warmup < AUTO_MIN_WARMUP:
        return False, (
            f"eager: a warm-up of {num_warmup} < {AUTO_MIN_WARMUP} iterations is too short "
            "to repay compiling (pass compile=True to compile anyway)"
        )
    return True, f"compiled: {chains} chain(s), warm-up of {num_warmup} iterations, {why}"


def func_value_and_grad(log_prob_fn: LogProbFn) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``x -> (log_prob_fn(x), grad)`` through ``torch.func`` (traceable by ``torch.compile``).

    Shape: ``(chains, dim) -> (chains,), (chains, dim)``.
    """

    def summed(x: Tensor) -> tuple[Tensor, Tensor]:
        log_prob = log_prob_fn(x)
        return log_prob.sum(), log_prob

    grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        grad, (_, log_prob) = grad_and_value(x)
        return log_prob, grad

    return value_and_grad


def _own_code(fn: Callable) -> Callable:
    """A copy of ``fn`` with a code object of its own. Dynamo keeps one cache, and one
    recompilation limit, per code object: every kernel gets its own, so many models in one
    process (a test session) never exhaust a shared limit."""
    code = fn.__code__.replace()
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class TrajectoryFunction:
    """``fn(*args, log_prob_fn=..., value_and_grad=..., **static)``, eager or compiled.

    ``fn`` computes gradients through its ``value_and_grad`` keyword: ``None`` in eager
    (then ``bayestorch.utils.log_prob_and_grad``, with its guard against densities that
    raise), the ``torch.func`` one when compiled.

    Args:
        fn: a pure function of tensors (and ``NamedTuple``s of tensors).
        log_prob_fn: the log density ``(chains, dim) -> (chains,)``.
        compile: compile (on the first call) or stay eager.
        **static: keyword arguments fixed for this kernel (flags, thresholds).
    """

    def __init__(self, fn: Callable, log_prob_fn: LogProbFn, compile: bool, **static) -> None:
        self.fn = fn
        self.log_prob_fn = log_prob_fn
        self.static = static
        self.compiled = bool(compile)
        self._compiled_fn: Callable | None = None
        self._graphs: dict[tuple, Callable] = {}

    def eager(self, *args):
        return self.fn(*args, log_prob_fn=self.log_prob_fn, value_and_grad=None, **self.static)

    def _traced_log_prob(self, x: Tensor) -> Tensor:
        """The log density as its ``make_fx`` graph for ``x``'s layout when there is one
        (see ``_trace``), else the user's function (which dynamo then traces itself)."""
        graph = self._graphs.get((tuple(x.shape), x.dtype))
        return self.log_prob_fn(x) if graph is None else graph(x)

    def _trace(self, position: Tensor) -> None:
        """Trace the log density at ``position``'s layout into a graph of ATen operations
        (``make_fx`` on fake tensors: no value is seen, so a branch on a value fails rather
        than being baked in). Dynamo then compiles that graph, not the user's Python: its
        limits inside a ``while_loop`` body (e.g. torch 2.13 fails on ``self.w.T`` of a
        captured tensor under ``torch.func.grad``) do not reach the user's code. A density
        that cannot be traced so is left to dynamo."""
        key = (tuple(position.shape), position.dtype)
        if key in self._graphs:
            return
        from torch.fx.experimental.proxy_tensor import make_fx

        log_prob_fn = self.log_prob_fn

        def log_prob(x: Tensor) -> Tensor:  # one argument, whatever the callable is
            return log_prob_fn(x)

        try:
            graph = make_fx(log_prob, tracing_mode="fake", _allow_non_fake_inputs=True)(
                position.detach()
            )
        except Exception as error:  # the direct dynamo trace decides, and explains
            logger.info("no make_fx graph of the log density (%s): dynamo traces it", error)
            return
        random = random_ops(graph)
        if random:  # e.g. a subsampled plate: a graph would not draw from the user's generator
            logger.info("the log density draws random numbers (%s): dynamo traces it", random)
            return
        self._graphs[key] = graph

    def _build(self, device: torch.device, numel: int) -> Callable:
        fn, static = self.fn, self.static
        log_prob_fn = self._traced_log_prob
        value_and_grad = func_value_and_grad(log_prob_fn)

        def call(*args):
            return fn(*args, log_prob_fn=log_prob_fn, value_and_grad=value_and_grad, **static)

        backend = compile_backend()
        options = inductor_options(device, numel) if backend == "inductor" else None
        return torch.compile(_own_code(call), dynamic=False, backend=backend, options=options)

    def _first_call(self, position: Tensor, *args):
        # torch's own deprecation warnings while compiling are not the user's business.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._compiled_fn = self._build(position.device, position.numel())
            return self._compiled_fn(*args)

    def _call_compiled(self, *args):
        # torch.distributions' argument checks branch on values: they cannot be part of a
        # graph (a compiled trajectory is one), so they are off inside compiled calls, and
        # restored after (dynamo's first compilation in a process also turns them off for
        # everyone, ``TorchPatcher.patch``: a silent change to the user's densities).
        validate = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            position = next(
                t for t in torch.utils._pytree.tree_leaves(args) if isinstance(t, Tensor)
            )
            self._trace(position)
            if self._compiled_fn is None:
                return self._first_call(position, *args)
            return self._compiled_fn(*args)
        finally:
            Distribution.set_default_validate_args(validate)

    def __call__(self, *args):
        if not self.compiled:
            return self.eager(*args)
        try:
            return self._call_compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as error:
            self.compiled = False
            first_line = str(error).splitlines()[0] if str(error) else ""
            hint = ""
            if isinstance(error, torch._dynamo.exc.UncapturedHigherOrderOpError):
                hint = (
                    " A compiled trajectory is one graph, log density included: Python "
                    "branches on tensor values, .item() or prints in the log density break "
                    "it (use torch.where; raise from torch ops, e.g. a Cholesky, not Python)."
                )
            warnings.warn(
                f"torch.compile failed on {self.fn.__name__} ({type(error).__name__}: "
                f"{first_line}); this kernel goes on eagerly.{hint}",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(*args)
        except DENSITY_ERRORS:
            # The density raised at some chains: the eager path's guard rejects them.
            return self.eager(*args)


def pack(tensors: list[Tensor], copy: bool = True) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Stack tensors of equal dtype and shape: a compiled loop's carried state as a few
    tensors, not ~50 (each costs an allocation and checks per iteration). Returns the
    stacks and each tensor's (stack, index). Stacks are new memory; with ``copy=False`` a
    tensor alone in its group is only given a leading dim (a view: for a loop body's
    outputs, which are new tensors already).
    """
    groups: dict[tuple, int] = {}
    members: list[list[Tensor]] = []
    layout = []
    for t in tensors:
        group = groups.setdefault((t.dtype, t.shape), len(members))
        if group == len(members):
            members.append([])
        layout.append((group, len(members[group])))
        members[group].append(t)
    return [
        m[0].unsqueeze(0) if len(m) == 1 and not copy else torch.stack(m) for m in members
    ], layout


def unpack(stacks, layout: list[tuple[int, int]]) -> list[Tensor]:
    """The tensors ``pack`` stacked (views of the stacks)."""
    return [stacks[group][index] for group, index in layout]


def random_ops(graph: torch.fx.GraphModule) -> list[str]:
    """The random ATen operations of a traced graph (``nondeterministic_seeded``)."""
    return sorted(
        {
            str(node.target)
            for node in graph.graph.nodes
            if isinstance(node.target, torch._ops.OpOverload)
            and torch.Tag.nondeterministic_seeded in node.target.tags
        }
    )


def log_compile_choice(kernel_name: str, reason: str) -> None:
    """Say which path ``compile="auto"`` took and why (``logging``, level INFO)."""
    logger.info("%s compile='auto': %s", kernel_name, reason)
