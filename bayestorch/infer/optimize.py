"""``map``: a posterior mode by L-BFGS on the unconstrained space."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bayestorch.infer.density import ModelDensity

__all__ = ["map"]


def map(  # noqa: A001 - the name users know (Pyro's and Stan's "MAP")
    model: Callable[..., Any],
    *args: Any,
    init: str = "median",
    num_steps: int = 500,
    jacobian: bool = False,
    generator: torch.Generator | None = None,
    tolerance: float = 1e-9,
    model_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """The maximum a posteriori values of the latent sites (and the deterministic ones).

    L-BFGS with a strong-Wolfe line search on the unconstrained vector. With
    ``jacobian=False`` (default, as Stan's ``optimizing``) it maximises the density of the
    constrained values, the usual posterior mode; ``jacobian=True`` maximises the
    unconstrained density instead (the mode a Laplace approximation on that space uses).

    Returns:
        ``{name: site_shape}``, plus ``"log_prob"``: the maximised log density ``()``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    density = ModelDensity(model, *args, **{**kwargs, **(model_kwargs or {})})
    z = density.init(1, generator, strategy=init).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [z],
        lr=1.0,
        max_iter=num_steps,
        tolerance_grad=tolerance,
        tolerance_change=tolerance * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -density.log_prob(z, jacobian=jacobian).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        log_prob = density.log_prob(z, jacobian=jacobian)[0]
        if not bool(torch.isfinite(log_prob)):
            raise FloatingPointError("map: the optimiser left the support (log density not finite)")
        values = {name: value[0] for name, value in density.constrain(z.detach()).items()}
    values["log_prob"] = log_prob
    return values
