"""Exchangeable partition probability functions (EPPFs) of Gibbs type, in log space.

A random partition of ``n`` items into blocks of sizes ``n_1..n_k`` has EPPF
``g(n_1, ..., n_k)``. The three priors used for segmentation are all of Gibbs type,

    g(n_1..n_k) = V(n, k) * prod_j (1 - d)_{n_j - 1},

with ``(x)_m`` the rising factorial and ``V(n, k+1) / V(n, k) = alpha + k d``:

* Dirichlet process (Chinese restaurant): ``d = 0``, ``alpha > 0``;
* Pitman–Yor: ``0 <= d < 1``, ``alpha > -d`` (so ``alpha`` may be ``<= 0`` when ``d > 0``);
* finite Dirichlet–multinomial with ``K`` labels and weight ``gamma`` on each: ``d = -gamma``,
  ``alpha = K gamma`` (so ``alpha + k d = gamma (K - k)`` vanishes at ``k = K``). Its
  ``gamma -> inf`` limit (uniform labels, the prior behind the ordinary ``K``-label Potts
  model) is ``g = K! / (K - k)! / K^n``.

:class:`GibbsPartitionPrior` holds ``(alpha, d)`` (or ``K``) per replica and gives the two
ratios a sampler needs (adding ``c`` items to a block of size ``m``; opening a new block
when ``k`` blocks exist) and the full ``log g``. :func:`set_partitions` enumerates all
partitions of a small set (Bell numbers) for exact tests.

References:
    Pitman (2006). Combinatorial Stochastic Processes, sections 3.1-3.3 (EPPF, Gibbs type).
    Gnedin & Pitman (2006). Exchangeable Gibbs partitions and Stirling triangles.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GibbsPartitionPrior", "canonical_labels", "set_partitions"]

PRIORS = ("dp", "pitman_yor", "finite")


class GibbsPartitionPrior:
    """A Gibbs-type EPPF: Dirichlet process, Pitman–Yor or finite Dirichlet–multinomial.

    Args:
        kind: ``"dp"``, ``"pitman_yor"`` or ``"finite"``.
        alpha: concentration, ``()`` or ``(replicas,)`` tensor or float (DP: ``alpha > 0``;
            Pitman–Yor: ``alpha > -d``). Default 1.
        discount: Pitman–Yor ``d`` in ``[0, 1)`` (default 0; the DP accepts only 0).
        num_labels: ``K`` (finite only).
        dirichlet: ``gamma > 0`` (finite only); ``math.inf`` (the default) for uniform
            labels (Potts).

    Raises:
        ValueError: a parameter outside its range, or one that the family does not have
            (``alpha``/``discount`` for ``"finite"``, ``num_labels``/``dirichlet`` for
            ``"dp"``/``"pitman_yor"``): it would be silently ignored otherwise.

    Shape:
        ``alpha``, ``discount``: broadcast against ``(replicas, ...)`` as ``(replicas, 1)``.
    """

    def __init__(
        self,
        kind: str,
        *,
        alpha: Tensor | float | None = None,
        discount: Tensor | float | None = None,
        num_labels: int | None = None,
        dirichlet: float | None = None,
    ) -> None:
        if kind not in PRIORS:
            raise ValueError(f"partition_prior must be one of {PRIORS}, got {kind!r}")
        self.kind = kind
        if kind == "finite":
            given = [
                name for name, v in (("alpha", alpha), ("discount", discount)) if v is not None
            ]
            if given:
                raise ValueError(
                    f"{' and '.join(given)} do not apply to the 'finite' partition prior "
                    "(its parameters are num_labels and dirichlet)"
                )
            if num_labels is None or int(num_labels) < 1:
                raise ValueError(f"num_labels must be an integer >= 1, got {num_labels}")
            dirichlet = math.inf if dirichlet is None else dirichlet
            if not dirichlet > 0:
                raise ValueError(f"dirichlet must be > 0, got {dirichlet}")
            self.num_labels, self.dirichlet = int(num_labels), float(dirichlet)
            alpha, discount = 1.0, 0.0
        else:
            given = [
                name for name, v in (("num_labels", num_labels), ("dirichlet", dirichlet))
                if v is not None
            ]  # fmt: skip
            if given:
                raise ValueError(
                    f"{' and '.join(given)} apply only to the 'finite' partition prior, "
                    f"not to {kind!r}"
                )
        alpha = torch.as_tensor(1.0 if alpha is None else alpha, dtype=torch.float64)
        discount = torch.as_tensor(0.0 if discount is None else discount, dtype=torch.float64)
        if not bool(torch.isfinite(discount).all()) or bool(
            ((discount < 0) | (discount >= 1)).any()
        ):
            raise ValueError(f"discount d must be in [0, 1), got {discount.tolist()}")
        if kind == "dp" and bool((discount != 0).any()):
            raise ValueError("the Dirichlet process has discount 0; use 'pitman_yor'")
        if not bool(torch.isfinite(alpha).all()) or bool((alpha <= -discount).any()):
            bound = "> 0" if kind == "dp" else "> -discount"
            raise ValueError(f"alpha must be {bound}, got alpha={alpha.tolist()}")
        self.alpha, self.discount = alpha, discount

    def with_params(self, alpha: Tensor, discount: Tensor | None = None) -> GibbsPartitionPrior:
        """The same family with new ``alpha`` (and ``d``), e.g. per replica."""
        new = object.__new__(GibbsPartitionPrior)
        new.__dict__.update(self.__dict__)
        new.alpha = alpha
        new.discount = self.discount if discount is None else discount
        return new

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha``, ``d`` viewed to broadcast against ``like`` (replicas first)."""

        def view(p: Tensor) -> Tensor:
            p = p.to(like.device, torch.float64)
            return p.view(p.shape + (1,) * (like.dim() - p.dim())) if p.dim() else p

        return view(self.alpha), view(self.discount)

    def log_weight(self, m: Tensor) -> Tensor:
        """``log (1 - d)_{m - 1}`` up to a constant in ``m``: ``lgamma(m - d)``
        (``lgamma(m + gamma)`` for finite; ``0`` in the Potts limit). ``m >= 1``."""
        if self.kind == "finite":
            if math.isinf(self.dirichlet):
                return torch.zeros_like(m, dtype=torch.float64)
            return torch.lgamma(m.double() + self.dirichlet)
        _, d = self._params(m)
        return torch.lgamma(m.double() - d)

    def log_add(self, m: Tensor, c: Tensor) -> Tensor:
        """``log g(.., m + c, ..) / g(.., m, ..)`` for a block of size ``m >= 1``."""
        return self.log_weight(m + c) - self.log_weight(m)

    def log_new(self, c: Tensor, k: Tensor) -> Tensor:
        """``log g(.., c) / g(..)`` for opening a new block of size ``c`` next to ``k``."""
        one = torch.ones_like(c)
        if self.kind == "finite":
            room = (self.num_labels - k).double()
            log_v = room.clamp(min=0).log()
            if not math.isinf(self.dirichlet):
                log_v = log_v + math.log(self.dirichlet)
            return log_v + self.log_weight(c) - self.log_weight(one)
        a, d = self._params(c)
        # V(n, k + 1) / V(n, k) = alpha + k d for k >= 1; the first block's factor is 1
        # (an empty product), which matters for Pitman-Yor's alpha <= 0.
        k = k.double()
        log_v = torch.where(k > 0, torch.log(a + k * d), 0.0)
        return log_v + self.log_weight(c) - self.log_weight(one)

    def log_eppf(self, sizes: Tensor) -> Tensor:
        """``log g`` of partitions given by block sizes (zeros are empty slots).

        Shape:
            ``sizes``: ``(replicas, slots)`` -> ``(replicas,)``.
        """
        sizes = sizes.double()
        occupied = sizes > 0
        k = occupied.sum(-1).double()
        n = sizes.sum(-1)
        one = torch.ones_like(sizes)
        blocks = torch.where(
            occupied, self.log_weight(sizes.clamp(min=1)) - self.log_weight(one), 0.0
        ).sum(-1)
        if self.kind == "finite":
            K = self.num_labels
            log_v = torch.lgamma(torch.full_like(k, K + 1.0)) - torch.lgamma(
                (K - k).clamp(min=0) + 1
            )
            log_v = torch.where(k > K, -torch.inf, log_v)
            if math.isinf(self.dirichlet):
                return log_v - n * math.log(K)
            gam = self.dirichlet
            # Gamma(K gam) / Gamma(K gam + n) * prod_j Gamma(n_j + gam) / Gamma(gam)
            log_v = log_v + math.lgamma(K * gam) - torch.lgamma(K * gam + n)
            return log_v + blocks + k * (math.lgamma(gam + 1) - math.lgamma(gam))
        a, d = self._params(k)
        # prod_{i=1}^{k-1} (alpha + i d)
        i = torch.arange(1, sizes.shape[-1] + 1, device=sizes.device, dtype=torch.float64)
        terms = torch.log(a[..., None] + i * d[..., None])
        terms = torch.where(i < k[..., None], terms, 0.0)
        log_v = terms.sum(-1) - (torch.lgamma(a + n) - torch.lgamma(a + 1))
        return log_v + blocks


def canonical_labels(labels: Tensor) -> Tensor:
    """Relabel each row by order of first appearance (restricted growth string).

    Shape:
        ``(replicas, n)`` -> ``(replicas, n)`` long in ``[0, n)``.
    """
    replicas, n = labels.shape
    idx = torch.arange(n, device=labels.device).expand(replicas, n)
    # first position of each pixel's label
    big = torch.full((replicas, int(labels.max()) + 1), n, device=labels.device)
    first = big.scatter_reduce(1, labels, idx, reduce="amin").gather(1, labels)
    is_first = first == idx
    rank = torch.cumsum(is_first.long(), 1) - 1
    return rank.gather(1, first)


def set_partitions(n: int) -> Tensor:
    """All partitions of ``{0..n-1}`` as restricted growth strings (Bell(n) rows).

    Shape:
        ``(Bell(n), n)`` long.
    """
    if n < 1 or n > 10:
        raise ValueError(f"n must be in [1, 10] for enumeration, got {n}")
    rows = [[0]]
    for _ in range(n - 1):
        rows = [r + [v] for r in rows for v in range(max(r) + 2)]
    return torch.tensor(rows, dtype=torch.long)
