"""Greedy MAP inference for DPPs: the fast incremental-Cholesky greedy of Chen, Zhang & Zhou.

Greedy maximisation of ``log det(L_A)`` adds, at each step, the item with the largest
marginal gain ``log det(L_{A+j}) - log det(L_A) = log d_j^2``, where ``d_j^2`` is the squared
residual of item ``j`` after projecting out the items already chosen (a Schur complement).
Chen et al. update every ``d_j^2`` by one new column of the incremental Cholesky factor,
``O(N t)`` at step ``t``: ``O(N k^2)`` in all, against ``O(N k^4)`` for recomputing
determinants. From features ``Phi`` the needed row ``L_{j,:} = Phi Phi_j^T`` costs ``O(N d)``,
so ``N x N`` is never formed.

References:
    Chen, Zhang & Zhou (2018). Fast greedy MAP inference for determinantal point process to
    improve recommendation diversity. NeurIPS, Alg. 1.
    Nemhauser, Wolsey & Fisher (1978). An analysis of approximations for maximizing
    submodular set functions. Math. Programming 14.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayestorch.dpp.dpp import _check_square, check_features
from bayestorch.utils.linalg import NotPSDError

__all__ = ["greedy_map"]


def greedy_map(
    L: Tensor | None = None,
    k: int | None = None,
    *,
    features: Tensor | None = None,
    return_gains: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Greedy approximate maximiser of ``det(L_A)`` over subsets of size ``k``.

    Args:
        L: symmetric PSD L-ensemble. Only what the greedy reads is checked, to keep the cost
            ``O(N k^2)``: the rows it reads against the matching columns (relative tolerance
            ``10 sqrt(eps)``), and PSD-ness through the gains (a negative one raises).
        k: the subset size, ``1 <= k <= rank(L)``.
        features: ``Phi`` with ``L = Phi Phi^T``, instead of ``L``.
        return_gains: also return the squared residuals ``d_j^2`` of the picks, whose logs
            sum to ``log det(L_A)``.

    Returns:
        The chosen indices in the order picked (ties go to the lowest index), and with
        ``return_gains`` the gains.

    Raises:
        ValueError: ``k`` out of range, or a pick with gain below round-off (``k`` exceeds
            the numerical rank).
        NotPSDError: a negative diagonal or gain beyond round-off (``L`` is not PSD).

    Shape:
        ``L``: ``(*batch, N, N)`` or ``features``: ``(*batch, N, d)`` -> ``(*batch, k)`` long
        (and ``(*batch, k)`` gains).

    References:
        Chen, Zhang & Zhou (2018), Alg. 1.
    """
    if (L is None) == (features is None):
        raise ValueError("pass exactly one of L and features")
    if L is not None:
        _check_square("L", L)
        if not bool(torch.isfinite(L.diagonal(dim1=-2, dim2=-1)).all()):
            raise ValueError(f"L of shape {tuple(L.shape)} has NaN or inf on its diagonal")
        n, batch_shape, ref = L.shape[-1], L.shape[:-2], L
        matrix = L.reshape(-1, n, n)
        residual = matrix.diagonal(dim1=-2, dim2=-1).clone()
    else:
        check_features("features", features)
        n, batch_shape, ref = features.shape[-2], features.shape[:-2], features
        phi = features.reshape(-1, n, features.shape[-1])
        residual = phi.square().sum(-1)
        if k is not None and not isinstance(k, bool) and isinstance(k, int):
            if k > features.shape[-1]:
                raise ValueError(
                    f"k={k} exceeds the rank bound d={features.shape[-1]} of features with "
                    f"shape {tuple(features.shape)}"
                )
    if k is None or isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, N={n}], got {k!r}")
    batch = residual.shape[0]
    device, dtype = ref.device, ref.dtype
    tol = (
        10.0
        * n
        * torch.finfo(dtype).eps
        * residual.abs().amax(-1).clamp_min(torch.finfo(dtype).tiny)
    )
    rows = torch.arange(batch, device=device)
    factor = residual.new_zeros(batch, k, n)  # incremental Cholesky columns, as rows
    chosen = torch.zeros(batch, k, dtype=torch.long, device=device)
    gains = residual.new_zeros(batch, k)
    first_diag = residual.clone()
    tiny = torch.finfo(dtype).tiny
    for t in range(k):
        j = residual.argmax(-1)  # chosen items hold -inf
        gain = residual[rows, j]
        chosen[:, t], gains[:, t] = j, gain
        if t + 1 == k:
            break
        row = matrix[rows, j] if L is not None else torch.bmm(phi, phi[rows, j, :, None])[..., 0]
        if t:  # L[j, :] minus what the earlier picks explain: C[j, :t] @ C[:, :t]^T
            row = row - torch.bmm(factor[rows, None, :t, j], factor[:, :t])[:, 0]
        column = row / gain.clamp_min(tiny).sqrt().unsqueeze(-1)
        factor[:, t] = column
        residual = torch.addcmul(residual, column, column, value=-1.0)
        residual[rows, j] = float("-inf")
    if L is not None:
        _check_used_symmetry(matrix, chosen[:, :-1], ref.shape)
    if bool((first_diag < -tol.unsqueeze(-1)).any()) or bool((gains < -tol.unsqueeze(-1)).any()):
        raise NotPSDError(
            f"L of shape {tuple(ref.shape)} is not positive semi-definite: greedy MAP met a "
            f"negative diagonal or Schur complement (smallest {float(gains.min()):.3g})"
        )
    if bool((gains <= tol.unsqueeze(-1)).any()):
        raise ValueError(
            f"k={k} exceeds the numerical rank of L (shape {tuple(ref.shape)}): gain "
            f"{float(gains.min()):.3g} at or below round-off {float(tol.max()):.3g}"
        )
    chosen = chosen.reshape(*batch_shape, k)
    if return_gains:
        return chosen, gains.reshape(*batch_shape, k)
    return chosen


def _check_used_symmetry(matrix: Tensor, used: Tensor, shape) -> None:
    """Symmetry of the rows the greedy read (``L[j, :]`` against ``L[:, j]``), ``O(N k)``."""
    if used.shape[-1] == 0:
        return
    rows = torch.gather(matrix, 1, used.unsqueeze(-1).expand(-1, -1, matrix.shape[-1]))
    cols = torch.gather(matrix, 2, used.unsqueeze(1).expand(-1, matrix.shape[-1], -1))
    gap = (rows - cols.transpose(1, 2)).abs().amax()
    if not bool(torch.isfinite(rows).all()):
        raise ValueError(f"L of shape {tuple(shape)} holds NaN or inf")
    rtol = 10.0 * torch.finfo(matrix.dtype).eps ** 0.5
    scale = rows.abs().amax()
    if bool(gap > rtol * scale):
        raise ValueError(
            f"L of shape {tuple(shape)} must be symmetric: rows read by the greedy differ from "
            f"the matching columns by {float(gap):.3g} > {rtol:.2g} * max|L| = "
            f"{float(rtol * scale):.3g}"
        )
