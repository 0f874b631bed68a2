"""``mcmc``: a model's posterior by any ``bayestorch.mcmc`` kernel, many chains at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bayestorch.infer.density import INIT_STRATEGIES, ModelDensity
from bayestorch.infer.posterior import Posterior, constrain_draws
from bayestorch.mcmc.base import Kernel
from bayestorch.mcmc.sample import KERNELS
from bayestorch.mcmc.sample import sample as run_chains

__all__ = ["mcmc"]

KernelSpec = str | type[Kernel] | Callable[[Callable], Kernel]


def _build_kernel(kernel: KernelSpec, density: ModelDensity, kernel_kwargs: dict) -> Kernel:
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
        return KERNELS[kernel](density.log_prob, **kernel_kwargs)
    if isinstance(kernel, Kernel):
        raise TypeError(
            "kernel must be a name, a Kernel class or a function log_prob_fn -> Kernel: a "
            "Kernel instance already holds another log density (e.g. kernel=lambda lp: "
            "bt.mcmc.NUTS(lp, max_tree_depth=8))"
        )
    if callable(kernel):
        built = kernel(density.log_prob, **kernel_kwargs)
        if not isinstance(built, Kernel):
            raise TypeError(f"kernel factory returned {type(built).__name__}, not a Kernel")
        return built
    raise TypeError(f"kernel must be a name, a Kernel class or a factory, got {kernel!r}")


def mcmc(
    model: Callable[..., Any],
    *args: Any,
    kernel: KernelSpec = "nuts",
    chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    init: str | dict[str, torch.Tensor] | torch.Tensor = "uniform",
    generator: torch.Generator | None = None,
    progress: bool = True,
    kernel_kwargs: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    checkpoint_fn: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 100,
    resume: dict[str, Any] | None = None,
    chain_groups: int | None = None,
    chain_data: dict[str, torch.Tensor] | None = None,
    **kwargs: Any,
) -> Posterior:
    """Sample the posterior of ``model(*args, **kwargs)`` with ``chains`` chains as one batch.

    Args:
        kernel: a name in ``bt.mcmc.KERNELS`` (``"nuts"``, ``"hmc"``, ``"chees"``, ``"rwm"``,
            ``"slice"``), a Kernel class, or a function ``log_prob_fn -> Kernel``; built
            on the model's unconstrained density with ``kernel_kwargs``.
        init: an init strategy of ``ModelDensity.init`` (``"uniform"``, ``"prior"``,
            ``"median"``), a dict of constrained values per site (each ``(chains,
            *site_shape)`` or ``site_shape``), or unconstrained points ``(chains, dim)``.
        generator: seeds the initial points and the chains (same seed, same draws).
        progress, checkpoint_fn, checkpoint_every, resume, chain_groups: as
            ``bt.mcmc.sample`` (resumable snapshots, progress bar, independent groups).
        chain_data: per-chain values of model keywords, ``{name: (chains, ...)}`` (each
            chain its own data set: many independent posteriors in one batch, e.g. for
            simulation-based calibration); see ``ModelDensity``.
        model_kwargs: model keywords that clash with these options' names.
        **kwargs: the model's keyword arguments (e.g. ``y=y``).

    Returns:
        A ``Posterior``: ``draws[name]`` of shape ``(chains, num_samples // thin,
        *site_shape)`` in the constrained space (deterministic sites included), with
        ``summary_table()``, ``log_likelihood()`` and ``to_arviz()``.
    """
    model_kwargs = {**kwargs, **(model_kwargs or {})}
    if chain_data:  # the model is traced with chain 0's values
        model_kwargs.update({name: value[0] for name, value in chain_data.items()})
    density = ModelDensity(model, *args, **model_kwargs)
    density.chain_data = chain_data
    position = _initial_position(density, init, chains, generator)
    built = _build_kernel(kernel, density, dict(kernel_kwargs or {}))
    result = run_chains(
        None,
        position,
        built,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thin=thin,
        generator=generator,
        progress=progress,
        checkpoint_fn=checkpoint_fn,
        checkpoint_every=checkpoint_every,
        resume=resume,
        chain_groups=chain_groups,
    )
    draws = constrain_draws(density, result.samples)
    return Posterior(draws, density, result.samples, dict(result.stats), result)


def _initial_position(density: ModelDensity, init, chains: int, generator) -> torch.Tensor:
    if isinstance(init, str):
        if init not in INIT_STRATEGIES:
            raise ValueError(f"unknown init {init!r}; choose one of {INIT_STRATEGIES}")
        return density.init(chains, generator, strategy=init)
    if isinstance(init, torch.Tensor):
        if init.shape != (chains, density.dim):
            raise ValueError(
                f"init as unconstrained points must have shape (chains, dim) = "
                f"({chains}, {density.dim}), got {tuple(init.shape)}"
            )
        return init
    if isinstance(init, dict):
        values = {}
        for name, site in density.latent_sites.items():
            if name not in init:
                raise ValueError(f"init dict has no value for latent site {name!r}")
            value = torch.as_tensor(init[name], dtype=density.dtype, device=density.device)
            if value.shape == site.shape:
                value = value.expand((chains,) + site.shape)
            values[name] = value
        return density.unconstrain(values)
    raise TypeError(f"init must be a strategy name, a dict or a tensor, got {type(init).__name__}")
