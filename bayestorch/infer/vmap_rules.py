"""Log densities of the torch families whose own ``log_prob`` vmap cannot batch.

torch's ``Multinomial.log_prob`` and ``Geometric.log_prob`` write through a boolean mask
(to get ``0 * log 0 = 0``), an op of data-dependent shape that ``torch.func.vmap``
refuses. The same values, computed with ``torch.where``, batch. Every other family of
torch.distributions batches as it is (checked family by family in the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Geometric, Independent, Multinomial

__all__ = ["site_log_prob"]


def _multinomial(fn: Multinomial, value: Tensor) -> Tensor:
    logits = fn.logits  # normalised by the inner Categorical
    terms = torch.where(value == 0, torch.zeros_like(logits), value * logits)
    return torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1) + terms.sum(-1)


def _geometric(fn: Geometric, value: Tensor) -> Tensor:
    probs = fn.probs
    failures = torch.where(value == 0, torch.zeros_like(probs), value * torch.log1p(-probs))
    return failures + probs.log()


_RULES: dict[type, Callable[[Any, Tensor], Tensor]] = {
    Multinomial: _multinomial,
    Geometric: _geometric,
}


def site_log_prob(fn: Distribution, value: Tensor) -> Tensor:
    """``fn.log_prob(value)``, through a vmap-safe rule where torch's own cannot batch."""
    if type(fn) is Independent:
        inner = site_log_prob(fn.base_dist, value)
        n = fn.reinterpreted_batch_ndims
        return inner.sum(tuple(range(-n, 0))) if n else inner
    rule = _RULES.get(type(fn))
    return fn.log_prob(value) if rule is None else rule(fn, value)
