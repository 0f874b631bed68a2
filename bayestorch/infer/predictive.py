"""Prior and posterior predictive draws of a model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from bayestorch.infer.density import forked_rng, simulate
from bayestorch.infer.runtime import Handler

__all__ = ["predictive"]


class _Predict(Handler):
    """Run the model with latent values from ``given`` and fresh draws for every other
    unobserved sample site; record the value of every sample and deterministic site."""

    def __init__(self, given: Mapping[str, Tensor]) -> None:
        self.given = given
        self.values: dict[str, Tensor] = {}

    def process(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "plate":
            msg["value"] = torch.arange(msg["args"][0])  # predict every member of a plate
        elif msg["type"] == "sample" and not msg["is_observed"]:
            name = msg["name"]
            msg["value"] = self.given[name] if name in self.given else msg["fn"].sample()

    def postprocess(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "deterministic" or (msg["type"] == "sample" and not msg["is_observed"]):
            self.values[msg["name"]] = msg["value"]


def _posterior_draws(posterior: Any) -> dict[str, Tensor]:
    draws = getattr(posterior, "draws", posterior)
    if not isinstance(draws, Mapping):
        raise TypeError(
            "posterior must be a bt.infer posterior (with .draws), a dict of named draws "
            f"(chains, draws, *site_shape), or None for the prior; got {type(posterior).__name__}"
        )
    return dict(draws)


def predictive(
    model: Callable[..., Any],
    posterior: Any,
    *args: Any,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    return_sites: list[str] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """Predictive draws of ``model(*args, **kwargs)``.

    With a posterior (``bt.infer.mcmc``'s result, ``advi(...).sample(n)``, or a dict of
    named draws ``(chains, draws, *site_shape)``) each draw's latent values are
    substituted and every other unobserved site is drawn: call the model without its
    observations (``y=None``) to predict them. Returns the sites not in the posterior
    (and the deterministic ones), each ``(chains, draws, *shape)``.

    With ``posterior=None``: ``num_samples`` prior predictive draws of every sample and
    deterministic site, each ``(num_samples, *shape)``.

    ``generator`` seeds the draws (a private copy of the global RNG is used, since
    torch.distributions samplers take no generator). Model keywords that clash with
    these options go in ``model_kwargs``.
    """
    kwargs = {**kwargs, **(model_kwargs or {})}
    if posterior is None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(
                f"prior predictive (posterior=None) needs num_samples >= 1, got {num_samples!r}"
            )
        given: dict[str, Tensor] = {}
        leading: tuple[int, ...] = (num_samples,)
        device = None
    else:
        if num_samples is not None:
            raise ValueError("num_samples applies to the prior predictive only (posterior=None)")
        given = _posterior_draws(posterior)
        leading, device = _leading_shape(model, given, args, kwargs)
    total = math.prod(leading)

    def one(values: dict[str, Tensor]) -> dict[str, Tensor]:
        handler = _Predict(values)
        with handler:
            model(*args, **kwargs)
        return handler.values

    flat = {
        name: value.reshape((total,) + value.shape[len(leading) :]) for name, value in given.items()
    }
    inputs = flat if flat else {"__index__": torch.arange(total)}
    device = device or torch.device("cpu")
    with forked_rng(generator, device), torch.no_grad():
        out = simulate(one, inputs)
    keep = return_sites
    result = {}
    for name, value in out.items():
        if keep is not None and name not in keep:
            continue
        if keep is None and name in given:
            continue
        result[name] = value.reshape(leading + value.shape[1:])
    if keep is not None:
        missing = [n for n in keep if n not in result]
        if missing:
            raise ValueError(f"return_sites {missing} are not sites of the model")
    return result


def _leading_shape(model, given: dict[str, Tensor], args, kwargs):
    """The ``(chains, draws)`` leading dims of the posterior draws (from the traced site
    shapes) and their device."""
    from bayestorch.infer.density import _Trace, _validation

    tracer = _Trace()
    with torch.random.fork_rng(devices=[]), _validation(True), torch.no_grad():
        torch.manual_seed(0)
        with tracer:
            model(*args, **kwargs)
    leading = None
    for name, value in given.items():
        site = tracer.sites.get(name)
        if site is None or site["type"] != "sample":
            continue
        if site["is_observed"]:
            raise ValueError(
                f"site {name!r} is observed in this call but has posterior draws; to predict "
                "it, call the model without its observation"
            )
        shape = site["value"].shape
        if value.shape[value.dim() - len(shape) :] != shape:
            raise ValueError(
                f"posterior draws of {name!r} have shape {tuple(value.shape)}, not "
                f"(..., {', '.join(map(str, shape))})"
            )
        lead = tuple(value.shape[: value.dim() - len(shape)])
        if leading is not None and lead != leading:
            raise ValueError("posterior draws of different sites have different leading dims")
        leading = lead
    if leading is None:
        raise ValueError("the posterior has no draws of this model's latent sites")
    device = next(iter(given.values())).device
    return leading, device
