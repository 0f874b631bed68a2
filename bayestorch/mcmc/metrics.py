"""Euclidean metric of HMC: momentum draws, kinetic energy and velocity M^{-1} p.

The metric is given by its inverse mass matrix, which warm-up sets to an estimate of the
posterior covariance. ``dense=False``: a diagonal, shape ``(dim,)`` (pooled over chains) or
``(chains, dim)`` (per chain); ``dense=True``: a full matrix ``(dim, dim)`` or
``(chains, dim, dim)``. The flag removes the ambiguity between a per-chain diagonal and a
pooled dense matrix when ``chains == dim``.

References:
    Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo", 2017, section 4.2.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kinetic_energy", "momentum_factor", "sample_momentum", "velocity"]


def velocity(momentum: Tensor, inverse_mass_matrix: Tensor, dense: bool) -> Tensor:
    """``M^{-1} p``. Shape: ``(chains, dim)``."""
    if dense:
        return torch.matmul(inverse_mass_matrix, momentum.unsqueeze(-1)).squeeze(-1)
    return inverse_mass_matrix * momentum


def kinetic_energy(momentum: Tensor, inverse_mass_matrix: Tensor, dense: bool) -> Tensor:
    """``p^T M^{-1} p / 2``. Shape: ``(chains, dim) -> (chains,)``."""
    return 0.5 * (momentum * velocity(momentum, inverse_mass_matrix, dense)).sum(-1)


def momentum_factor(inverse_mass_matrix: Tensor, dense: bool) -> Tensor:
    """The factor ``F`` with ``F F^T = M`` used to draw ``p = F z``, ``z ~ N(0, I)``.

    Diagonal: ``1 / sqrt(diag)``. Dense: with ``M^{-1} = L L^T``, ``F = L^{-T}`` (upper
    triangular), computed once per warm-up window rather than once per draw.
    """
    if not dense:
        return inverse_mass_matrix.rsqrt()
    lower = torch.linalg.cholesky(inverse_mass_matrix)
    eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)
    return torch.linalg.solve_triangular(lower, eye.expand_as(lower), upper=False).mT


def sample_momentum(
    factor: Tensor, like: Tensor, dense: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``p ~ N(0, M)`` for every chain given ``momentum_factor``. Shape: ``like``."""
    z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    if dense:
        return torch.matmul(factor, z.unsqueeze(-1)).squeeze(-1)
    return factor * z
