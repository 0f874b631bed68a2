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

from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.adaptation.dual_averaging import DualAveragingState
from bayestorch.mcmc.adaptation.mass_matrix import WelfordState

__all__ = ["WindowAdaptationState", "pool_accept_prob"]


class WindowAdaptationState(NamedTuple):
    dual_averaging: DualAveragingState
    welford: WelfordState


def pool_accept_prob(accept_prob: Tensor, per_chain: bool) -> Tensor:
    """The acceptance statistic dual averaging sees: per chain, or the mean over chains."""
    accept_prob = torch.nan_to_num(accept_prob, nan=0.0)
    return accept_prob if per_chain else accept_prob.mean()
