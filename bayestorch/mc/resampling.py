"""Resampling schemes for sequential Monte Carlo: multinomial, stratified, systematic, residual.

Each scheme maps normalised (or unnormalised, non-negative) weights ``(..., N)`` to ancestor
indices ``(..., M)`` such that the expected number of copies of particle ``i`` is
``M w_i / sum(w)`` (unbiasedness). They differ in the variance of the counts:
multinomial > residual, stratified > systematic (in practice). All are batched over leading
dims at fixed shape (no host synchronisation) and draw their uniforms from ``generator``.

References:
    Kitagawa (1996). Monte Carlo filter and smoother for non-Gaussian nonlinear state space
    models. JCGS 5(1) (stratified, systematic).
    Liu & Chen (1998). Sequential Monte Carlo methods for dynamic systems. JASA 93 (residual).
    Douc, Cappé & Moulines (2005). Comparison of resampling schemes for particle filtering.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "RESAMPLING_SCHEMES",
    "multinomial",
    "resample",
    "residual",
    "stratified",
    "systematic",
]


def _check(weights: Tensor, num_samples: int | None) -> int:
    if not isinstance(weights, Tensor) or not weights.is_floating_point() or weights.dim() < 1:
        raise ValueError(
            f"weights must be a floating-point tensor of shape (..., N), got "
            f"{getattr(weights, 'dtype', type(weights).__name__)} "
            f"{tuple(getattr(weights, 'shape', ()))}"
        )
    if weights.shape[-1] == 0:
        raise ValueError("weights must hold at least one particle, got shape (..., 0)")
    bad = ~(torch.isfinite(weights) & (weights >= 0))  # one synchronisation for NaN, inf, < 0
    if bool(bad.any()):
        raise ValueError(f"weights must be finite and >= 0, got {int(bad.sum())} other value(s)")
    num = weights.shape[-1] if num_samples is None else int(num_samples)
    if num < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return num


def _cdf(weights: Tensor) -> Tensor:
    cdf = weights.cumsum(-1)
    return cdf / cdf[..., -1:]


def _invert(cdf: Tensor, u: Tensor) -> Tensor:
    """First index whose CDF value exceeds ``u`` (zero-weight particles are never picked)."""
    index = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
    return index.clamp_max(cdf.shape[-1] - 1)


def _uniform(shape, weights: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=weights.device, dtype=weights.dtype)


def multinomial(
    weights: Tensor, num_samples: int | None = None, *, generator: torch.Generator | None = None
) -> Tensor:
    """Multinomial resampling: ``M`` i.i.d. draws from ``Categorical(weights)``.

    Args:
        weights: non-negative weights (normalised or not; each row needs a positive sum).
        num_samples: ``M``, the number of indices per row (default ``N``).
        generator: source of the uniforms.

    Shape:
        ``weights``: ``(..., N)`` -> indices ``(..., M)``, int64.

    References:
        Gordon, Salmond & Smith (1993). Novel approach to nonlinear/non-Gaussian Bayesian
        state estimation. IEE Proceedings F 140(2).
    """
    num = _check(weights, num_samples)
    # Sorted uniforms are not needed: searchsorted inverts each draw independently.
    u = _uniform((*weights.shape[:-1], num), weights, generator)
    return _invert(_cdf(weights), u)


def stratified(
    weights: Tensor, num_samples: int | None = None, *, generator: torch.Generator | None = None
) -> Tensor:
    """Stratified resampling: one uniform in each stratum ``[j / M, (j + 1) / M)``.

    Shape:
        ``weights``: ``(..., N)`` -> indices ``(..., M)``, int64.

    References:
        Kitagawa (1996).
    """
    num = _check(weights, num_samples)
    j = torch.arange(num, device=weights.device, dtype=weights.dtype)
    u = (j + _uniform((*weights.shape[:-1], num), weights, generator)) / num
    return _invert(_cdf(weights), u)


def systematic(
    weights: Tensor, num_samples: int | None = None, *, generator: torch.Generator | None = None
) -> Tensor:
    """Systematic resampling: one uniform shared by all strata, ``u_j = (j + U) / M``.

    Shape:
        ``weights``: ``(..., N)`` -> indices ``(..., M)``, int64.

    References:
        Kitagawa (1996); Carpenter, Clifford & Fearnhead (1999).
    """
    num = _check(weights, num_samples)
    j = torch.arange(num, device=weights.device, dtype=weights.dtype)
    u = (j + _uniform((*weights.shape[:-1], 1), weights, generator)) / num
    return _invert(_cdf(weights), u)


def residual(
    weights: Tensor, num_samples: int | None = None, *, generator: torch.Generator | None = None
) -> Tensor:
    """Residual resampling: ``floor(M w_i)`` copies of each particle, the rest multinomially.

    The deterministic copies fill the first ``sum_i floor(M w_i)`` slots (found by inverting
    their cumulative counts); the remaining slots draw from the residual weights
    ``M w_i - floor(M w_i)``. Fixed shape, no host synchronisation.

    Shape:
        ``weights``: ``(..., N)`` -> indices ``(..., M)``, int64.

    References:
        Liu & Chen (1998).
    """
    num = _check(weights, num_samples)
    w = weights / weights.sum(-1, keepdim=True)
    scaled = num * w
    copies = scaled.floor()
    cumulative = copies.cumsum(-1)
    slots = torch.arange(num, device=weights.device, dtype=weights.dtype)
    slots = slots.expand(*weights.shape[:-1], num)
    deterministic = _invert(cumulative, slots)
    remainder = (scaled - copies).clamp_min(0.0)
    # Rows with no remainder never use the random slots; keep their CDF finite anyway.
    remainder = remainder + (remainder.sum(-1, keepdim=True) <= 0).to(w.dtype) * w
    u = _uniform((*weights.shape[:-1], num), weights, generator)
    random = _invert(_cdf(remainder), u)
    return torch.where(slots < cumulative[..., -1:], deterministic, random)


RESAMPLING_SCHEMES: dict[str, Callable[..., Tensor]] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}
"""The resampling schemes by name, each ``(weights, num_samples=None, *, generator) -> indices``."""


def resample(
    weights: Tensor,
    num_samples: int | None = None,
    *,
    method: str = "systematic",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestor indices by the named scheme (see :data:`RESAMPLING_SCHEMES`).

    Shape:
        ``weights``: ``(..., N)`` -> indices ``(..., M)``, int64.

    References:
        Douc, Cappé & Moulines (2005).
    """
    if method not in RESAMPLING_SCHEMES:
        raise ValueError(f"method must be one of {sorted(RESAMPLING_SCHEMES)}, got {method!r}")
    return RESAMPLING_SCHEMES[method](weights, num_samples, generator=generator)
