"""Bijections from an unconstrained vector space onto each support a site may have.

``biject_to(constraint)`` is torch's ``torch.distributions.biject_to`` with three
changes: the real line maps by identity (``None``: no ops at all), the positive half-line
by a bare ``exp`` (torch composes it with an affine map), and lower-Cholesky factors and
positive-definite matrices, which torch does not register (its ``transform_to`` for them
is not a bijection: the upper triangle is ignored), map from the ``K (K + 1) / 2`` free
entries of a lower-triangular matrix.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor
from torch.distributions import biject_to as torch_biject_to
from torch.distributions import constraints
from torch.distributions.transforms import ExpTransform, Transform

__all__ = ["LowerCholeskyVectorTransform", "PositiveDefiniteVectorTransform", "biject_to"]


def _side(num_free: int) -> int:
    k = int((math.isqrt(8 * num_free + 1) - 1) // 2)
    if k * (k + 1) // 2 != num_free:
        raise ValueError(f"{num_free} is not a triangular number K (K + 1) / 2")
    return k


class LowerCholeskyVectorTransform(Transform):
    """``(..., K (K + 1) / 2)`` reals -> ``(..., K, K)`` lower-triangular, positive diagonal.

    Off-diagonal entries are copied, diagonal ones exponentiated (row-major order of
    ``torch.tril_indices``); ``log |det J| = sum(log diag L)``.
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.lower_cholesky
    bijective = True

    def __eq__(self, other) -> bool:
        return isinstance(other, type(self))

    def _indices(self, k: int, device) -> tuple[Tensor, Tensor, Tensor]:
        rows, cols = torch.tril_indices(k, k, device=device)
        return rows, cols, rows == cols

    def _call(self, u: Tensor) -> Tensor:
        k = _side(u.shape[-1])
        rows, cols, on_diag = self._indices(k, u.device)
        values = torch.where(on_diag, u.exp(), u)
        # Scatter by a 0/1 matrix (vmap- and autograd-friendly, no in-place writes).
        place = torch.zeros(k * k, rows.numel(), dtype=u.dtype, device=u.device)
        place[rows * k + cols, torch.arange(rows.numel(), device=u.device)] = 1
        return (values @ place.T).reshape(u.shape[:-1] + (k, k))

    def _inverse(self, lower: Tensor) -> Tensor:
        k = lower.shape[-1]
        rows, cols, on_diag = self._indices(k, lower.device)
        values = lower[..., rows, cols]
        return torch.where(on_diag, values.log(), values)

    def log_abs_det_jacobian(self, u: Tensor, lower: Tensor) -> Tensor:
        return lower.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def forward_shape(self, shape):
        k = _side(shape[-1])
        return torch.Size(shape[:-1]) + (k, k)

    def inverse_shape(self, shape):
        k = shape[-1]
        return torch.Size(shape[:-2]) + (k * (k + 1) // 2,)


class PositiveDefiniteVectorTransform(LowerCholeskyVectorTransform):
    """``(..., K (K + 1) / 2)`` reals -> ``(..., K, K)`` positive definite, ``S = L L^T``.

    ``log |det J| = K log 2 + sum_i (K - i + 2) log L_ii`` (``i = 1..K``): the Jacobian of
    ``L -> L L^T`` (Muirhead 1982, Thm 2.1.9) times that of the exponentiated diagonal.
    """

    codomain = constraints.positive_definite  # type: ignore[assignment]

    def _call(self, u: Tensor) -> Tensor:
        lower = super()._call(u)
        return lower @ lower.transpose(-1, -2)

    def _inverse(self, matrix: Tensor) -> Tensor:
        return super()._inverse(torch.linalg.cholesky(matrix))

    def log_abs_det_jacobian(self, u: Tensor, matrix: Tensor) -> Tensor:
        k = matrix.shape[-1]
        log_diag = torch.linalg.cholesky(matrix).diagonal(dim1=-2, dim2=-1).log()
        powers = torch.arange(k + 1, 1, -1, dtype=matrix.dtype, device=matrix.device)
        return k * math.log(2.0) + (powers * log_diag).sum(-1)


def _is_real(constraint) -> bool:
    return constraint is constraints.real or (
        isinstance(constraint, constraints.independent) and _is_real(constraint.base_constraint)
    )


def biject_to(constraint: constraints.Constraint) -> Transform | None:
    """A bijection from unconstrained reals onto ``constraint`` (``None``: the identity).

    Raises ``NotImplementedError`` for a support with no registered bijection.
    """
    if _is_real(constraint):
        return None
    lower = getattr(constraint, "lower_bound", None)
    if (
        type(constraint) in (constraints.greater_than, constraints.greater_than_eq)
        and isinstance(lower, numbers.Number)
        and lower == 0
    ):
        return ExpTransform()
    base = constraint
    reinterpreted = 0
    while isinstance(base, constraints.independent):
        reinterpreted += base.reinterpreted_batch_ndims
        base = base.base_constraint
    if type(base) is type(constraints.lower_cholesky):
        transform: Transform = LowerCholeskyVectorTransform()
    elif type(base) is type(constraints.positive_definite):
        transform = PositiveDefiniteVectorTransform()
    else:
        return torch_biject_to(constraint)
    if reinterpreted:
        return torch.distributions.transforms.IndependentTransform(transform, reinterpreted)
    return transform
