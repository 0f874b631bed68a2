"""``mcmc``: a model's posterior by any ``bayestorch.mcmc`` kernel, many chains at once."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bayestorch.infer.density import INIT_STRATEGIES, ModelDensity
from bayestorch.infer.gradient import GRADIENT_MODES
from bayestorch.infer.posterior import Posterior, constrain_draws
from bayestorch.mcmc.base import Kernel
from bayestorch.mcmc.compiled import compile_backend, resolve_auto
from bayestorch.mcmc.sample import KERNELS
from bayestorch.mcmc.sample import sample as run_chains

__all__ = ["AUTO_GRADIENT_MIN_ITERATIONS", "mcmc"]

logger = logging.getLogger(__name__)

KernelSpec = str | type[Kernel] | Callable[[Callable], Kernel]

AUTO_GRADIENT_MIN_ITERATIONS = 1000
"""``gradient="auto"`` traces and compiles the model's gradient for runs of at least this
many iterations (warm-up + draws). Tracing and compiling cost a few seconds of CPU once
(inductor: 2-10 s per number of chains); a compiled gradient saves about 1-5 ms per
leapfrog step against the eager model on small models (``benchmarks/models.py``), so a
run of ~10^3 iterations of NUTS repays it several times over."""


class ModelLogProb:
    """The log density a kernel of ``bt.infer.mcmc`` holds: ``density.log_prob``, with a
    ``value_and_grad`` attribute (the traced or compiled gradient, used by
    ``bayestorch.utils.log_prob_and_grad``) only where ``gradient`` chose the fast path.
    (A kernel that compiles its trajectory traces this function into a graph of ATen
    operations itself: ``bayestorch.mcmc.compiled.TrajectoryFunction``.)

    Shape:
        ``(chains, dim) -> (chains,)``.
    """

    def __init__(self, density: ModelDensity) -> None:
        self.density = density

    def __call__(self, z: Tensor) -> Tensor:
        return self.density.log_prob(z)

    def use_fast_gradient(self) -> None:
        """Expose ``density.value_and_grad`` (its ``gradient_mode``) to the kernel."""
        self.value_and_grad = self.density.value_and_grad


def _build_kernel(kernel: KernelSpec, density: ModelDensity, kernel_kwargs: dict) -> Kernel:
    log_prob_fn = ModelLogProb(density)
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
        return KERNELS[kernel](log_prob_fn, **kernel_kwargs)
    if isinstance(kernel, Kernel):
        raise TypeError(
            "kernel must be a name, a Kernel class or a function log_prob_fn -> Kernel: a "
            "Kernel instance already holds another log density (e.g. kernel=lambda lp: "
            "bt.mcmc.NUTS(lp, max_tree_depth=8))"
        )
    if callable(kernel):
        built = kernel(log_prob_fn, **kernel_kwargs)
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
    gradient: str = "auto",
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
        gradient: how the kernel's gradients of the model are computed (see
            ``ModelDensity.value_and_grad``): ``"eager"`` (autograd through the model),
            ``"traced"`` (one ``make_fx`` graph per number of chains), ``"compiled"`` (that
            graph compiled by ``torch.compile``: 5-20x cheaper than eager on small models,
            a few seconds to compile), or ``"auto"``: compiled on CPU for runs of at least
            ``AUTO_GRADIENT_MIN_ITERATIONS`` iterations whose kernel does not compile its
            own trajectory (a compiled kernel differentiates the model itself), traced
            where no C++ compiler is found for inductor, eager otherwise. A model that
            cannot be traced runs eagerly (a ``RuntimeWarning`` for an explicit mode, a log
            message for ``"auto"``). Draws agree with the eager path to round-off.
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
    _choose_gradient(gradient, built, density, num_warmup, num_samples, chains, chain_groups)
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


def _choose_gradient(
    gradient: str,
    kernel: Kernel,
    density: ModelDensity,
    num_warmup: int,
    num_samples: int,
    chains: int,
    chain_groups: int | None,
) -> None:
    """Give the kernel's log density the fast gradient where ``gradient`` asks for it."""
    if gradient != "auto" and gradient not in GRADIENT_MODES:
        raise ValueError(f"gradient must be 'auto' or one of {GRADIENT_MODES}, got {gradient!r}")
    log_prob_fn = kernel.log_prob_fn
    if gradient == "auto":
        gradient, reason = _auto_gradient(
            kernel, density, num_warmup, num_samples, chains, chain_groups
        )
        logger.info("bt.infer.mcmc gradient='auto': %s", reason)
        density._gradients.warn = False  # a fallback is logged, not warned
    if gradient == "eager":
        return
    density.gradient_mode = gradient
    if isinstance(log_prob_fn, ModelLogProb):
        log_prob_fn.use_fast_gradient()


def _auto_gradient(
    kernel: Kernel,
    density: ModelDensity,
    num_warmup: int,
    num_samples: int,
    chains: int,
    groups: int | None,
) -> tuple[str, str]:
    iterations = num_warmup + num_samples
    if density.device.type != "cpu":
        return "eager", f"eager: the fast gradient is not measured on {density.device.type} yet"
    if iterations < AUTO_GRADIENT_MIN_ITERATIONS:
        return "eager", (
            f"eager: {iterations} < {AUTO_GRADIENT_MIN_ITERATIONS} iterations do not repay "
            "tracing and compiling the gradient"
        )
    compile = getattr(kernel, "compile", False)
    if compile == "auto":
        compile = resolve_auto(num_warmup, max(chains // (groups or 1), 1), density.device)[0]
    if compile is True:
        return "eager", "eager: the kernel compiles its trajectory, gradient included"
    if compile_backend() == "inductor" and not (
        shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    ):
        return "traced", "traced: no C++ compiler for inductor"
    return "compiled", f"compiled: {iterations} iterations of {chains} chain(s)"


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
