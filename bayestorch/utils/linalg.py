"""Numerically careful linear algebra shared by GPs, Kalman filters, DPPs and HMC metrics."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["NotPSDError", "safe_cholesky", "symmetrize"]


class NotPSDError(ValueError):
    """A matrix that must be symmetric positive (semi-)definite is not, even with jitter."""


def symmetrize(matrix: Tensor) -> Tensor:
    """``(A + A^T) / 2`` over the last two dims: removes round-off asymmetry."""
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"matrix must have shape (..., n, n), got {tuple(matrix.shape)}")
    return 0.5 * (matrix + matrix.transpose(-1, -2))


def safe_cholesky(
    matrix: Tensor,
    *,
    name: str = "matrix",
    jitter: float | None = None,
    max_tries: int = 6,
    warn: bool = True,
) -> Tensor:
    """Lower Cholesky factor, adding escalating diagonal jitter when the plain factorisation fails.

    Tries ``A``, then ``A + j I`` with ``j = jitter * 10^i`` (``jitter`` defaults to 1e-8 in
    float64, 1e-6 otherwise, scaled by the mean diagonal), for ``i < max_tries``; a batch element
    gets jitter only if it needs it. Uses ``torch.linalg.cholesky_ex``, so the happy path never
    synchronises with the host beyond one check of the info flags.

    Args:
        matrix: symmetric positive-definite matrices.
        name: how errors and warnings call the matrix (e.g. ``"kernel matrix K + noise_var I"``).
        jitter: relative size of the first jitter.
        max_tries: how many times the jitter grows tenfold before giving up.
        warn: emit a ``RuntimeWarning`` saying how much jitter was needed.

    Shape:
        ``matrix``: ``(..., n, n)``; returns ``(..., n, n)`` lower triangular.

    Raises:
        NotPSDError: naming ``name``, its shape and the largest jitter tried, when no jitter
            helps (or the matrix holds NaN/inf).
    """
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must be square (..., n, n), got shape {tuple(matrix.shape)}")
    factor, info = torch.linalg.cholesky_ex(matrix)
    if not bool((info != 0).any()):
        return factor
    if not bool(torch.isfinite(matrix.detach()).all()):
        raise NotPSDError(f"{name} of shape {tuple(matrix.shape)} holds NaN or inf")
    if jitter is None:
        jitter = 1e-8 if matrix.dtype == torch.float64 else 1e-6
    # The jitter is a numerical repair, not a function of the parameters: no gradient.
    scale = matrix.detach().diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-30)
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    failed = info != 0
    for attempt in range(max_tries):
        amount = jitter * 10.0**attempt * scale
        trial, trial_info = torch.linalg.cholesky_ex(matrix + amount[..., None, None] * eye)
        # Keep the plain factor where it already succeeded; take the jittered one elsewhere.
        factor = torch.where(failed[..., None, None], trial, factor)
        failed = failed & (trial_info != 0)
        if not bool(failed.any()):
            if warn:
                warnings.warn(
                    f"{name} was not numerically positive definite; added jitter up to "
                    f"{float(amount.max()):.3g} to its diagonal",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return factor
    raise NotPSDError(
        f"{name} of shape {tuple(matrix.shape)} is not positive definite even with diagonal "
        f"jitter {float((jitter * 10.0 ** (max_tries - 1) * scale).max()):.3g}; "
        f"smallest eigenvalue {float(torch.linalg.eigvalsh(symmetrize(matrix.detach())).min()):.3g}"
    )
