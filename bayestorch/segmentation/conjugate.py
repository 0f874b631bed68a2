"""Conjugate marginal likelihoods of Gaussian segments from sufficient statistics.

A segment's pixels ``y_1..y_m`` (``c`` channels) are i.i.d. Gaussian with unknown mean and
(co)variance; integrating those out under a conjugate prior gives ``log p(y_A)`` in closed
form from the statistics ``(m, sum y, sum y y^T)``, which a sampler adds and subtracts as
pixels move (no recomputation).

* :class:`NormalInverseGamma` — each channel independent, ``mu | s2 ~ N(m0, s2 / kappa0)``,
  ``s2 ~ InvGamma(a0, b0)``; statistics ``(m, sum y, sum y^2)`` per channel.
* :class:`NormalInverseWishart` — ``mu | S ~ N(m0, S / kappa0)``, ``S ~ IW(nu0, Psi0)``,
  for RGB (``c x c`` covariance); statistics ``(m, sum y, sum y y^T)``.

Statistics are float64 tensors: ``count`` ``(*batch,)``, ``s1`` ``(*batch, c)``, ``s2``
``(*batch, c)`` (NIG) or ``(*batch, c, c)`` (NIW). An empty segment has ``log p = 0``.

References:
    Murphy (2007). Conjugate Bayesian analysis of the Gaussian distribution, sections 6-9.
    Gelman et al. (2013). Bayesian Data Analysis, 3rd ed., section 3.6.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["NormalInverseGamma", "NormalInverseWishart", "SegmentStats"]

_LOG_PI = math.log(math.pi)


class SegmentStats:
    """Helpers shared by both families: per-pixel statistics and their scatter-sum."""

    outer: bool = False

    def log_marginal(self, count: Tensor, s1: Tensor, s2: Tensor) -> Tensor:
        """``log p(y_A)`` of segments from their sufficient statistics: pixel ``count``,
        sums ``s1`` and second moments ``s2`` (:meth:`pixel_stats` summed over the
        segment). Shape: ``(...)``, ``(..., c)``, ``(..., c)`` or ``(..., c, c)`` ->
        ``(...)``."""
        raise NotImplementedError

    def pixel_stats(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, y^2)`` or ``(y, y y^T)`` per pixel. Shape: ``(n, c)`` -> ``(n, c)``,
        ``(n, c)`` or ``(n, c, c)``."""
        y = y.double()
        return y, (y[..., :, None] * y[..., None, :]) if self.outer else y * y

    def log_marginal_data(self, y: Tensor) -> Tensor:
        """``log p(y)`` of one segment holding all rows of ``y`` (``(m, c)`` -> ``()``)."""
        s1, s2 = self.pixel_stats(y)
        count = torch.tensor(float(y.shape[0]), dtype=torch.float64, device=y.device)
        return self.log_marginal(count, s1.sum(0), s2.sum(0))


class NormalInverseGamma(SegmentStats):
    """Per-channel Normal–Inverse-Gamma prior on a segment's mean and variance.

    Args:
        mean: ``m0`` (float or ``(c,)``); kappa: ``kappa0 > 0``; shape: ``a0 > 0``;
        rate: ``b0 > 0`` (float or ``(c,)``).
    """

    def __init__(
        self,
        mean: Tensor | float = 0.0,
        kappa: float = 0.1,
        shape: float = 2.0,
        rate: Tensor | float = 0.01,
    ) -> None:
        for name, value in (("kappa", kappa), ("shape", shape)):
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        if not bool(torch.isfinite(torch.as_tensor(mean)).all()):
            raise ValueError(f"mean must be finite, got {mean}")
        rate = torch.as_tensor(rate, dtype=torch.float64)
        if not bool((rate > 0).all()):
            raise ValueError(f"rate must be > 0, got {rate.tolist()}")
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.kappa, self.shape, self.rate = float(kappa), float(shape), rate

    def log_marginal(self, count: Tensor, s1: Tensor, s2: Tensor) -> Tensor:
        """``log p(y_A)`` summed over channels. Shape: ``(*b,)``, ``(*b, c)``, ``(*b, c)``
        -> ``(*b,)``."""
        m0 = self.mean.to(s1.device)
        b0 = self.rate.to(s1.device)
        n = count[..., None]
        kn = self.kappa + n
        an = self.shape + 0.5 * n
        mn = (self.kappa * m0 + s1) / kn
        bn = b0 + 0.5 * (s2 + self.kappa * m0 * m0 - kn * mn * mn)
        out = (
            torch.lgamma(an)
            - math.lgamma(self.shape)
            + self.shape * torch.log(b0)
            - an * torch.log(bn)
            + 0.5 * (math.log(self.kappa) - torch.log(kn))
            - 0.5 * n * math.log(2 * math.pi)
        )
        return out.sum(-1)


class NormalInverseWishart(SegmentStats):
    """Normal–Inverse-Wishart prior on a segment's mean vector and covariance.

    Args:
        dim: channels ``c``; mean: ``m0``; kappa: ``kappa0 > 0``; dof: ``nu0 > c - 1``;
        scale: ``Psi0`` (a float times the identity, or ``(c, c)`` positive definite).
    """

    outer = True

    def __init__(
        self,
        dim: int,
        mean: Tensor | float = 0.0,
        kappa: float = 0.1,
        dof: float | None = None,
        scale: Tensor | float = 0.01,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        dof = dim + 2.0 if dof is None else float(dof)
        if not 0 < kappa < math.inf:
            raise ValueError(f"kappa must be finite and > 0, got {kappa}")
        if not bool(torch.isfinite(torch.as_tensor(mean)).all()):
            raise ValueError(f"mean must be finite, got {mean}")
        if not dof > dim - 1:
            raise ValueError(f"dof must be > dim - 1 = {dim - 1}, got {dof}")
        scale = torch.as_tensor(scale, dtype=torch.float64)
        if scale.dim() == 0:
            scale = scale * torch.eye(dim, dtype=torch.float64)
        if scale.shape != (dim, dim) or not bool(torch.linalg.eigvalsh(scale).min() > 0):
            raise ValueError(f"scale must be a positive definite ({dim}, {dim}) matrix")
        self.dim, self.kappa, self.dof = int(dim), float(kappa), dof
        self.mean = torch.as_tensor(mean, dtype=torch.float64).expand(dim).clone()
        self.scale = scale
        self._logdet0 = float(torch.linalg.slogdet(scale)[1])

    def log_marginal(self, count: Tensor, s1: Tensor, s2: Tensor) -> Tensor:
        """``log p(y_A)``. Shape: ``(*b,)``, ``(*b, c)``, ``(*b, c, c)`` -> ``(*b,)``."""
        c = self.dim
        m0 = self.mean.to(s1.device)
        kn = self.kappa + count
        nun = self.dof + count
        mn = (self.kappa * m0 + s1) / kn[..., None]
        psi = (
            self.scale.to(s1.device)
            + s2
            + self.kappa * torch.outer(m0, m0)
            - kn[..., None, None] * mn[..., :, None] * mn[..., None, :]
        )
        logdet = torch.linalg.slogdet(psi)[1]
        return (
            -0.5 * count * c * _LOG_PI
            + torch.mvlgamma(nun / 2, c)
            - _mvlgamma(self.dof / 2, c)
            + 0.5 * self.dof * self._logdet0
            - 0.5 * nun * logdet
            + 0.5 * c * (math.log(self.kappa) - torch.log(kn))
        )


def _mvlgamma(x: float, p: int) -> float:
    return p * (p - 1) / 4 * _LOG_PI + sum(math.lgamma(x - j / 2) for j in range(p))
