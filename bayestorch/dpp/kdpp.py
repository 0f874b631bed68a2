"""k-DPPs: a DPP conditioned on drawing exactly ``k`` items.

``P(A) = det(L_A) / e_k(lam)`` for ``|A| = k``, where ``e_k`` is the ``k``-th elementary
symmetric polynomial of the eigenvalues of ``L``. The eigenvalues span many orders of
magnitude (RBF kernels), so the ``e_l`` table is kept in log space. Column ``l`` of the table
is a ``logcumsumexp`` of column ``l - 1`` (``e_l^n = sum_{m <= n} lam_m e_{l-1}^{m-1}``), so
the table costs ``k`` vectorised passes over the ``R`` eigenvalues rather than an ``R``-step
Python loop. The same identity samples the ``k`` eigenvectors: the largest kept index among
the first ``n'`` is drawn with probability proportional to ``lam_n e_{l-1}^{n-1}``, whose
cumulative sum is again the table column: one inverse-CDF draw per kept eigenvector.

The inclusion probabilities ``P(i in A) = sum_n V_in^2 lam_n e_{k-1}(lam_{-n}) / e_k(lam)``
(for Horvitz-Thompson weights) use prefix and suffix tables, so no ``e_{k-1}(lam_{-n})`` is
found by the cancellation-prone subtraction recursion.

References:
    Kulesza & Taskar (2011). k-DPPs: fixed-size determinantal point processes. ICML.
    Kulesza & Taskar (2012). Determinantal point processes for machine learning, Alg. 7-8.
    Gautier, Polito, Bardenet & Valko (2019). DPPy: DPP sampling with Python. JMLR 20(180).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from bayestorch.dpp.dpp import (
    Spectrum,
    _check_mask,
    _psd_tolerance,
    check_features,
    check_symmetric,
    l_ensemble_spectrum,
    log_det_subsets,
    sample_projection_dpp,
)
from bayestorch.utils.chunking import check_chunk_size
from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = ["KDPP", "log_elementary_symmetric"]


def log_elementary_symmetric(eigenvalues: Tensor, k: int) -> Tensor:
    """Table of ``log e_l(lam_1, ..., lam_n)`` for ``l = 0..k`` and ``n = 0..R``.

    Args:
        eigenvalues: non-negative values (zeros give ``-inf`` logs, handled exactly).
        k: the largest order.

    Returns:
        ``E`` with ``E[..., l, n] = log e_l(lam_1..lam_n)``; ``E[..., 0, :] = 0``.

    Shape:
        ``eigenvalues``: ``(*batch, R)`` -> ``(*batch, k + 1, R + 1)``.

    References:
        Kulesza & Taskar (2012), Alg. 7, written as cumulative sums.
    """
    log_lam = eigenvalues.log()
    *batch, r = eigenvalues.shape
    table = eigenvalues.new_full((*batch, k + 1, r + 1), float("-inf"))
    table[..., 0, :] = 0.0
    for level in range(1, k + 1):
        table[..., level, 1:] = torch.logcumsumexp(log_lam + table[..., level - 1, :-1], dim=-1)
    return table


def eigenvector_marginals(eigenvalues: Tensor, k: int, table: Tensor | None = None) -> Tensor:
    """``P(eigenvector n is kept) = lam_n e_{k-1}(lam_{-n}) / e_k(lam)``; sums to ``k``.

    ``e_{k-1}(lam_{-n}) = sum_j e_j(lam_{<n}) e_{k-1-j}(lam_{>n})`` from prefix and suffix
    tables, all in log space.

    Shape:
        ``eigenvalues``: ``(*batch, R)`` -> ``(*batch, R)``.
    """
    r = eigenvalues.shape[-1]
    prefix = log_elementary_symmetric(eigenvalues, k) if table is None else table
    suffix = log_elementary_symmetric(eigenvalues.flip(-1), k)
    before = prefix[..., :k, :r]  # e_j(lam_1..lam_{n-1}), j = 0..k-1
    after = suffix[..., :k, :r].flip(-1).flip(-2)  # e_{k-1-j}(lam_{n+1}..lam_R)
    log_without = torch.logsumexp(before + after, dim=-2)
    log_p = eigenvalues.log() + log_without - prefix[..., k, r : r + 1]
    return log_p.exp()


def sample_kdpp_eigenvectors(
    table: Tensor, num_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """Which ``k`` eigenvectors each draw keeps (phase one of the k-DPP sampler).

    Going down from level ``k``: with the previous pick at ``n'``, the next (smaller) index
    ``n`` is drawn with probability ``lam_n e_{l-1}^{n-1} / e_l^{n'}``, whose cumulative sum
    over ``n`` is ``table[l, n]``; ``searchsorted`` inverts it for all draws at once.

    Shape:
        ``table``: ``(B, k + 1, R + 1)`` -> ``(num_samples * B, R)`` bool with ``k`` set per
        row (rows ordered sample-major).

    References:
        Kulesza & Taskar (2012), Alg. 8.
    """
    batch, k1, r1 = table.shape
    k, r = k1 - 1, r1 - 1
    num_rows = num_samples * batch
    device = table.device
    # Per level, a contiguous (rows, R) boundary table for searchsorted; a single kernel
    # (B = 1) is searched as one shared 1-D boundary, without copies.
    levels = table.transpose(0, 1).contiguous()  # (k + 1, B, R + 1)
    batch_of_row = torch.arange(num_rows, device=device) % batch
    log_u = rand_open01((k, num_rows), generator=generator, device=device, dtype=table.dtype).log()
    limit = torch.full((num_rows,), r, dtype=torch.long, device=device)
    selected = torch.zeros(num_rows, r, dtype=torch.bool, device=device)
    row_index = torch.arange(num_rows, device=device)
    for step, level in enumerate(range(k, 0, -1)):
        # log sum_{m <= n} lam_m e_{l-1}^{m-1}, n = 1..R
        cumulative = levels[level, :, 1:]
        target = log_u[step] + levels[level, batch_of_row, limit]
        if batch == 1:
            index = torch.searchsorted(cumulative[0].contiguous(), target)
        else:
            rows = cumulative[batch_of_row].contiguous()
            index = torch.searchsorted(rows, target.unsqueeze(-1)).squeeze(-1)
        index = torch.minimum(index, limit - 1)  # round-off guard: stay below the last pick
        selected[row_index, index] = True
        limit = index
    return selected


class KDPP(Distribution):
    """The k-DPP of an L-ensemble (or of ``L = Phi Phi^T`` from features): exactly ``k`` items.

    Sampling keeps ``k`` eigenvectors by the elementary-symmetric-polynomial recursion (log
    space) and then draws their projection DPP; with ``features`` the eigenvectors come from
    the thin SVD of ``Phi`` (``O(N d^2)`` once, cached), so a draw costs ``O(N k^2)`` and
    never forms ``N x N``.

    Args:
        L: symmetric PSD L-ensemble.
        k: the subset size, ``1 <= k <= rank(L)``.
        features: ``Phi`` with ``L = Phi Phi^T`` (instead of ``L``).
        spectrum: a precomputed eigendecomposition of ``L`` (e.g. ``DPP(L=L).spectrum``),
            trusted as given (only the rank is checked).
        validate_args: when true (torch's default) the eigendecomposition is computed and
            checked at construction (PSD, ``k <= rank``); else on first use.

    Shape:
        ``L``: ``(*batch, N, N)``; ``features``: ``(*batch, N, d)``; ``sample(sample_shape)``:
        ``(*sample_shape, *batch, N)`` bool with ``k`` items set.

    Example::

        >>> phi = torch.randn(1000, 16, dtype=torch.float64)
        >>> kdpp = KDPP(k=8, features=phi)
        >>> int(kdpp.sample(generator=torch.Generator().manual_seed(0)).sum())
        8

    References:
        Kulesza & Taskar (2011); Kulesza & Taskar (2012), sec. 5.
    """

    arg_constraints = {
        "L": constraints.positive_semidefinite,
        "features": constraints.real,
    }
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(
        self,
        L: Tensor | None = None,
        k: int | None = None,
        *,
        features: Tensor | None = None,
        spectrum: Spectrum | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (L is None) == (features is None):
            raise ValueError("pass exactly one of L and features")
        if k is None or isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if L is not None:
            self._L, self._features = check_symmetric("L", L), None
            n, batch = L.shape[-1], L.shape[:-2]
        else:
            check_features("features", features)
            self._L, self._features = None, features
            n, batch = features.shape[-2], features.shape[:-2]
            if k > features.shape[-1]:
                raise ValueError(
                    f"k={k} exceeds the rank bound d={features.shape[-1]} of features with "
                    f"shape {tuple(features.shape)} (L = Phi Phi^T has rank <= d)"
                )
        if k > n:
            raise ValueError(f"k={k} exceeds the number of items N={n}")
        self.k = k
        self.num_items = n
        self._spectrum: Spectrum | None = None
        self._table: Tensor | None = None
        super().__init__(batch, torch.Size([n]), validate_args=False)
        if spectrum is not None:  # e.g. ``DPP(L=L).spectrum``: skips a second eigh
            lam, vectors = spectrum
            if lam.shape[:-1] != batch or vectors.shape[:-1] != (*batch, n):
                raise ValueError(
                    f"spectrum must have eigenvalues (*batch, R) and eigenvectors (*batch, N, R) "
                    f"for batch {tuple(batch)} and N={n}, got {tuple(lam.shape)} and "
                    f"{tuple(vectors.shape)}"
                )
            self._spectrum = self._check_rank(Spectrum(lam, vectors))
        if validate_args is None:
            validate_args = Distribution._validate_args
        if validate_args:
            self.spectrum  # noqa: B018 - computes and checks the eigenvalues and the rank

    @property
    def _param(self) -> Tensor:
        return self._L if self._L is not None else self._features

    @property
    def spectrum(self) -> Spectrum:
        """Cached eigenvalues (clamped at 0) and eigenvectors of ``L``."""
        if self._spectrum is None:
            spectrum = l_ensemble_spectrum(self._L, features=self._features)
            self._spectrum = self._check_rank(spectrum)
        return self._spectrum

    def _check_rank(self, spectrum: Spectrum) -> Spectrum:
        lam = spectrum.eigenvalues
        rank = (lam > _psd_tolerance(lam, self.num_items)).sum(-1)
        if bool((rank < self.k).any()):
            raise ValueError(
                f"k={self.k} exceeds the numerical rank {int(rank.min())} of L "
                f"(N={self.num_items}): a k-DPP needs k <= rank(L)"
            )
        return spectrum

    @property
    def log_esp_table(self) -> Tensor:
        """Cached ``log e_l(lam_1..lam_n)``, shape ``(*batch, k + 1, R + 1)``."""
        if self._table is None:
            self._table = log_elementary_symmetric(self.spectrum.eigenvalues, self.k)
        return self._table

    @property
    def log_normalizer(self) -> Tensor:
        """``log e_k(lam)``, shape ``batch_shape``."""
        return self.log_esp_table[..., self.k, -1]

    @property
    def eigenvector_marginals(self) -> Tensor:
        """Probability that each eigenvector is kept in phase one; sums to ``k``."""
        return eigenvector_marginals(self.spectrum.eigenvalues, self.k, self.log_esp_table)

    @property
    def inclusion_probs(self) -> Tensor:
        """``P(i in A)`` of the k-DPP (sums to ``k``), ``O(N R)``. Shape ``(*batch, N)``."""
        v = self.spectrum.eigenvectors
        p = (v.square() * self.eigenvector_marginals.unsqueeze(-2)).sum(-1)
        return p.clamp(0.0, 1.0)

    @property
    def mean(self) -> Tensor:
        return self.inclusion_probs

    @property
    def expected_size(self) -> Tensor:
        return torch.full(self.batch_shape, float(self.k), dtype=self._param.dtype)

    def sample(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Exact draws as boolean masks with ``k`` items each.

        The eigenvectors of all draws are chosen at once (``O(S R)`` booleans); their
        projection DPPs are drawn ``chunk_size`` at a time (see
        :func:`~bayestorch.dpp.dpp.sample_projection_dpp`), so peak memory is set by the
        chunk (default: :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`).

        Shape:
            ``(*sample_shape, *batch_shape, N)``.
        """
        check_chunk_size(chunk_size)
        check_generator_device(generator, self._param.device)
        shape = torch.Size(sample_shape)
        num, batch, n = shape.numel(), self.batch_shape.numel(), self.num_items
        lam = self.spectrum.eigenvalues.reshape(batch, -1)
        positive = lam > 0
        if bool((positive.sum(-1) == self.k).all()):
            # exactly k non-zero eigenvalues: every draw keeps all of them (phase one is
            # deterministic), e.g. features with d = k
            keep = positive.expand(num, batch, -1)
        else:
            table = self.log_esp_table.reshape(batch, self.k + 1, -1)
            keep = sample_kdpp_eigenvectors(table, num, generator).reshape(num, *lam.shape)
        vectors = self.spectrum.eigenvectors.reshape(batch, n, -1)
        draws = [
            sample_projection_dpp(vectors[b], keep[:, b], generator, chunk_size=chunk_size)
            for b in range(batch)
        ]
        return torch.stack(draws, dim=1).reshape(shape + self.batch_shape + (n,))

    def log_prob(self, value: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """``log det(L_A) - log e_k(lam)`` for ``|A| = k``, ``-inf`` otherwise
        (``chunk_size`` masks at a time, as in :func:`~bayestorch.dpp.dpp.log_det_subsets`).

        Shape:
            ``value``: ``(*sample, *batch, N)`` -> ``(*sample, *batch)``.
        """
        mask = _check_mask(value, self.num_items)
        log_det = log_det_subsets(mask, L=self._L, features=self._features, chunk_size=chunk_size)
        right_size = mask.sum(-1) == self.k
        return torch.where(right_size, log_det - self.log_normalizer, float("-inf"))

    def __repr__(self) -> str:
        source = "L" if self._L is not None else "features"
        return (
            f"KDPP({source}: k={self.k}, batch_shape={tuple(self.batch_shape)}, N={self.num_items})"
        )
