"""Input checks that fail early with a message naming the argument, its shape and the rule."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_finite", "check_last_dim"]


def check_last_dim(name: str, tensor: Tensor, size: int, *, min_ndim: int = 1) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``>= min_ndim`` dims and last dim ``size``."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < min_ndim or tensor.shape[-1] != size:
        raise ValueError(
            f"{name} must have shape (..., {size}) with at least {min_ndim} dim(s), "
            f"got {tuple(tensor.shape)}"
        )


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise ``ValueError`` if ``tensor`` holds NaN or infinity (synchronises on GPU)."""
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        count = int(bad.sum())
        raise ValueError(f"{name} has {count} non-finite value(s) (NaN or inf) of {tensor.numel()}")
