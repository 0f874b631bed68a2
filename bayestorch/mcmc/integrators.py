"""Leapfrog (velocity Verlet) integration with a cached gradient: one gradient per step.

References:
    Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC, 2011, section 5.2.3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.compiled import loop, pack, unpack
from bayestorch.mcmc.metrics import velocity
from bayestorch.mcmc.proposal import select
from bayestorch.utils.autograd import LogProbFn, log_prob_and_grad

__all__ = [
    "IntegratorState",
    "leapfrog",
    "leapfrog_masked",
    "leapfrog_trajectory",
    "masked_trajectory",
]


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
    The unit of ``masked_trajectory``."""
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
    trajectory: Callable | None = None,
) -> tuple[IntegratorState, Tensor]:
    """``num_steps`` leapfrog steps (``num_steps`` gradient evaluations, no host sync).

    A chain whose log density turns NaN or infinite stops at its last finite point, so
    ``log_prob_fn`` is never called on NaN positions; the returned mask ``(chains,)`` is
    false for such chains, which the caller must treat as divergent. ``trajectory`` replaces
    ``masked_trajectory`` (e.g. its compiled ``TrajectoryFunction``), called as
    ``trajectory(state, step_size, inverse_mass_matrix, num_steps)`` with ``num_steps`` an
    int64 tensor ``()``.
    """
    steps = torch.tensor(num_steps, dtype=torch.long)
    if trajectory is None:
        return masked_trajectory(
            state, step_size, inverse_mass_matrix, steps, log_prob_fn=log_prob_fn, dense=dense
        )
    return trajectory(state, step_size, inverse_mass_matrix, steps)


def masked_trajectory(
    state: IntegratorState,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    num_steps: Tensor,
    *,
    log_prob_fn: LogProbFn,
    dense: bool,
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> tuple[IntegratorState, Tensor]:
    """``leapfrog_masked`` ``num_steps`` times (int64 ``()``): a Python loop in eager code
    (``value_and_grad is None``), a ``while_loop`` whose carried state is packed into a few
    tensors when compiled, so a whole trajectory is one graph call whatever its length."""
    finite = torch.ones_like(state.log_prob, dtype=torch.bool)
    if value_and_grad is None:
        for _ in range(int(num_steps)):
            state, finite = leapfrog_masked(
                state, finite, step_size, inverse_mass_matrix, log_prob_fn=log_prob_fn,
                dense=dense,
            )  # fmt: skip
        return state, finite
    packed, layout = pack([*state, finite])
    carried = len(packed) + 1

    def cond(step, *rest):
        return step < rest[carried - 1]  # num_steps

    def body(step, *rest):
        *fields, finite = unpack(rest[: carried - 1], layout)
        num_steps, step_size, inverse_mass_matrix = rest[carried - 1 :]
        new, finite = leapfrog_masked(
            IntegratorState(*fields), finite, step_size, inverse_mass_matrix,
            log_prob_fn=log_prob_fn, dense=dense, value_and_grad=value_and_grad,
        )  # fmt: skip
        return (step + 1, *pack([*new, finite])[0])

    step = torch.zeros((), dtype=torch.long, device=num_steps.device)
    out = loop(cond, body, (step, *packed), (num_steps, step_size, inverse_mass_matrix))
    *fields, finite = unpack(out[1:], layout)
    return IntegratorState(*fields), finite
