"""Welford estimates of the posterior (co)variance and Stan's warm-up window schedule.

References:
    Welford, "Note on a method for calculating corrected sums of squares", 1962;
    Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for computing sample
    variances", 1979 (merging a batch of chains into the running estimate);
    Stan Reference Manual, "Automatic parameter tuning" (windows 75 / 25·2^k / 50 and the
    regularisation ``n/(n+5) C + 1e-3 · 5/(n+5) I``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["WelfordState", "warmup_windows", "welford_covariance", "welford_init", "welford_update"]


class WelfordState(NamedTuple):
    """Running mean and sum of squared deviations.

    Shape (pooled): ``count ()``, ``mean (dim,)``, ``m2 (dim,)`` or ``(dim, dim)`` when
    dense; per chain, a leading ``chains`` dim on each.
    """

    count: Tensor
    mean: Tensor
    m2: Tensor


def welford_init(like: Tensor, dense: bool, per_chain: bool) -> WelfordState:
    """An empty estimate for positions shaped like ``like`` ``(chains, dim)``."""
    chains, dim = like.shape
    lead = (chains,) if per_chain else ()
    zeros = dict(dtype=like.dtype, device=like.device)
    m2_shape = lead + ((dim, dim) if dense else (dim,))
    return WelfordState(
        torch.zeros(lead, **zeros),
        torch.zeros(lead + (dim,), **zeros),
        torch.zeros(m2_shape, **zeros),
    )


def welford_update(
    state: WelfordState, position: Tensor, dense: bool, per_chain: bool
) -> WelfordState:
    """Add one draw per chain: each chain's own estimate, or one pooled over all chains."""
    if per_chain:
        count = state.count + 1
        delta = position - state.mean
        mean = state.mean + delta / count.unsqueeze(-1)
        delta2 = position - mean
        if dense:
            m2 = state.m2 + delta.unsqueeze(-1) * delta2.unsqueeze(-2)
        else:
            m2 = state.m2 + delta * delta2
        return WelfordState(count, mean, m2)
    # Pooled: merge the batch (n_b = chains draws) into the running estimate (Chan et al.).
    n_b = position.shape[0]
    batch_mean = position.mean(0)
    centred = position - batch_mean
    batch_m2 = centred.T @ centred if dense else (centred * centred).sum(0)
    count = state.count + n_b
    delta = batch_mean - state.mean
    mean = state.mean + delta * (n_b / count)
    scale = state.count * n_b / count
    if dense:
        m2 = state.m2 + batch_m2 + scale * torch.outer(delta, delta)
    else:
        m2 = state.m2 + batch_m2 + scale * delta * delta
    return WelfordState(count, mean, m2)


def welford_covariance(state: WelfordState, dense: bool, regularize: bool = True) -> Tensor:
    """Sample (co)variance, shrunk toward ``1e-3 I`` as Stan does when ``regularize``."""
    n = state.count
    while n.dim() < state.m2.dim():
        n = n.unsqueeze(-1)
    cov = state.m2 / (n - 1).clamp_min(1)
    if not regularize:
        return cov
    shrunk = (n / (n + 5.0)) * cov
    if dense:
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return shrunk + 1e-3 * (5.0 / (n + 5.0)) * eye
    return shrunk + 1e-3 * (5.0 / (n + 5.0))


def warmup_windows(
    num_warmup: int, initial_buffer: int = 75, base_window: int = 25, terminal_buffer: int = 50
) -> list[int]:
    """The iterations (0-based) at which a slow (mass-matrix) window ends.

    Stan's schedule: a fast initial buffer (step size only), slow windows of 25, 50, 100, …
    (the last one stretched to reach the terminal buffer), a fast terminal buffer. With fewer
    than 20 warm-up iterations nothing but the step size is adapted; with fewer than
    ``75 + 25 + 50`` the buffers shrink to 15% / 75% / 10% of the warm-up.
    """
    if num_warmup < 20:
        return []
    if initial_buffer + base_window + terminal_buffer > num_warmup:
        initial_buffer = int(0.15 * num_warmup)
        terminal_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - initial_buffer - terminal_buffer
    ends = []
    start, size = initial_buffer, base_window
    last_slow = num_warmup - terminal_buffer  # first iteration of the terminal buffer
    while start < last_slow:
        end = start + size
        if end + 2 * size > last_slow:  # the next window would not fit: stretch this one
            end = last_slow
        ends.append(end - 1)
        start, size = end, 2 * size
    return ends
