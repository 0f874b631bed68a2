"""``advi``: automatic differentiation variational inference (Kucukelbir et al. 2017).

A Gaussian guide on the model's unconstrained space, mean-field (diagonal) or full-rank,
fitted by Adam on the reparameterised ELBO ``E_q[log p(x, T(u)) + log |J_T(u)|] + H[q]``
(the Gaussian entropy in closed form, as Stan's ADVI: lower variance than estimating
``-E_q[log q]``). The learning rate follows a cosine schedule to zero, so the last steps
average out the gradient noise. A plate with ``subsample_size`` gives stochastic
variational inference on mini-batches (its log-likelihood scaled by ``N / B``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal
from tqdm.auto import tqdm

from bayestorch.infer.density import ModelDensity
from bayestorch.infer.posterior import Posterior, constrain_draws
from bayestorch.utils.random import draw

__all__ = ["ADVIResult", "GaussianGuide", "advi"]

GUIDES = ("meanfield", "fullrank")


class GaussianGuide(nn.Module):
    """``q(u) = N(loc, S)`` on the unconstrained space: ``S`` diagonal (``"meanfield"``,
    stored as log scales) or full (``"fullrank"``, a lower-triangular factor with a
    log-diagonal).

    Shape:
        ``loc``: ``(dim,)``; ``distribution()`` has event shape ``(dim,)``.
    """

    def __init__(self, loc: Tensor, kind: str = "meanfield", init_scale: float = 0.1) -> None:
        super().__init__()
        if not isinstance(loc, Tensor) or not loc.is_floating_point():
            raise TypeError(f"loc must be a floating torch.Tensor, got {type(loc).__name__}")
        if loc.dim() != 1 or loc.shape[0] < 1:
            raise ValueError(f"loc must have shape (dim,) with dim >= 1, got {tuple(loc.shape)}")
        if not bool(torch.isfinite(loc).all()):
            raise ValueError("loc holds NaN or inf")
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a str, got {type(kind).__name__}")
        if kind not in GUIDES:
            raise ValueError(f"kind must be one of {GUIDES}, got {kind!r}")
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)):
            raise TypeError(f"init_scale must be a real number, got {type(init_scale).__name__}")
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be finite and > 0, got {init_scale!r}")
        self.kind = kind
        dim = loc.shape[-1]
        self.loc = nn.Parameter(loc.detach().clone())
        log_scale = torch.full((dim,), math.log(init_scale), dtype=loc.dtype, device=loc.device)
        if kind == "meanfield":
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.factor = nn.Parameter(torch.diag(log_scale))  # diagonal: log; below: raw

    def scale_tril(self) -> Tensor:
        """The lower-triangular factor of the covariance. Shape: ``(dim, dim)``."""
        if self.kind == "meanfield":
            return torch.diag(self.log_scale.exp())
        return self.factor.tril(-1) + torch.diag(self.factor.diagonal().exp())

    def distribution(self) -> Distribution:
        """``q`` as a torch distribution with event shape ``(dim,)``."""
        if self.kind == "meanfield":
            return Independent(Normal(self.loc, self.log_scale.exp()), 1)
        return MultivariateNormal(self.loc, scale_tril=self.scale_tril())

    def covariance(self) -> Tensor:
        """Shape: ``(dim, dim)``."""
        factor = self.scale_tril()
        return factor @ factor.T


class ADVIResult:
    """A fitted guide: ``sample`` named draws, ``posterior`` a ``Posterior`` for arviz.

    Attributes:
        guide: the ``GaussianGuide``.
        density: the model's ``ModelDensity``.
        elbo: the ELBO estimate at each step ``(num_steps,)``.
    """

    def __init__(self, guide: GaussianGuide, density: ModelDensity, elbo: Tensor) -> None:
        self.guide, self.density, self.elbo = guide, density, elbo

    def sample_unconstrained(
        self, num_samples: int, generator: torch.Generator | None = None, chains: int = 1
    ) -> Tensor:
        """Shape: ``(chains, num_samples, dim)``."""
        with torch.no_grad():
            z = draw(self.guide.distribution(), (chains * num_samples,), generator)
        return z.reshape(chains, num_samples, -1)

    def sample(
        self, num_samples: int, generator: torch.Generator | None = None, chains: int = 1
    ) -> dict[str, Tensor]:
        """Named constrained draws, the layout of ``Posterior.draws``.

        Shape: ``{name: (chains, num_samples, *site_shape)}``.
        """
        return constrain_draws(
            self.density, self.sample_unconstrained(num_samples, generator, chains)
        )

    def posterior(
        self, num_samples: int, generator: torch.Generator | None = None, chains: int = 1
    ) -> Posterior:
        """Draws from the guide as a ``Posterior`` (summary table, ``to_arviz``, LOO)."""
        z = self.sample_unconstrained(num_samples, generator, chains)
        return Posterior(constrain_draws(self.density, z), self.density, z)


def advi(
    model: Callable[..., Any],
    *args: Any,
    guide: str = "meanfield",
    num_steps: int = 5000,
    num_samples: int = 1,
    lr: float = 0.05,
    init: str = "median",
    init_scale: float = 0.1,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint_fn: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 500,
    resume: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ADVIResult:
    """Fit a Gaussian guide to the posterior of ``model(*args, **kwargs)`` by the ELBO.

    Args:
        guide: ``"meanfield"`` or ``"fullrank"``.
        num_steps: Adam steps; the learning rate ``lr`` decays to 0 on a cosine.
        num_samples: draws of the guide per ELBO estimate (one batched evaluation).
        init: where the guide's mean starts (an init strategy of ``ModelDensity.init``).
        init_scale: the guide's initial standard deviations.
        generator: seeds the initial point, every ELBO draw and the mini-batches.
        checkpoint_fn, checkpoint_every, resume: resumable snapshots (``torch.save``-able
            dicts), as ``bt.mcmc.sample``: a resumed fit equals an uninterrupted one.
        **kwargs: the model's keyword arguments.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
    density = ModelDensity(model, *args, **{**kwargs, **(model_kwargs or {})})
    density.subsample_generator = generator
    loc = density.init(1, generator, strategy=init)[0]
    q = GaussianGuide(loc, guide, init_scale)
    optimizer = torch.optim.Adam(q.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_steps)
    history = torch.full((num_steps,), torch.nan, dtype=loc.dtype, device=loc.device)
    start = 0
    if resume is not None:
        q.load_state_dict(resume["guide"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        history[: resume["step"]] = resume["elbo"].to(history)
        if generator is not None:
            generator.set_state(resume["rng_state"])
        start = int(resume["step"])
    bar = tqdm(total=num_steps, initial=start, disable=not progress, desc="advi", leave=False)
    try:
        for step in range(start, num_steps):
            dist = q.distribution()
            z = draw(dist, (num_samples,), generator)
            value = density.log_prob(z).mean() + dist.entropy()
            if not bool(torch.isfinite(value)):
                raise FloatingPointError(
                    f"advi: the ELBO estimate is not finite at step {step} "
                    f"({float(value.detach())}); "
                    "lower lr or init_scale, or check the model's supports"
                )
            optimizer.zero_grad()
            (-value).backward()
            optimizer.step()
            schedule.step()
            history[step] = value.detach()
            if progress:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(elbo=f"{float(value.detach()):.4g}", refresh=False)
            if checkpoint_fn is not None and (step + 1) % checkpoint_every == 0:
                checkpoint_fn(
                    {
                        "step": step + 1,
                        "guide": copy.deepcopy(q.state_dict()),
                        "optimizer": copy.deepcopy(optimizer.state_dict()),
                        "schedule": schedule.state_dict(),
                        "elbo": history[: step + 1].clone(),
                        "rng_state": generator.get_state()
                        if generator is not None
                        else torch.get_rng_state(),
                    }
                )
    finally:
        bar.close()
    return ADVIResult(q, density, history)
