"""Leapfrog (velocity Verlet) integration with a cached gradient: one gradient per step.

References:
    Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011, section 5.2.3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.metrics import velocity
from bayestorch.mcmc.proposal import select
from bayestorch.utils.autograd import LogProbFn, log_prob_and_grad

__all__ = ["IntegratorState", "leapfrog", "leapfrog_masked", "leapfrog_trajectory"]


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
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> IntegratorState:
    """One velocity-Verlet step of size ``step_size`` (``()`` or ``(chains,)``; may be negative).

    Costs exactly one evaluation of ``log_prob_fn`` and its gradient: the gradient at the
    start is the one cached in ``state``. ``value_and_grad`` replaces
    ``log_prob_and_grad(log_prob_fn, .)`` (the compiled path's ``torch.func`` gradient).
    """
    eps = step_size.unsqueeze(-1) if step_size.dim() > 0 else step_size
    momentum = torch.addcmul(state.momentum, eps, state.log_prob_grad, value=0.5)
    position = torch.addcmul(state.position, eps, velocity(momentum, inverse_mass_matrix, dense))
    if value_and_grad is None:
        log_prob, grad = log_prob_and_grad(log_prob_fn, position)
    else:
        log_prob, grad = value_and_grad(position)
    momentum = torch.addcmul(momentum, eps, grad, value=0.5)
    return IntegratorState(position, momentum, log_prob, grad)


def leapfrog_masked(
    state: IntegratorState,
    finite: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    *,
    log_prob_fn: LogProbFn,
    dense: bool,
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> tuple[IntegratorState, Tensor]:
    """One leapfrog step for the chains still ``finite`` ``(chains,)``: a chain whose log
    density turns non-finite keeps its last finite point and drops out of ``finite``.
    The unit a compiled HMC trajectory repeats (``bayestorch.mcmc.compiled``)."""
    new = leapfrog(state, log_prob_fn, step_size, inverse_mass_matrix, dense, value_and_grad)
    finite = finite & torch.isfinite(new.log_prob)
    return select(finite, new, state), finite


def leapfrog_trajectory(
    state: IntegratorState,
    log_prob_fn: LogProbFn,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    dense: bool,
    num_steps: int,
    step: Callable | None = None,
) -> tuple[IntegratorState, Tensor]:
    """``num_steps`` leapfrog steps (``num_steps`` gradient evaluations, no host sync).

    A chain whose log density turns NaN or infinite stops at its last finite point, so
    ``log_prob_fn`` is never called on NaN positions; the returned mask ``(chains,)`` is
    false for such chains, which the caller must treat as divergent. ``step`` replaces
    ``leapfrog_masked`` (e.g. its compiled ``TrajectoryFunction``), called as
    ``step(state, finite, step_size, inverse_mass_matrix)``.
    """
    finite = torch.ones_like(state.log_prob, dtype=torch.bool)
    for _ in range(num_steps):
        if step is None:
            state, finite = leapfrog_masked(
                state,
                finite,
                step_size,
                inverse_mass_matrix,
                log_prob_fn=log_prob_fn,
                dense=dense,
            )
        else:
            state, finite = step(state, finite, step_size, inverse_mass_matrix)
    return state, finite
