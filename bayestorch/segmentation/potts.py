"""Bayesian image segmentation with a Potts prior and a Gaussian likelihood per label.

:class:`SwendsenWangSegmentation` samples ``p(z, mu, sigma^2 | y)``, the labels ``z`` of a
``K``-label Potts model over the pixel graph and per-label Gaussian means and variances,
by alternating the data-driven Swendsen–Wang sweep of
:func:`bayestorch.mcmc.swendsen_wang.swendsen_wang_step` (each bond cluster relabelled
from the likelihood of its pixels; Higdon 1998) with conjugate normal-inverse-gamma draws
of the per-label parameters (:func:`sample_gaussian_parameters`). The generic kernels on
graphs (:class:`bayestorch.mcmc.SwendsenWang`, :class:`bayestorch.mcmc.PottsGibbs`) stay
in :mod:`bayestorch.mcmc`; this module is the segmentation model built on them.

References:
    Higdon (1998). Auxiliary variable methods for Markov chain Monte Carlo with
    applications. JASA 93(442). Barbu, Zhu (2005). Generalizing Swendsen-Wang to sampling
    arbitrary posterior probabilities. IEEE TPAMI 27(8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bayestorch.mcmc.swendsen_wang import (
    SwendsenWang,
    _check_labels,
    cluster_statistics,
    heat_bath_sweep,
    swendsen_wang_step,
)

__all__ = [
    "SegmentationInfo",
    "SegmentationState",
    "SwendsenWangSegmentation",
    "gaussian_label_log_likelihood",
    "sample_gaussian_parameters",
]


class SegmentationState(NamedTuple):
    """Labels ``(replicas, n)`` and per-label Gaussian ``means``/``variances``
    ``(replicas, q, channels)``."""

    labels: Tensor
    means: Tensor
    variances: Tensor


class SegmentationInfo(NamedTuple):
    """Per replica: ``energy`` = ``-log p(z, theta | y)`` up to a constant (Potts prior,
    Gaussian likelihood, normal-inverse-gamma prior); ``log_likelihood`` =
    ``Σ_i log N(y_i | theta_{z_i})``; ``num_clusters`` of the sweep's bond graph (the
    number of nodes for the Gibbs sweep)."""

    energy: Tensor
    log_likelihood: Tensor
    num_clusters: Tensor


def gaussian_label_log_likelihood(data: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """``log N(y_i | mu_k, diag sigma_k^2)`` for every node and label.

    Shape:
        ``data`` ``(n, d)``, ``means``/``variances`` ``(R, q, d)`` -> ``(R, n, q)``.
    """
    diff = data[None, :, None, :] - means[:, None, :, :]
    log_var = variances.log()[:, None]
    return -0.5 * (diff.square() / variances[:, None] + log_var + math.log(2 * math.pi)).sum(-1)


def sample_gaussian_parameters(
    data: Tensor,
    labels: Tensor,
    num_states: int,
    *,
    prior_mean: Tensor,
    prior_precision: float,
    prior_shape: float,
    prior_scale: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Conjugate Gibbs draw of every label's mean and variance given the labels.

    Prior per label and channel: ``sigma^2 ~ InvGamma(a0, b0)``, ``mu | sigma^2 ~
    N(m0, sigma^2 / kappa0)``. With ``n_k`` nodes, sums ``s1, s2`` of ``y`` and ``y^2``:
    ``kappa = kappa0 + n_k``, ``m = (kappa0 m0 + s1) / kappa``, ``a = a0 + n_k / 2``,
    ``b = b0 + (s2 + kappa0 m0^2 - kappa m^2) / 2``. An empty label draws from the prior.

    Shape:
        ``data`` ``(n, d)``, ``labels`` ``(R, n)`` -> means, variances ``(R, q, d)``.

    References:
        Gelman et al. (2013). Bayesian Data Analysis, 3rd ed., section 3.3.
    """
    replicas = labels.shape[0]
    d = data.shape[1]
    one_hot = torch.zeros(replicas, num_states, data.shape[0], dtype=data.dtype, device=data.device)
    one_hot.scatter_(1, labels.unsqueeze(1), 1.0)
    counts = one_hot.sum(-1, keepdim=True)  # (R, q, 1)
    s1 = one_hot @ data  # (R, q, d)
    s2 = one_hot @ data.square()
    kappa = prior_precision + counts
    mean = (prior_precision * prior_mean + s1) / kappa
    shape = (prior_shape + counts / 2).expand(replicas, num_states, d)
    scale = prior_scale + 0.5 * (s2 + prior_precision * prior_mean.square() - kappa * mean.square())
    scale = scale.clamp(min=torch.finfo(data.dtype).tiny)  # rounding in the difference above
    gamma = torch._standard_gamma(shape.contiguous(), generator=generator)
    variances = scale / gamma
    noise = torch.randn(mean.shape, generator=generator, device=data.device, dtype=data.dtype)
    means = mean + (variances / kappa).sqrt() * noise
    return means, variances


class SwendsenWangSegmentation(nn.Module):
    """Bayesian image segmentation: Potts prior x Gaussian likelihood per label.

    The posterior ``p(z, mu, sigma^2 | y) ∝ exp(beta Σ_ij 1[z_i = z_j]) Π_i N(y_i |
    mu_{z_i}, sigma^2_{z_i}) p(mu, sigma^2)`` is sampled by alternating the data-driven
    Swendsen–Wang sweep (each cluster relabelled from the likelihood of its pixels;
    ``method="gibbs"``: a heat-bath sweep instead, the baseline; ``method="hybrid"``: both,
    SW then Gibbs) with a conjugate
    normal-inverse-gamma draw of the per-label means and variances (independent per
    channel).

    Args:
        data: ``(n,)`` or ``(n, d)`` pixel values (``d`` channels).
        edges: ``(E, 2)`` edge list over the ``n`` pixels.
        beta: Potts coupling ``>= 0`` (scalar or ``(E,)``).
        num_states: the number of labels ``q``.
        method: ``"sw"``, ``"gibbs"`` or ``"hybrid"``. With a strong likelihood the bond
            clusters (which ignore the data) are too coarse to place boundaries, and pure
            SW moves slowly; the hybrid adds the local moves that refine them.
        prior_mean, prior_precision, prior_shape, prior_scale: the normal-inverse-gamma
            prior ``(m0, kappa0, a0, b0)``; ``m0`` defaults to the data mean, ``b0`` to
            ``a0`` times a tenth of the data variance (per channel).
        colours: a proper colouring for ``method="gibbs"``.

    Shape:
        ``state.labels`` ``(R, n)``, ``state.means``/``state.variances`` ``(R, q, d)``.

    References:
        Higdon (1998). JASA 93(442); Barbu, Zhu (2005). IEEE TPAMI 27(8).
    """

    # buffers (registered in __init__; declared for type checkers)
    data: Tensor
    prior_mean: Tensor
    prior_scale: Tensor

    def __init__(
        self,
        data: Tensor,
        edges: Tensor,
        beta: Tensor | float,
        num_states: int,
        *,
        method: str = "sw",
        prior_mean: Tensor | float | None = None,
        prior_precision: float = 0.01,
        prior_shape: float = 2.0,
        prior_scale: Tensor | float | None = None,
        colours: Tensor | None = None,
    ) -> None:
        super().__init__()
        if method not in ("sw", "gibbs", "hybrid"):
            raise ValueError(f"method must be 'sw', 'gibbs' or 'hybrid', got {method!r}")
        if not isinstance(data, Tensor) or not data.is_floating_point():
            raise TypeError("data must be a floating torch.Tensor of shape (n,) or (n, d)")
        data = data.unsqueeze(-1) if data.dim() == 1 else data
        if data.dim() != 2:
            raise ValueError(f"data must have shape (n,) or (n, d), got {tuple(data.shape)}")
        if prior_precision <= 0 or prior_shape <= 0:
            raise ValueError("prior_precision and prior_shape must be > 0")
        self.method = method
        self.potts = SwendsenWang(
            edges.to(data.device), beta, num_states, num_nodes=data.shape[0], colours=colours
        )
        self.num_states = num_states
        if not bool(torch.isfinite(data).all()):
            raise ValueError("data holds NaN or inf values")
        self.register_buffer("data", data)
        m0 = data.mean(0) if prior_mean is None else torch.as_tensor(prior_mean, dtype=data.dtype)
        if prior_scale is None and data.shape[0] < 2:
            raise ValueError("data needs >= 2 nodes for the default prior_scale (its variance)")
        b0 = prior_shape * 0.1 * data.var(0) if prior_scale is None else prior_scale
        self.register_buffer("prior_mean", m0.to(data).expand(data.shape[1]).clone())
        self.register_buffer(
            "prior_scale",
            torch.as_tensor(b0, dtype=data.dtype).to(data).expand(data.shape[1]).clone(),
        )
        if bool((self.prior_scale <= 0).any()):
            raise ValueError("prior_scale must be > 0 (the data may be constant)")
        self.prior_precision = float(prior_precision)
        self.prior_shape = float(prior_shape)

    def _parameters_given(self, labels: Tensor, generator) -> tuple[Tensor, Tensor]:
        return sample_gaussian_parameters(
            self.data,
            labels,
            self.num_states,
            prior_mean=self.prior_mean,
            prior_precision=self.prior_precision,
            prior_shape=self.prior_shape,
            prior_scale=self.prior_scale,
            generator=generator,
        )

    def init(self, labels: Tensor, generator: torch.Generator | None = None) -> SegmentationState:
        """Start from ``labels`` ``(R, n)``; the means/variances are drawn given them."""
        _check_labels(labels, self.potts.num_nodes, self.num_states)
        return SegmentationState(labels, *self._parameters_given(labels, generator))

    def _log_prior(self, means: Tensor, variances: Tensor) -> Tensor:
        a0, k0 = self.prior_shape, self.prior_precision
        log_ig = -(a0 + 1) * variances.log() - self.prior_scale / variances
        log_normal = -0.5 * (variances / k0).log() - k0 * (means - self.prior_mean).square() / (
            2 * variances
        )
        return (log_ig + log_normal).sum((-1, -2))

    def step(
        self, state: SegmentationState, generator: torch.Generator | None = None
    ) -> tuple[SegmentationState, SegmentationInfo]:
        unary = gaussian_label_log_likelihood(self.data, state.means, state.variances)
        labels = state.labels
        num_clusters = torch.full_like(labels[:, 0], labels.shape[1])
        if self.method in ("sw", "hybrid"):
            labels, clusters = swendsen_wang_step(
                labels,
                self.potts.edges,
                self.potts.bond_probs,
                self.num_states,
                unary=unary,
                generator=generator,
            )
            num_clusters = cluster_statistics(clusters)[0]
        if self.method in ("gibbs", "hybrid"):
            # Both sweeps leave p(z | theta, y) invariant, so their composition does too.
            labels = heat_bath_sweep(
                labels, self.potts.classes, self.num_states, unary=unary, generator=generator
            )
        means, variances = self._parameters_given(labels, generator)
        unary = gaussian_label_log_likelihood(self.data, means, variances)
        log_likelihood = unary.gather(2, labels.unsqueeze(-1)).squeeze(-1).sum(-1)
        energy = self.potts.energy(labels).to(unary.dtype) - log_likelihood
        energy = energy - self._log_prior(means, variances)
        return SegmentationState(labels, means, variances), SegmentationInfo(
            energy, log_likelihood, num_clusters
        )
