"""Metropolis–Hastings acceptance, written once for every kernel."""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from bayestorch.utils.random import rand_open01

__all__ = ["mh_accept", "select"]

StateT = TypeVar("StateT", bound=NamedTuple)


def select(mask: Tensor, new: StateT, old: StateT) -> StateT:
    """Per-chain choice between two states: ``new`` where ``mask`` (chains,) is true.

    Works field by field on ``NamedTuple``s of tensors with a leading chain dim.
    """
    masks = {1: mask}  # one unsqueezed mask per field rank, not one reshape per field
    fields = []
    for a, b in zip(new, old):
        m = masks.get(a.dim())
        if m is None:
            m = masks[a.dim()] = mask.reshape(mask.shape + (1,) * (a.dim() - 1))
        fields.append(torch.where(m, a, b))
    return type(new)(*fields)


def mh_accept(
    log_accept_ratio: Tensor,
    current: StateT,
    proposed: StateT,
    generator: torch.Generator | None = None,
) -> tuple[StateT, Tensor, Tensor]:
    """Accept each chain's proposal with probability ``min(1, exp(log_accept_ratio))``.

    A NaN ratio (e.g. the log density or the energy was NaN at the proposal) rejects: the
    chain stays where it was. No host synchronisation.

    Shape:
        ``log_accept_ratio``: ``(chains,)``; states: fields ``(chains, ...)``.
        Returns ``(state, is_accepted (chains,) bool, accept_prob (chains,))``.
    """
    ratio = torch.nan_to_num(log_accept_ratio, nan=-torch.inf)
    accept_prob = ratio.clamp(max=0.0).exp()
    u = rand_open01(ratio.shape, dtype=ratio.dtype, device=ratio.device, generator=generator)
    is_accepted = u.log() < ratio
    return select(is_accepted, proposed, current), is_accepted, accept_prob
