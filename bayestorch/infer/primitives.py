"""The model language: ``sample``, ``deterministic``, ``factor``, ``plate``, ``random_module``.

A model is a plain Python function written for ONE parameter set with torch.distributions::

    def eight_schools(sigma, y=None):
        mu = bt.sample("mu", D.Normal(0.0, 5.0))
        tau = bt.sample("tau", D.HalfCauchy(5.0))
        with bt.plate("school", 8):
            theta = bt.sample("theta", D.Normal(mu, tau))
            bt.sample("y", D.Normal(theta, sigma), obs=y)

Run alone, it simulates (every site draws from its distribution). Under the inference
entry points of ``bayestorch.infer`` the same function becomes a log density on an
unconstrained space, evaluated for many chains at once (``torch.func.vmap``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from bayestorch.infer.runtime import Handler, active_handlers, apply_stack

__all__ = ["deterministic", "factor", "plate", "random_module", "sample"]


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a {what} site needs a non-empty str name, got {name!r}")


def sample(name: str, fn: Distribution, obs: Tensor | None = None) -> Tensor:
    """A random variable ``name ~ fn``; observed (its log-likelihood counts) when ``obs`` is given.

    Returns the site's value: ``obs`` if observed, otherwise whatever the active handlers
    decide (a prior draw when none is active, the sampler's current value under inference).

    Shape:
        ``fn.batch_shape`` (broadcast to the enclosing plates) ``+ fn.event_shape``.
    """
    _check_name(name, "sample")
    if not isinstance(fn, Distribution):
        raise TypeError(
            f"sample site {name!r}: fn must be a torch.distributions.Distribution, "
            f"got {type(fn).__name__}"
        )
    if obs is not None and not isinstance(obs, Tensor):
        obs = torch.as_tensor(obs)  # keeps the dtype of a numpy array or Python numbers
    msg = {
        "type": "sample",
        "name": name,
        "fn": fn,
        "value": obs,
        "obs": obs,
        "is_observed": obs is not None,
        "scale": 1.0,
        "plates": [],
    }
    return apply_stack(msg)["value"]


def deterministic(name: str, value: Tensor) -> Tensor:
    """Record a function of the other sites (kept with the draws, e.g. a derived quantity)."""
    _check_name(name, "deterministic")
    if not isinstance(value, Tensor):
        value = torch.as_tensor(value)
    msg = {"type": "deterministic", "name": name, "value": value, "scale": 1.0, "plates": []}
    return apply_stack(msg)["value"]


def factor(name: str, log_weight: Tensor) -> Tensor:
    """Add ``log_weight`` (summed) to the model's log density: a soft constraint, a
    likelihood written by hand, a Jacobian the model knows about."""
    _check_name(name, "factor")
    if not isinstance(log_weight, Tensor):
        log_weight = torch.as_tensor(log_weight)
    msg = {"type": "factor", "name": name, "value": log_weight, "scale": 1.0, "plates": []}
    return apply_stack(msg)["value"]


class plate(Handler):  # noqa: N801 - a primitive, named like the others
    """Conditionally independent repetitions along one batch dim, optionally mini-batched.

    ``with bt.plate("data", N) as idx:`` broadcasts every sample site inside it to size
    ``N`` at batch dim ``dim`` (allocated right to left by nesting: the outermost plate
    gets ``-1``, the next ``-2``, ...). With ``subsample_size=B`` the plate yields ``B``
    random indices ``idx`` of ``0..N-1`` (use them to index the data) and scales the
    log-likelihood of the sites inside by ``N / B``: an unbiased estimate of the full
    data term (SVI, SGHMC). Without subsampling ``idx`` is ``arange(N)``.
    """

    def __init__(
        self, name: str, size: int, subsample_size: int | None = None, dim: int | None = None
    ) -> None:
        _check_name(name, "plate")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"plate {name!r}: size must be a positive int, got {size!r}")
        if subsample_size is not None and (
            isinstance(subsample_size, bool)
            or not isinstance(subsample_size, int)
            or not 1 <= subsample_size <= size
        ):
            raise ValueError(
                f"plate {name!r}: subsample_size must be an int in [1, size={size}], "
                f"got {subsample_size!r}"
            )
        if dim is not None and (not isinstance(dim, int) or dim >= 0):
            raise ValueError(f"plate {name!r}: dim must be a negative int, got {dim!r}")
        self.name, self.size, self.subsample_size, self._dim = name, size, subsample_size, dim
        self.dim: int | None = None
        self.indices: Tensor | None = None

    @property
    def subsampled(self) -> bool:
        return self.subsample_size is not None and self.subsample_size < self.size

    def __enter__(self) -> Tensor:
        enclosing = [h for h in active_handlers() if isinstance(h, plate)]
        self.dim = self._dim if self._dim is not None else -1 - len(enclosing)
        for other in enclosing:
            if other.dim == self.dim:
                raise ValueError(
                    f"plate {self.name!r} uses batch dim {self.dim}, already taken by the "
                    f"enclosing plate {other.name!r}"
                )
        msg: dict[str, Any] = {
            "type": "plate",
            "name": self.name,
            "args": (self.size, self.subsample_size),
            "value": None,
            "scale": 1.0,
            "plates": [],
        }
        self.indices = apply_stack(msg)["value"]
        super().__enter__()
        return self.indices

    def process(self, msg: dict[str, Any]) -> None:
        if msg["type"] not in ("sample", "deterministic", "factor"):
            return
        assert self.indices is not None and self.dim is not None  # set by __enter__
        size = self.indices.shape[0]
        msg["plates"].append((self.name, self.dim, size))
        if self.subsampled:
            msg["scale"] = msg["scale"] * (self.size / size)
        if msg["type"] == "sample" and not _LAZY[0]:
            msg["fn"] = _broadcast_to_plate(msg["fn"], msg["name"], self.name, self.dim, size)


_LAZY = [False]


@contextlib.contextmanager
def lazy_plates() -> Iterator[None]:
    """Inside, plates do not expand their sites' distributions: a density evaluation at
    values whose shapes the first trace checked gets the same log-probs by broadcasting,
    without building expanded distributions."""
    previous = _LAZY[0]
    _LAZY[0] = True
    try:
        yield
    finally:
        _LAZY[0] = previous


def _broadcast_to_plate(fn: Distribution, site: str, plate_name: str, dim: int, size: int):
    batch = list(fn.batch_shape)
    if len(batch) < -dim:
        batch = [1] * (-dim - len(batch)) + batch
    current = batch[dim]
    if current == size:
        return fn if len(batch) == len(fn.batch_shape) else fn.expand(torch.Size(batch))
    if current != 1:
        raise ValueError(
            f"sample site {site!r}: its distribution has batch shape {tuple(fn.batch_shape)}, "
            f"size {current} at batch dim {dim}, but the enclosing plate {plate_name!r} has "
            f"size {size} there"
        )
    batch[dim] = size
    return fn.expand(torch.Size(batch))


PriorSpec = Distribution | Mapping[str, Distribution] | Callable[[str, Tensor], Distribution]


def random_module(name: str, module: nn.Module, prior: PriorSpec) -> Callable[..., Any]:
    """Give ``module``'s parameters a prior: each becomes a sample site ``name.param``.

    ``prior`` is one Distribution for every weight (a scalar one is expanded to each
    parameter's shape), a dict from parameter name to Distribution, or a function
    ``(param_name, param) -> Distribution``. Returns the forward pass with the sampled
    weights, through ``torch.func.functional_call`` (buffers are the module's own), so
    the same model runs for many chains at once under ``vmap``.

    Example::

        net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        forward = bt.random_module("net", net, prior=D.Normal(0.0, 1.0))
        mean = forward(x).squeeze(-1)
    """
    _check_name(name, "random_module")
    if not isinstance(module, nn.Module):
        raise TypeError(f"random_module {name!r}: module must be an nn.Module")
    params: dict[str, Tensor] = {}
    for pname, param in module.named_parameters():
        dist = _param_prior(name, pname, param, prior)
        params[pname] = sample(f"{name}.{pname}", dist)
    buffers = dict(module.named_buffers())

    def forward(*args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(module, {**params, **buffers}, args, kwargs)

    return forward


def _param_prior(name: str, pname: str, param: Tensor, prior: PriorSpec) -> Distribution:
    if isinstance(prior, Distribution):
        dist = prior
    elif isinstance(prior, Mapping):
        if pname not in prior:
            raise ValueError(
                f"random_module {name!r}: no prior for parameter {pname!r}; "
                f"the dict has {sorted(prior)}"
            )
        dist = prior[pname]
    elif callable(prior):
        dist = prior(pname, param)
    else:
        raise TypeError(
            f"random_module {name!r}: prior must be a Distribution, a dict or a callable"
        )
    if not isinstance(dist, Distribution):
        raise TypeError(f"random_module {name!r}: the prior of {pname!r} is not a Distribution")
    shape = param.shape
    if dist.batch_shape + dist.event_shape == shape:
        return Independent(dist, len(dist.batch_shape)) if dist.batch_shape else dist
    if dist.event_shape:
        raise ValueError(
            f"random_module {name!r}: prior of {pname!r} has event shape "
            f"{tuple(dist.event_shape)}, the parameter has shape {tuple(shape)}"
        )
    try:
        return Independent(dist.expand(shape), len(shape)) if shape else dist
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"random_module {name!r}: prior of {pname!r} with batch shape "
            f"{tuple(dist.batch_shape)} does not broadcast to the parameter's shape "
            f"{tuple(shape)}"
        ) from error
