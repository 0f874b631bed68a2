"""Leapfrog (velocity Verlet) integration with a cached gradient: one gradient per step.

References:
    Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011, section 5.2.3.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.metrics import velocity
from bayestorch.mcmc.proposal import select
from bayestorch.utils.autograd import LogProbFn, log_prob_and_grad

__all__ = ["IntegratorState", "leapfrog", "leapfrog_trajectory"]


class IntegratorState(NamedTuple):
    """A point of phase space with the log density and gradient cached there.

    Shape: ``position``, ``momentum``, ``log_prob_grad``: ``(chains, dim)``;
    ``log_prob``: ``(chains,)``.
    """

    position: Tensor
    momentum: Tensor
    log_prob: Tensor
    log_prob_grad: Tensor


def leapfrog(
    state: IntegratorState,
    log_prob_fn: LogProbFn,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    dense: bool,
) -> IntegratorState:
    """One velocity-Verlet step of size ``step_size`` (``()`` or ``(chains,)``; may be negative).

    Costs exactly one evaluation of ``log_prob_fn`` and its gradient: the gradient at the
    start is the one cached in ``state``.
    """
    eps = step_size.unsqueeze(-1) if step_size.dim() > 0 else step_size
    momentum = state.momentum + 0.5 * eps * state.log_prob_grad
    position = state.position + eps * velocity(momentum, inverse_mass_matrix, dense)
    log_prob, grad = log_prob_and_grad(log_prob_fn, position)
    momentum = momentum + 0.5 * eps * grad
    return IntegratorState(position, momentum, log_prob, grad)


def leapfrog_trajectory(
    state: IntegratorState,
    log_prob_fn: LogProbFn,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    dense: bool,
    num_steps: int,
) -> tuple[IntegratorState, Tensor]:
    """``num_steps`` leapfrog steps (``num_steps`` gradient evaluations, no host sync).

    A chain whose log density turns NaN or infinite stops at its last finite point, so
    ``log_prob_fn`` is never called on NaN positions; the returned mask ``(chains,)`` is
    false for such chains, which the caller must treat as divergent.
    """
    finite = torch.ones_like(state.log_prob, dtype=torch.bool)
    for _ in range(num_steps):
        new = leapfrog(state, log_prob_fn, step_size, inverse_mass_matrix, dense)
        finite = finite & torch.isfinite(new.log_prob)
        state = select(finite, new, state)
    return state, finite
