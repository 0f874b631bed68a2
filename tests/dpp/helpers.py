"""Shared fixtures for the DPP tests: small kernels and subset codes."""

from __future__ import annotations

import torch

from bayestorch.dpp import all_subsets


def rbf_kernel(
    n: int, *, seed: int = 0, scale: float = 2.0, lengthscale: float = 1.0, device="cpu"
):
    """A full-rank RBF L-ensemble on random 2-D points (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    L = scale * torch.exp(-torch.cdist(x, x).square() / (2 * lengthscale**2))
    return L.to(device)


def random_features(n: int, d: int, *, seed: int = 0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) / d**0.25).to(device)


def subset_codes(masks: torch.Tensor) -> torch.Tensor:
    """Integer code sum_i mask_i 2^i of each mask (the order of ``all_subsets``)."""
    n = masks.shape[-1]
    powers = 2 ** torch.arange(n, device=masks.device)
    return (masks.long() * powers).sum(-1)


def exact_subset_probs(dist) -> torch.Tensor:
    """P(A) for every A in ``all_subsets`` order, from ``dist.log_prob``."""
    masks = all_subsets(dist.num_items, device=dist.mean.device)
    return dist.log_prob(masks).exp()
