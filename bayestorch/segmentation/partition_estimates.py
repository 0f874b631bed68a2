"""Summaries of posterior samples of partitions: distances, co-clustering, point estimates.

Partitions are integer label tensors; only which items share a label matters. Distances
between two partitions come from their contingency table ``n_ab`` (items with label ``a``
in the first and ``b`` in the second), computed batched with ``torch.unique`` on joint
codes (no ``n x n`` matrix):

* :func:`adjusted_rand_index` — Hubert & Arabie's chance-corrected Rand index (1 for equal
  partitions, about 0 for independent ones);
* :func:`variation_of_information` — ``H(A | B) + H(B | A)`` in nats (Meilă 2007), a metric;
* :func:`binder_loss` — the number of item pairs together in one partition and apart in
  the other (Binder 1978 with equal costs).

:func:`partition_point_estimate` picks, among the sampled partitions, the one with the
smallest Monte Carlo posterior expected Binder or VI loss (Wade & Ghahramani 2018, with
the search restricted to the draws). :func:`coclustering` gives ``P(z_i = z_j | y)`` for a
subsample of items.

References:
    Hubert & Arabie (1985). Comparing partitions. Journal of Classification 2.
    Meilă (2007). Comparing clusterings — an information based distance. JMVA 98(5).
    Binder (1978). Bayesian cluster analysis. Biometrika 65(1).
    Wade & Ghahramani (2018). Bayesian cluster analysis: point estimation and credible
    balls. Bayesian Analysis 13(2).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "adjusted_rand_index",
    "binder_loss",
    "coclustering",
    "partition_point_estimate",
    "variation_of_information",
]


def _as_batch(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor) or x.is_floating_point() or x.dim() not in (1, 2):
            raise TypeError(f"{name} must be an integer tensor of shape (n,) or (batch, n)")
    try:
        a, b = torch.broadcast_tensors(a.long(), b.long())
    except RuntimeError:
        raise ValueError(
            f"a and b must have broadcastable shapes, got {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None
    if a.shape[-1] < 1:
        raise ValueError("partitions must have at least one item")
    return a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])


def _compact(x: Tensor) -> Tensor:
    """Labels mapped to ``0..L-1`` per row (any integer labels allowed)."""
    batch = x.shape[0]
    offset = (x.min(1, keepdim=True).values - 1) if x.numel() else 0
    x = x - offset
    width = (x.max() + 1) if x.numel() else 1  # an empty batch has no labels
    code = x + width * torch.arange(batch, device=x.device)[:, None]
    _, inverse = torch.unique(code, return_inverse=True)
    return inverse - inverse.min(1, keepdim=True).values


def _sum_counts(values: Tensor, n: int, fn) -> Tensor:
    """``sum_groups fn(group_size)`` per row, groups being equal values in a row."""
    batch = values.shape[0]
    code = values + n * n * torch.arange(batch, device=values.device)[:, None]
    keys, counts = torch.unique(code, return_counts=True)
    rows = keys // (n * n)
    return torch.zeros(batch, dtype=torch.float64, device=values.device).index_add_(
        0, rows, fn(counts.double())
    )


def _pair_sums(a: Tensor, b: Tensor, fn) -> tuple[Tensor, Tensor, Tensor]:
    """``sum fn(n_a)``, ``sum fn(n_b)``, ``sum fn(n_ab)`` per row."""
    a, b = _compact(a), _compact(b)
    n = a.shape[1]
    return _sum_counts(a, n, fn), _sum_counts(b, n, fn), _sum_counts(a * n + b, n, fn)


def _pairs(x: Tensor) -> Tensor:
    return x * (x - 1) / 2


def _xlogx(x: Tensor) -> Tensor:
    return x * x.log()


def adjusted_rand_index(a: Tensor, b: Tensor) -> Tensor:
    """Adjusted Rand index (equals scikit-learn's ``adjusted_rand_score``).

    Shape:
        ``a``, ``b``: ``(n,)`` or ``(batch, n)`` (broadcast) -> ``()`` or ``(batch,)``.
    """
    squeeze = a.dim() == 1 and b.dim() == 1
    a, b = _as_batch(a, b)
    n = a.shape[1]
    sa, sb, sab = _pair_sums(a, b, _pairs)
    expected = sa * sb / (n * (n - 1) / 2) if n > 1 else torch.zeros_like(sa)
    top = (sa + sb) / 2
    ari = torch.where(top == expected, 1.0, (sab - expected) / (top - expected))
    return ari[0] if squeeze else ari


def variation_of_information(a: Tensor, b: Tensor) -> Tensor:
    """Variation of information ``2 H(A, B) - H(A) - H(B)`` in nats.

    Shape:
        as :func:`adjusted_rand_index`.
    """
    squeeze = a.dim() == 1 and b.dim() == 1
    a, b = _as_batch(a, b)
    n = a.shape[1]
    sa, sb, sab = _pair_sums(a, b, _xlogx)
    # H = log n - sum n_g log n_g / n
    vi = (sa + sb - 2 * sab) / n
    return vi.clamp(min=0)[0] if squeeze else vi.clamp(min=0)


def binder_loss(a: Tensor, b: Tensor) -> Tensor:
    """Pairs of items together in exactly one of the two partitions.

    Shape:
        as :func:`adjusted_rand_index`.
    """
    squeeze = a.dim() == 1 and b.dim() == 1
    a, b = _as_batch(a, b)
    sa, sb, sab = _pair_sums(a, b, _pairs)
    loss = sa + sb - 2 * sab
    return loss[0] if squeeze else loss


def coclustering(samples: Tensor, index: Tensor | None = None) -> Tensor:
    """Posterior co-clustering probabilities ``P(z_i = z_j)`` over draws.

    Args:
        samples: ``(draws, n)`` integer labels.
        index: optional ``(m,)`` subsample of items (``m x m`` output).

    Shape:
        ``(draws, n)`` -> ``(m, m)`` (``m = n`` without ``index``).
    """
    if samples.dim() != 2 or samples.is_floating_point():
        raise TypeError("samples must be an integer tensor of shape (draws, n)")
    z = samples if index is None else samples[:, index]
    total = torch.zeros(z.shape[1], z.shape[1], dtype=torch.float64, device=z.device)
    for chunk in z.split(64):
        total += (chunk[:, :, None] == chunk[:, None, :]).double().sum(0)
    return total / z.shape[0]


def partition_point_estimate(samples: Tensor, loss: str = "vi") -> tuple[Tensor, Tensor]:
    """The draw minimising the Monte Carlo posterior expected loss over the draws.

    Args:
        samples: ``(draws, n)`` integer labels (posterior draws).
        loss: ``"vi"`` (variation of information) or ``"binder"``.

    Returns:
        ``(labels (n,), expected_losses (draws,))``.
    """
    if loss not in ("vi", "binder"):
        raise ValueError(f"loss must be 'vi' or 'binder', got {loss!r}")
    if samples.dim() != 2 or samples.is_floating_point():
        raise TypeError("samples must be an integer tensor of shape (draws, n)")
    fn = variation_of_information if loss == "vi" else binder_loss
    expected = torch.stack([fn(candidate[None], samples).mean() for candidate in samples])
    return samples[int(expected.argmin())], expected
