"""Evaluation of GANs: the 2-D mode-collapse benchmarks, mode coverage and clustering metrics.

Mode-collapse benchmarks (the protocol of PacGAN, Lin et al. 2018, after VEEGAN and the
Unrolled GAN): a ring of 8 Gaussians of standard deviation 0.01 on the unit circle, at the
8 *distinct* angles ``2 pi k / 8`` (``linspace(0, 2 pi, 8)`` would repeat the first angle
and give only 7 modes), and a 5 x 5 grid of Gaussians of standard deviation 0.05 at
``{-4, -2, 0, 2, 4}^2``.

Mode coverage (:func:`mode_coverage`), the definitions used throughout:

* a generated sample is *high quality* when its Euclidean distance to its nearest mode
  centre is at most ``3 sigma``;
* a mode is *captured* when at least one high-quality sample has it as nearest mode;
* the *reverse KL* is ``KL(p_hat || uniform) = sum_k p_hat_k log(K p_hat_k)``, where
  ``p_hat`` is the histogram of the high-quality samples over the K modes (normalised over
  the high-quality samples; ``0 log 0 = 0``). It is "reverse" because the generated
  distribution comes first: a missed mode does not make it infinite, a lopsided histogram
  raises it. With no high-quality sample at all it is defined as ``log K`` (all mass
  elsewhere, the value of a single captured mode).

Clustering (:func:`clustering_accuracy`, :func:`normalized_mutual_info`): accuracy after
the best one-to-one matching of predicted clusters to labels (Hungarian algorithm on the
contingency table; clusters left unmatched count as errors), and scikit-learn's NMI
(arithmetic normalisation). Mixture weights: :func:`total_variation` and
:func:`num_components_above`.

References:
    Lin, Khetan, Fanti & Oh, "PacGAN: The power of two samples in generative adversarial
    networks", NeurIPS 2018 (section 5, tables 1-2).
    Srivastava et al., "VEEGAN", NeurIPS 2017. Metz et al., "Unrolled GANs", ICLR 2017.
    Kuhn, "The Hungarian method for the assignment problem", 1955.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ModeCoverage",
    "clustering_accuracy",
    "grid_means",
    "kl_from_uniform",
    "match_clusters",
    "mode_coverage",
    "normalized_mutual_info",
    "num_components_above",
    "ring_means",
    "sample_gaussian_mixture",
    "total_variation",
]


def ring_means(
    num_modes: int = 8,
    radius: float = 1.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Centres of ``num_modes`` Gaussians at the distinct angles ``2 pi k / num_modes``.

    Shape:
        ``(num_modes, 2)``.
    """
    if num_modes < 1:
        raise ValueError(f"num_modes must be a positive integer, got {num_modes}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    k = torch.arange(num_modes, device=device, dtype=dtype or torch.get_default_dtype())
    angle = 2 * math.pi * k / num_modes
    return radius * torch.stack([angle.cos(), angle.sin()], dim=-1)


def grid_means(
    values: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0),
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Centres on the grid ``values x values`` (row-major: the second coordinate fastest).

    Shape:
        ``(len(values) ** 2, 2)``.
    """
    if len(values) < 1:
        raise ValueError("values must hold at least one coordinate")
    v = torch.as_tensor(list(values), device=device, dtype=dtype or torch.get_default_dtype())
    a, b = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=-1)


def sample_gaussian_mixture(
    num_samples: int,
    means: Tensor,
    std: float,
    weights: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw from ``sum_k w_k N(means[k], std^2 I)`` (uniform weights by default).

    Returns:
        ``(x, k)``: the samples and the index of the component each came from.

    Shape:
        ``means``: ``(K, d)``; ``weights``: ``(K,)``; returns ``(num_samples, d)`` and
        ``(num_samples,)``.
    """
    if means.dim() != 2:
        raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    if weights is None:
        weights = torch.ones(means.shape[0], device=means.device, dtype=means.dtype)
    elif weights.shape != means.shape[:1] or bool((weights < 0).any()):
        raise ValueError(
            f"weights must be non-negative with shape ({means.shape[0]},), "
            f"got shape {tuple(weights.shape)}"
        )
    k = torch.multinomial(weights, num_samples, replacement=True, generator=generator)
    noise = torch.randn(
        num_samples, means.shape[1], generator=generator, device=means.device, dtype=means.dtype
    )
    return means[k] + std * noise, k


class ModeCoverage(NamedTuple):
    """The mode-coverage figures of one set of generated samples (see the module docstring).

    Attributes:
        modes_captured: modes with at least one high-quality sample.
        high_quality: fraction of the samples within ``threshold * std`` of their nearest mode.
        reverse_kl: ``KL(p_hat || uniform)`` of the high-quality samples' mode histogram.
        counts: high-quality samples per mode, ``(K,)``.
    """

    modes_captured: int
    high_quality: float
    reverse_kl: float
    counts: Tensor


def kl_from_uniform(counts: Tensor) -> float:
    """``KL(p || uniform)`` in nats of the histogram ``counts`` (``(K,)``), ``0 log 0 = 0``.

    An empty histogram gives ``log K``, the value of a histogram on a single bin.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0 or bool((counts < 0).any()):
        raise ValueError("counts must be a non-empty 1-d tensor of non-negative counts")
    total = counts.sum()
    num_bins = counts.numel()
    if total == 0:
        return math.log(num_bins)
    p = counts / total
    terms = torch.where(p > 0, p * (p * num_bins).log(), torch.zeros_like(p))
    return float(terms.sum())


def mode_coverage(
    samples: Tensor, means: Tensor, std: float, threshold: float = 3.0
) -> ModeCoverage:
    """Modes captured, fraction of high-quality samples and reverse KL (module docstring).

    Shape:
        ``samples``: ``(n, d)``; ``means``: ``(K, d)``.
    """
    if samples.dim() != 2 or means.dim() != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(
            f"samples (n, d) and means (K, d) must be 2-d with the same d, got "
            f"{tuple(samples.shape)} and {tuple(means.shape)}"
        )
    if not std > 0 or not threshold > 0:
        raise ValueError(f"std and threshold must be positive, got {std} and {threshold}")
    samples = samples.detach().to(means)
    distance = torch.cdist(samples, means)  # (n, K)
    nearest_distance, nearest = distance.min(dim=1)
    high = nearest_distance <= threshold * std
    counts = torch.bincount(nearest[high], minlength=means.shape[0]).cpu()
    return ModeCoverage(
        modes_captured=int((counts > 0).sum()),
        high_quality=float(high.double().mean()) if len(samples) else 0.0,
        reverse_kl=kl_from_uniform(counts),
        counts=counts,
    )


def _as_labels(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-d array of integer labels, got {x.dtype} {x.shape}")
    if x.size and x.min() < 0:
        raise ValueError(f"{name} must hold non-negative labels")
    return x


def _contingency(predicted, labels) -> np.ndarray:
    predicted = _as_labels(predicted, "predicted")
    labels = _as_labels(labels, "labels")
    if predicted.shape != labels.shape or predicted.size == 0:
        raise ValueError(
            f"predicted and labels must be non-empty with equal length, got "
            f"{predicted.size} and {labels.size}"
        )
    table = np.zeros((predicted.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (predicted, labels), 1)
    return table


def match_clusters(predicted, labels) -> np.ndarray:
    """The one-to-one relabelling of clusters to labels with the most agreements.

    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the contingency
    table of clusters x labels.

    Returns:
        ``mapping`` with ``mapping[c]`` the label matched to cluster ``c``, or ``-1`` for a
        cluster left unmatched (more clusters than labels).

    Shape:
        ``predicted``, ``labels``: ``(n,)`` integer arrays or tensors; returns
        ``(max(predicted) + 1,)``.
    """
    from scipy.optimize import linear_sum_assignment

    table = _contingency(predicted, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(table.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def clustering_accuracy(predicted, labels) -> float:
    """Accuracy of ``predicted`` cluster indices after the best one-to-one relabelling
    (:func:`match_clusters`); clusters left unmatched count as errors.

    Shape:
        ``predicted``, ``labels``: ``(n,)`` integer arrays or tensors.
    """
    predicted = _as_labels(predicted, "predicted")
    labels = _as_labels(labels, "labels")
    mapping = match_clusters(predicted, labels)
    return float((mapping[predicted] == labels).mean())


def normalized_mutual_info(predicted, labels) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's)."""
    from sklearn.metrics import normalized_mutual_info_score

    predicted = _as_labels(predicted, "predicted")
    labels = _as_labels(labels, "labels")
    if predicted.shape != labels.shape:
        raise ValueError("predicted and labels must have equal length")
    return float(normalized_mutual_info_score(labels, predicted))


def total_variation(p, q, *, sort: bool = False) -> float:
    """``0.5 * sum_k |p_k - q_k|`` of two probability vectors.

    Mixture components carry no labels: pass ``sort=True`` to compare the weights sorted in
    decreasing order (the smallest TV over all relabellings, since sorting both vectors
    pairs them optimally for the L1 distance), or align them first (e.g. with the matching
    of :func:`clustering_accuracy`) and compare as given.

    Shape:
        ``p``, ``q``: ``(K,)``; a shorter one is padded with zeros.
    """
    p = torch.as_tensor(p, dtype=torch.float64).detach().cpu().reshape(-1)
    q = torch.as_tensor(q, dtype=torch.float64).detach().cpu().reshape(-1)
    for name, v in (("p", p), ("q", q)):
        if bool((v < 0).any()) or abs(float(v.sum()) - 1.0) > 1e-6:
            raise ValueError(f"{name} must be a probability vector (non-negative, sum 1)")
    size = max(len(p), len(q))
    p = torch.nn.functional.pad(p, (0, size - len(p)))
    q = torch.nn.functional.pad(q, (0, size - len(q)))
    if sort:
        p, q = p.sort(descending=True).values, q.sort(descending=True).values
    return float(0.5 * (p - q).abs().sum())


def num_components_above(weights, threshold: float = 0.01) -> int:
    """How many mixture weights exceed ``threshold`` (e.g. the effective DP components).

    Shape:
        ``weights``: ``(K,)``.
    """
    weights = torch.as_tensor(weights).detach().reshape(-1)
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return int((weights > threshold).sum())
