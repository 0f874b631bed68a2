"""Hamiltonian Monte Carlo with autograd gradients, many chains as one batch.

``hmc_step`` is the functional core; ``HMC`` the ``nn.Module`` shell whose step size and
inverse mass matrix are buffers tuned by Stan's windowed warm-up. ``EuclideanKernel`` holds
what HMC and NUTS share: the metric buffers and the warm-up.

References:
    Duane, Kennedy, Pendleton & Roweth, "Hybrid Monte Carlo", 1987;
    Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.adaptation.dual_averaging import da_final, da_init, da_update
from bayestorch.mcmc.adaptation.mass_matrix import (
    warmup_windows,
    welford_covariance,
    welford_init,
    welford_update,
)
from bayestorch.mcmc.adaptation.step_size import find_reasonable_step_size
from bayestorch.mcmc.adaptation.window import (
    FULL_WINDOW_SCHEDULE,
    WindowAdaptationState,
    pool_accept_prob,
    pool_step_size,
    warn_short_warmup,
)
from bayestorch.mcmc.base import Kernel, check_initial_log_prob, check_position
from bayestorch.mcmc.compiled import (
    TrajectoryFunction,
    check_compile,
    log_compile_choice,
    resolve_auto,
)
from bayestorch.mcmc.integrators import IntegratorState, leapfrog_trajectory, masked_trajectory
from bayestorch.mcmc.metrics import kinetic_energy, momentum_factor, sample_momentum
from bayestorch.mcmc.proposal import mh_accept
from bayestorch.utils.autograd import LogProbFn, log_prob_and_grad
from bayestorch.utils.random import rand_open01

__all__ = ["HMC", "EuclideanKernel", "HMCInfo", "HMCState", "hmc_init", "hmc_step"]

DIVERGENCE_THRESHOLD = 1000.0  # Stan's: an energy error above this ends the trajectory


class HMCState(NamedTuple):
    """Shape: ``position``, ``log_prob_grad``: ``(chains, dim)``; ``log_prob``: ``(chains,)``."""

    position: Tensor
    log_prob: Tensor
    log_prob_grad: Tensor


class HMCInfo(NamedTuple):
    """Per-transition diagnostics; every field ``(chains,)``."""

    accept_prob: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy: Tensor
    num_steps: Tensor


def hmc_init(position: Tensor, log_prob_fn: LogProbFn) -> HMCState:
    """Evaluate log density and gradient once at the start (checked: shape, finiteness)."""
    check_position(position)
    log_prob, grad = log_prob_and_grad(log_prob_fn, position)
    check_initial_log_prob(log_prob, position)
    return HMCState(position.detach(), log_prob, grad)


def hmc_step(
    state: HMCState,
    log_prob_fn: LogProbFn,
    *,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    num_steps: int,
    dense: bool = False,
    factor: Tensor | None = None,
    generator: torch.Generator | None = None,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
    return_proposal: bool = False,
    trajectory: TrajectoryFunction | None = None,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition: fresh momentum, ``num_steps`` leapfrog steps, Metropolis correction.

    Costs ``num_steps`` gradient evaluations and no host synchronisation. A NaN or an energy
    error above ``divergence_threshold`` is a divergence; the chain then stays where it was.

    Args:
        step_size: ``()`` or ``(chains,)``.
        inverse_mass_matrix: see ``bayestorch.mcmc.metrics``.
        factor: ``momentum_factor(inverse_mass_matrix, dense)`` if precomputed.
        return_proposal: also return the end of the trajectory (an ``IntegratorState``),
            accepted or not (trajectory-length adaptation needs it).
        trajectory: ``masked_trajectory`` as a (compiled) ``TrajectoryFunction``.

    Shape:
        state fields ``(chains, ...)``; returns the next state and ``HMCInfo`` fields ``(chains,)``.
    """
    if factor is None:
        factor = momentum_factor(inverse_mass_matrix, dense)
    if trajectory is not None and trajectory.compiled and step_size.dim() == 0:
        # One shape (and stride 1) for every call: a compiled step is not recompiled when a
        # per-chain warm-up step size becomes a pooled one.
        step_size = torch.empty_like(state.log_prob).copy_(step_size)
    momentum = sample_momentum(factor, state.position, dense, generator)
    energy0 = -state.log_prob + kinetic_energy(momentum, inverse_mass_matrix, dense)
    start = IntegratorState(state.position, momentum, state.log_prob, state.log_prob_grad)
    end, finite = leapfrog_trajectory(
        start, log_prob_fn, step_size, inverse_mass_matrix, dense, num_steps, trajectory
    )
    energy1 = -end.log_prob + kinetic_energy(end.momentum, inverse_mass_matrix, dense)
    # A trajectory that met a non-finite log density is divergent and rejected.
    delta = torch.where(finite, energy1 - energy0, torch.nan)
    is_divergent = ~(delta <= divergence_threshold)  # NaN counts as divergent
    proposed = HMCState(end.position, end.log_prob, end.log_prob_grad)
    new_state, is_accepted, accept_prob = mh_accept(-delta, state, proposed, generator)
    energy = torch.where(is_accepted, energy1, energy0)
    steps = torch.full_like(state.log_prob, num_steps, dtype=torch.long)
    info = HMCInfo(accept_prob, is_accepted, is_divergent, energy, steps)
    if return_proposal:
        return new_state, info, end
    return new_state, info


class EuclideanKernel(Kernel):
    """Shared shell of HMC-family kernels: step size and metric buffers, windowed warm-up.

    Step size: during warm-up every chain runs its own dual averaging (as a single Stan or
    NumPyro chain would), and the pooled step size sampling uses is the median of the
    chains' final step sizes (``pool_step_size``). Dual averaging on the mean acceptance
    over many chains follows a far less noisy statistic than one chain's, so it settles
    on a larger step: 128 chains on non-centred eight schools diverged 3x as often as 4.

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        step_size: initial step size; ``None`` picks one by the doubling heuristic at ``init``.
        mass_matrix: ``"diag"``, ``"dense"`` or ``"identity"`` (never adapted).
        inverse_mass_matrix: an initial one (shape per ``bayestorch.mcmc.metrics``).
        target_accept: dual-averaging target (Stan's 0.8).
        adapt_per_chain: one step size and metric per chain instead of pooled over chains.
        adapt_mass_matrix / adapt_step_size: switch either part of the warm-up off.
        compile: ``True`` runs the trajectory (leapfrog steps, NUTS leaves and merges,
            gradient included) as ``torch.compile``d functions (``bayestorch.mcmc.compiled``):
            a slow first call (seconds; cached on disk across processes), much faster steps on
            small models, the same draws to round-off. ``False``: eager. ``"auto"``: compiled
            when the warm-up is long enough to repay it (``compiled.resolve_auto``), decided
            at ``warmup_init`` and logged (``kernel.compile_reason``).
    """

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        *,
        step_size: float | None = None,
        mass_matrix: str = "diag",
        inverse_mass_matrix: Tensor | None = None,
        target_accept: float = 0.8,
        adapt_per_chain: bool = False,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        compile: bool | str = "auto",
    ) -> None:
        super().__init__(log_prob_fn)
        self.compile = check_compile(compile)
        self.use_compiled = compile is True
        self.compile_reason = {
            True: "compiled: compile=True",
            False: "eager: compile=False",
            "auto": "eager: compile='auto' and no warm-up (the choice is made at warmup_init)",
        }[compile]
        if mass_matrix not in ("diag", "dense", "identity"):
            raise ValueError(
                f"mass_matrix must be 'diag', 'dense' or 'identity', got {mass_matrix!r}"
            )
        if not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.dense = mass_matrix == "dense"
        self.target_accept = target_accept
        self.adapt_per_chain = adapt_per_chain
        self.adapt_step_size = adapt_step_size
        self.adapt_mass_matrix = adapt_mass_matrix and mass_matrix != "identity"
        empty = torch.empty(0)
        self.register_buffer(
            "step_size", torch.tensor(float(step_size)) if step_size is not None else empty
        )
        self.register_buffer(
            "inverse_mass_matrix", inverse_mass_matrix if inverse_mass_matrix is not None else empty
        )
        self.register_buffer("momentum_factor", empty.clone())

    warmup_step_size_per_chain = True
    """Warm-up adapts one step size per chain, pooled at the end (see the class docstring);
    ChEES-HMC, whose statistic is a cross-chain harmonic mean, adapts a pooled one."""

    # -- buffers ------------------------------------------------------------------------
    def set_inverse_mass_matrix(self, inverse_mass_matrix: Tensor) -> None:
        """Set the metric and its precomputed momentum factor."""
        self.inverse_mass_matrix = inverse_mass_matrix
        self.momentum_factor = momentum_factor(inverse_mass_matrix, self.dense)

    def _ensure_buffers(self, state: HMCState, generator: torch.Generator | None) -> None:
        position = state.position
        like = dict(dtype=position.dtype, device=position.device)
        dim = position.shape[-1]
        if self.inverse_mass_matrix.numel() == 0:
            eye = torch.eye(dim, **like) if self.dense else torch.ones(dim, **like)
            self.set_inverse_mass_matrix(eye)
        else:
            imm = self.inverse_mass_matrix.to(**like)
            expected = (dim, dim) if self.dense else (dim,)
            if imm.shape[-len(expected) :] != expected:
                raise ValueError(
                    f"inverse_mass_matrix must end in shape {expected} for dim={dim} "
                    f"({'dense' if self.dense else 'diagonal'} metric), got {tuple(imm.shape)}"
                )
            if self.momentum_factor.numel() == 0 or imm is not self.inverse_mass_matrix:
                self.set_inverse_mass_matrix(imm)
        if self.step_size.numel() == 0:
            eps = find_reasonable_step_size(
                *state,
                self.log_prob_fn,
                torch.ones((), **like),
                self.inverse_mass_matrix,
                self.momentum_factor,
                self.dense,
                generator,
            )
            self.step_size = eps if self.adapt_per_chain else eps.log().mean().exp()
        else:
            self.step_size = self.step_size.to(**like)

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> HMCState:
        """Evaluate log p and its gradient at ``position`` ``(chains, dim)``; fill unset buffers."""
        state = hmc_init(position, self.log_prob_fn)
        self._ensure_buffers(state, generator)
        return state

    def tuning_summary(self) -> dict[str, Tensor]:
        return {"step_size": self.step_size.mean()} if self.step_size.numel() else {}

    # -- warm-up ------------------------------------------------------------------------
    def _trajectory_functions(self, build):
        """The kernel's (compiled or eager) trajectory functions, built once per choice."""
        cache = self.__dict__.setdefault("_functions", {})
        key = self.use_compiled
        if key not in cache:
            cache[key] = build(key)
        return cache[key]

    def trajectory(self) -> TrajectoryFunction:
        """``masked_trajectory`` for this kernel's density, compiled or eager."""
        return self._trajectory_functions(
            lambda compiled: TrajectoryFunction(
                masked_trajectory, self.log_prob_fn, compiled, dense=self.dense
            )
        )

    def warmup_init(self, state: HMCState, num_warmup: int) -> WindowAdaptationState:
        if self.compile == "auto":
            self.use_compiled, self.compile_reason = resolve_auto(
                num_warmup, state.position.shape[0], state.position.device
            )
            log_compile_choice(type(self).__name__, self.compile_reason)
        self._window_ends = warmup_windows(num_warmup)
        self._slow_start = int(0.15 * num_warmup) if num_warmup < 150 else 75
        if self._window_ends:
            self._slow_start = min(self._slow_start, self._window_ends[0])
        if self.adapt_mass_matrix and num_warmup < FULL_WINDOW_SCHEDULE:
            warn_short_warmup(num_warmup, self._window_ends)
        step = self.step_size
        self._per_chain_step = self.adapt_per_chain or (
            self.adapt_step_size and self.warmup_step_size_per_chain
        )
        if self._per_chain_step and step.dim() == 0:
            step = step.expand(state.position.shape[0]).clone()
            self.step_size = step
        per_chain = self.adapt_per_chain
        return WindowAdaptationState(
            da_init(step), welford_init(state.position, self.dense, per_chain)
        )

    def warmup_update(
        self,
        adapt_state: WindowAdaptationState,
        state: HMCState,
        info,
        iteration: int,
        generator: torch.Generator | None = None,
    ) -> WindowAdaptationState:
        da, welford = adapt_state
        per_chain = self.adapt_per_chain
        if self.adapt_step_size:
            accept = self._step_size_statistic(info)
            da = da_update(da, accept, target=self.target_accept)
            self.step_size = da.log_step_size.exp()
        if self.adapt_mass_matrix and self._window_ends:
            if self._slow_start <= iteration <= self._window_ends[-1]:
                welford = welford_update(welford, state.position, self.dense, per_chain)
            if iteration in self._window_ends:
                self.set_inverse_mass_matrix(welford_covariance(welford, self.dense))
                welford = welford_init(state.position, self.dense, per_chain)
                if self.adapt_step_size:
                    eps = find_reasonable_step_size(
                        *state,
                        self.log_prob_fn,
                        self.step_size,
                        self.inverse_mass_matrix,
                        self.momentum_factor,
                        self.dense,
                        generator,
                    )
                    self.step_size = eps if self._per_chain_step else eps.log().mean().exp()
                    da = da_init(self.step_size)
        return WindowAdaptationState(da, welford)

    def _step_size_statistic(self, info) -> Tensor:
        """What dual averaging drives to ``target_accept``: each chain's acceptance
        statistic (warm-up step sizes per chain), or their mean over chains."""
        return pool_accept_prob(info.accept_prob, self._per_chain_step)

    def warmup_finalize(self, adapt_state: WindowAdaptationState) -> None:
        if self.adapt_step_size and bool((adapt_state.dual_averaging.count > 0).all()):
            step = da_final(adapt_state.dual_averaging)
            if step.dim() > 0 and not self.adapt_per_chain:
                step = pool_step_size(step)
            self.step_size = step

    def _jittered_step_size(self, state: HMCState, jitter: float, generator) -> Tensor:
        if jitter == 0.0:
            return self.step_size
        u = rand_open01(
            state.log_prob.shape,
            generator=generator,
            device=state.log_prob.device,
            dtype=state.log_prob.dtype,
        )
        return self.step_size * (1.0 + jitter * (2.0 * u - 1.0))


class HMC(EuclideanKernel):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps per transition.

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        num_steps: leapfrog steps per transition (gradient evaluations per step).
        step_size_jitter: each transition draws its step size per chain uniformly in
            ``step_size * [1 - j, 1 + j]`` (breaks periodicities; 0 = off).
        **kwargs: see ``EuclideanKernel``.

    Shape:
        positions ``(chains, dim)``.

    Example::

        >>> kernel = HMC(lambda x: -0.5 * (x**2).sum(-1), num_steps=8, step_size=0.3)
        >>> state = kernel.init(torch.zeros(4, 2))
        >>> state, info = kernel.step(state)
    """

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        num_steps: int = 10,
        *,
        step_size_jitter: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(log_prob_fn, **kwargs)
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
        if not 0.0 <= step_size_jitter < 1.0:
            raise ValueError(f"step_size_jitter must lie in [0, 1), got {step_size_jitter}")
        self.num_steps = int(num_steps)
        self.step_size_jitter = step_size_jitter

    def step(
        self, state: HMCState, generator: torch.Generator | None = None
    ) -> tuple[HMCState, HMCInfo]:
        return hmc_step(
            state,
            self.log_prob_fn,
            step_size=self._jittered_step_size(state, self.step_size_jitter, generator),
            inverse_mass_matrix=self.inverse_mass_matrix,
            num_steps=self.num_steps,
            dense=self.dense,
            factor=self.momentum_factor,
            generator=generator,
            trajectory=self.trajectory(),
        )
