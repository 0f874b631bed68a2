"""``sghmc``: stochastic-gradient HMC on a model, mini-batched through its plates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from bayestorch.infer.density import ModelDensity
from bayestorch.infer.posterior import Posterior, constrain_draws
from bayestorch.mcmc.sghmc import SGHMC

__all__ = ["sghmc"]


def sghmc(
    model: Callable[..., Any],
    *args: Any,
    chains: int = 4,
    num_burnin: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    lr: float = 1e-3,
    friction: float = 0.05,
    num_data: int | None = None,
    init: str = "uniform",
    generator: torch.Generator | None = None,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Posterior:
    """Sample ``model(*args, **kwargs)`` by SGHMC (``bt.mcmc.SGHMC``), all chains at once.

    The energy is the model's unconstrained negative log density, whose mini-batch
    estimate comes from the plates with a ``subsample_size`` (fresh indices each step,
    drawn with ``generator``). ``bt.mcmc.SGHMC`` works on a mean loss times ``num_data``:
    the loss here is ``-log_prob / num_data``, so its ``lr`` keeps that class's meaning
    (Chen et al.'s ``eta = lr / num_data``). ``num_data`` defaults to the size of the
    model's subsampled plate (or 1 without one). There is no Metropolis correction: the
    draws carry a discretisation and gradient-noise bias that shrinks with ``lr``.

    Returns:
        A ``Posterior`` with draws ``(chains, num_samples // thin, *site_shape)``.
    """
    for name, value in (("chains", chains), ("num_samples", num_samples), ("thin", thin)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(num_burnin, bool) or not isinstance(num_burnin, int) or num_burnin < 0:
        raise ValueError(f"num_burnin must be a non-negative int, got {num_burnin!r}")
    density = ModelDensity(model, *args, **{**kwargs, **(model_kwargs or {})})
    density.subsample_generator = generator
    if num_data is None:
        sizes = {size for size, _ in density._subsampled.values()}
        if len(sizes) > 1:
            raise ValueError(f"plates of sizes {sorted(sizes)} are subsampled: pass num_data")
        num_data = sizes.pop() if sizes else 1
    z = density.init(chains, generator, strategy=init).clone().requires_grad_(True)
    sampler = SGHMC([z], lr=lr, friction=friction, num_data=num_data)
    kept = []
    total = num_burnin + num_samples
    for step in tqdm(range(total), disable=not progress, desc="sghmc", leave=False):
        sampler.zero_grad()
        loss = -density.log_prob(z).sum() / num_data
        loss.backward()
        sampler.step(generator=generator)
        if step >= num_burnin and (step - num_burnin + 1) % thin == 0:
            kept.append(z.detach().clone())
    samples = torch.stack(kept, dim=1)
    if not bool(torch.isfinite(samples).all()):
        raise FloatingPointError("sghmc: non-finite draws; lower lr or raise friction")
    return Posterior(constrain_draws(density, samples), density, samples)
