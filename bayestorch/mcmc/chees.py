"""ChEES-HMC: jittered-length HMC whose trajectory length is tuned across many chains.

Every transition all chains integrate the same number of leapfrog steps,
``ceil(u T / step_size)`` with ``u ~ U(0, 1)`` shared by the chains, so batched chains never
wait for each other as they do with NUTS. During warm-up the trajectory length ``T`` follows
the gradient of the ChEES criterion (the change in the estimator of the expected squared
distance from the mean, estimated across chains) with Adam on ``log T``; the step size
follows dual averaging toward a harmonic-mean acceptance of 0.651, and the diagonal (or
dense) metric follows Stan's windows (shared with HMC and NUTS). The final ``T`` is a moving
average over the warm-up.

References:
    Hoffman, Radul & Sountsov, "An Adaptive-MCMC Scheme for Setting Trajectory Lengths in
    Hamiltonian Monte Carlo", AISTATS 2021.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.adaptation.window import WindowAdaptationState
from bayestorch.mcmc.hmc import EuclideanKernel, HMCState, hmc_step
from bayestorch.mcmc.metrics import velocity
from bayestorch.utils.autograd import LogProbFn
from bayestorch.utils.random import rand_open01

__all__ = ["ChEESHMC", "ChEESInfo", "chees_gradient"]

# Adam on log T (the paper's settings) and the per-update clip of log T.
_LEARNING_RATE, _BETA2, _ADAM_EPS, _LOG_UPDATE_CLIP = 0.025, 0.95, 1e-8, 0.35


class ChEESInfo(NamedTuple):
    """HMC's fields ``(chains,)`` plus what the adaptation needs ``(chains, dim)``."""

    accept_prob: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy: Tensor
    num_steps: Tensor
    proposed_position: Tensor
    proposed_velocity: Tensor
    initial_position: Tensor
    jitter: Tensor


class ChEESAdaptationState(NamedTuple):
    window: WindowAdaptationState
    log_length: Tensor  # current iterate of log T
    log_length_avg: Tensor  # its moving average: the final answer
    adam_v: Tensor  # Adam's second-moment estimate (first moment off: beta1 = 0)
    count: Tensor


def chees_gradient(info: ChEESInfo, length: Tensor) -> Tensor:
    """Acceptance-weighted cross-chain estimate of d ChEES / d log T (a scalar)."""
    ok = ~info.is_divergent & torch.isfinite(info.proposed_position).all(-1)
    weight = torch.where(ok, info.accept_prob.nan_to_num(0.0), 0.0)
    proposed = torch.where(ok.unsqueeze(-1), info.proposed_position, 0.0)
    proposed_mean = (weight.unsqueeze(-1) * proposed).sum(0) / weight.sum().clamp_min(1e-20)
    initial_mean = info.initial_position.mean(0)
    centred_new = proposed - proposed_mean
    centred_old = info.initial_position - initial_mean
    spread = (centred_new**2).sum(-1) - (centred_old**2).sum(-1)
    moving = (centred_new * torch.where(ok.unsqueeze(-1), info.proposed_velocity, 0.0)).sum(-1)
    per_chain = info.jitter * length * spread * moving
    return (weight * per_chain).sum() / weight.sum().clamp_min(1e-20)


class ChEESHMC(EuclideanKernel):
    """Jittered HMC with ChEES trajectory-length adaptation (for many chains).

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        trajectory_length: initial ``T`` (default: one step).
        max_num_steps: cap on leapfrog steps per transition.
        target_accept: dual-averaging target for the harmonic-mean acceptance (0.651).
        decay_rate: weight ``t^-decay_rate`` of the newest iterate in the moving averages.
        **kwargs: see ``EuclideanKernel`` (metric, initial step size, ...).

    Shape:
        positions ``(chains, dim)``; ``ChEESInfo`` fields ``(chains,)`` or ``(chains, dim)``.
    """

    warmup_step_size_per_chain = False  # the harmonic-mean statistic is cross-chain

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        *,
        trajectory_length: float | None = None,
        max_num_steps: int = 1000,
        target_accept: float = 0.651,
        decay_rate: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(log_prob_fn, target_accept=target_accept, **kwargs)
        self.max_num_steps = int(max_num_steps)
        self.decay_rate = decay_rate
        self.register_buffer(
            "trajectory_length",
            torch.tensor(float(trajectory_length)) if trajectory_length else torch.empty(0),
        )

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> HMCState:
        state = super().init(position, generator)
        if self.trajectory_length.numel() == 0:
            self.trajectory_length = self.step_size.mean().clone()
        self.trajectory_length = self.trajectory_length.to(position)
        return state

    def tuning_summary(self) -> dict[str, Tensor]:
        return {**super().tuning_summary(), "length": self.trajectory_length}

    def _step_size_statistic(self, info) -> Tensor:
        # Harmonic mean over non-divergent chains: penalises chains that barely move.
        ok = ~info.is_divergent
        inverse = torch.where(ok, 1.0 / info.accept_prob.clamp_min(1e-10), 0.0)
        harmonic = ok.sum() / inverse.sum().clamp_min(1e-10)
        return torch.where(ok.any(), harmonic, torch.zeros_like(harmonic)).clamp(0.0, 1.0)

    def step(
        self, state: HMCState, generator: torch.Generator | None = None, jitter: float | None = None
    ) -> tuple[HMCState, ChEESInfo]:
        if jitter is None:
            u = rand_open01((), generator=generator, device=state.position.device)
            jitter = float(u)
        eps = self.step_size
        # One host read per transition (never per leapfrog step): the shared step count.
        num_steps = math.ceil(jitter * float(self.trajectory_length) / float(eps.mean()))
        num_steps = min(max(num_steps, 1), self.max_num_steps)
        new_state, info, proposal = hmc_step(
            state,
            self.log_prob_fn,
            step_size=eps,
            inverse_mass_matrix=self.inverse_mass_matrix,
            num_steps=num_steps,
            dense=self.dense,
            factor=self.momentum_factor,
            generator=generator,
            return_proposal=True,
            trajectory=self.trajectory(),
        )
        chains = state.log_prob.shape[0]
        return new_state, ChEESInfo(
            *info,
            proposal.position,
            velocity(proposal.momentum, self.inverse_mass_matrix, self.dense),
            state.position,
            torch.full((chains,), jitter, dtype=state.log_prob.dtype, device=eps.device),
        )

    # -- warm-up: Stan's windows for step size and metric, Adam on log T ---------------
    def warmup_init(self, state: HMCState, num_warmup: int) -> ChEESAdaptationState:
        window = super().warmup_init(state, num_warmup)
        log_length = self.trajectory_length.log()
        zero = torch.zeros_like(log_length)
        return ChEESAdaptationState(window, log_length, log_length, zero, zero)

    def warmup_update(
        self, adapt_state, state, info, iteration: int, generator=None
    ) -> ChEESAdaptationState:
        window = super().warmup_update(adapt_state.window, state, info, iteration, generator)
        count = adapt_state.count + 1
        grad = chees_gradient(info, self.trajectory_length)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        # Adam without momentum, maximising (so the update follows +grad).
        adam_v = _BETA2 * adapt_state.adam_v + (1 - _BETA2) * grad**2
        v_hat = adam_v / (1 - _BETA2**count)
        update = (_LEARNING_RATE * grad / (v_hat.sqrt() + _ADAM_EPS)).clamp(
            -_LOG_UPDATE_CLIP, _LOG_UPDATE_CLIP
        )
        log_length = adapt_state.log_length + update
        weight = count.pow(-self.decay_rate)
        log_avg = (1 - weight) * adapt_state.log_length_avg + weight * log_length
        eps = self.step_size.mean()
        log_length = log_length.clamp(eps.log(), (self.max_num_steps * eps).log())
        self.trajectory_length = log_length.exp()
        return ChEESAdaptationState(window, log_length, log_avg, adam_v, count)

    def warmup_finalize(self, adapt_state: ChEESAdaptationState) -> None:
        super().warmup_finalize(adapt_state.window)
        eps = self.step_size.mean()
        self.trajectory_length = adapt_state.log_length_avg.exp().clamp(
            eps, self.max_num_steps * eps
        )
