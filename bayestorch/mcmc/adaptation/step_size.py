"""Initial step-size heuristic: double or halve until one leapfrog step crosses 80% acceptance.

References:
    Hoffman & Gelman, "The No-U-Turn Sampler", JMLR 2014, Algorithm 4 (Stan's init_stepsize).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayestorch.mcmc.integrators import IntegratorState, leapfrog
from bayestorch.mcmc.metrics import kinetic_energy, sample_momentum
from bayestorch.utils.autograd import LogProbFn

__all__ = ["find_reasonable_step_size"]


def find_reasonable_step_size(
    position: Tensor,
    log_prob: Tensor,
    log_prob_grad: Tensor,
    log_prob_fn: LogProbFn,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    factor: Tensor,
    dense: bool,
    generator: torch.Generator | None = None,
    target: float = 0.8,
    max_iterations: int = 40,
) -> Tensor:
    """A per-chain step size ``(chains,)`` near where one leapfrog step's acceptance is 0.8.

    Runs a few leapfrog steps for all chains at once; each chain stops doubling (or halving)
    when its acceptance crosses the target. Syncs with the host once per iteration: call it
    at the start of warm-up and at window ends, never inside a trajectory.
    """
    chains = position.shape[0]
    eps = step_size.expand(chains).clone()
    momentum = sample_momentum(factor, position, dense, generator)
    energy0 = -log_prob + kinetic_energy(momentum, inverse_mass_matrix, dense)
    start = IntegratorState(position, momentum, log_prob, log_prob_grad)
    log_target = math.log(target)

    def log_accept(eps: Tensor) -> Tensor:
        new = leapfrog(start, log_prob_fn, eps, inverse_mass_matrix, dense)
        energy = -new.log_prob + kinetic_energy(new.momentum, inverse_mass_matrix, dense)
        return torch.nan_to_num(energy0 - energy, nan=-torch.inf)

    direction = torch.where(log_accept(eps) > log_target, 2.0, 0.5).to(eps)
    active = torch.ones(chains, dtype=torch.bool, device=eps.device)
    for _ in range(max_iterations):
        trial = torch.where(active, eps * direction, eps)
        la = log_accept(trial)
        crossed = torch.where(direction > 1, la <= log_target, la > log_target)
        # A chain that crosses keeps the last step size on the good side of the target
        # when halving (the trial), and the last one before crossing when doubling.
        eps = torch.where(active & ~(crossed & (direction > 1)), trial, eps)
        active = active & ~crossed
        if not bool(active.any()):
            break
    return eps.clamp(min=1e-10, max=1e3)
