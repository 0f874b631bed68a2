"""Nesterov dual averaging of the log step size toward a target acceptance statistic.

Pure functions on a ``NamedTuple`` of tensors, so the state batches (one step size per
chain, or one pooled), checkpoints and never syncs with the host.

References:
    Hoffman & Gelman, "The No-U-Turn Sampler", JMLR 2014, section 3.2 (Algorithm 5);
    Stan Reference Manual, "HMC algorithm parameters" (gamma=0.05, t0=10, kappa=0.75).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DualAveragingState", "da_final", "da_init", "da_update"]


class DualAveragingState(NamedTuple):
    """Shape: every field ``()`` (pooled) or ``(chains,)`` (per chain)."""

    log_step_size: Tensor  # the iterate x_t
    log_step_size_avg: Tensor  # its weighted average \bar x_t: the final answer
    error_avg: Tensor  # \bar H_t: running average of (target - accept_prob)
    count: Tensor  # t, number of updates so far
    mu: Tensor  # shrinkage point log(10 * initial step size)


def da_init(step_size: Tensor) -> DualAveragingState:
    """Start (or restart, after a mass-matrix update) from ``step_size``."""
    log_eps = step_size.log()
    zero = torch.zeros_like(log_eps)
    return DualAveragingState(log_eps, zero, zero, zero, log_eps + math.log(10.0))


def da_update(
    state: DualAveragingState,
    accept_prob: Tensor,
    target: float = 0.8,
    gamma: float = 0.05,
    t0: float = 10.0,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One update with the observed acceptance statistic (same shape as the state)."""
    count = state.count + 1
    weight = 1.0 / (count + t0)
    error_avg = (1 - weight) * state.error_avg + weight * (target - accept_prob)
    log_eps = state.mu - count.sqrt() / gamma * error_avg
    eta = count.pow(-kappa)
    log_eps_avg = eta * log_eps + (1 - eta) * state.log_step_size_avg
    return DualAveragingState(log_eps, log_eps_avg, error_avg, count, state.mu)


def da_final(state: DualAveragingState) -> Tensor:
    """The step size to sample with: ``exp`` of the averaged iterate."""
    return state.log_step_size_avg.exp()
