"""Stan's windowed warm-up for Euclidean HMC kernels (HMC, NUTS), as pure functions.

Every warm-up iteration updates dual averaging of the step size; during the slow windows
(see ``warmup_windows``) positions feed a Welford (co)variance estimate; at the end of each
window the inverse mass matrix becomes the regularised estimate, the estimate restarts, the
step size is re-initialised by the heuristic and dual averaging restarts from it.
Adaptation is pooled over chains (one step size and one metric, the default) or per chain.

References:
    Stan Reference Manual, "Automatic parameter tuning"; Hoffman & Gelman 2014, section 3.2.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.adaptation.dual_averaging import DualAveragingState
from bayestorch.mcmc.adaptation.mass_matrix import WelfordState

__all__ = [
    "FULL_WINDOW_SCHEDULE",
    "WindowAdaptationState",
    "pool_accept_prob",
    "pool_step_size",
    "warn_short_warmup",
]

logger = logging.getLogger("bayestorch.mcmc")

FULL_WINDOW_SCHEDULE = 75 + 25 + 50
"""Warm-up iterations Stan's schedule needs for its initial buffer, one slow window and the
terminal buffer; shorter warm-ups shrink all three (``warmup_windows``)."""


class WindowAdaptationState(NamedTuple):
    dual_averaging: DualAveragingState
    welford: WelfordState


def pool_accept_prob(accept_prob: Tensor, per_chain: bool) -> Tensor:
    """The acceptance statistic dual averaging sees: per chain, or the mean over chains."""
    accept_prob = torch.nan_to_num(accept_prob, nan=0.0)
    return accept_prob if per_chain else accept_prob.mean()


def pool_step_size(step_size: Tensor) -> Tensor:
    """One step size from the chains' own ``(chains,)``: their (lower) median.

    Robust to a few chains stuck where the step size had to shrink, or easy places where it
    grew; the lower median of an even count leans to the safe side.
    """
    return step_size.median()


def warn_short_warmup(num_warmup: int, window_ends: list[int]) -> None:
    """Say (``logging``, level WARNING) that the warm-up is too short for Stan's schedule.

    A log record rather than a Python warning: short warm-ups are legitimate in smoke runs
    and tests, where a warning would be an error; the record still reaches the console.
    """
    if not window_ends:
        what = "the mass matrix is not adapted at all (it needs >= 20 iterations)"
    else:
        what = f"the metric windows shrink to {len(window_ends)} window(s) ending at {window_ends}"
    logger.warning(
        "num_warmup=%d is shorter than the %d iterations of Stan's adaptation schedule "
        "(75 fast + 25 slow + 50 fast): %s; pass a longer warm-up for a well-adapted metric",
        num_warmup,
        FULL_WINDOW_SCHEDULE,
        what,
    )
