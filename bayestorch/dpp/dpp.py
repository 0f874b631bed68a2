"""Determinantal point processes over subsets of ``{0, ..., N-1}``: exact samplers.

A DPP with L-ensemble ``L`` (symmetric PSD, ``N x N``) draws a subset ``A`` with
``P(A) = det(L_A) / det(L + I)``; its marginal kernel ``K = L (L + I)^-1`` gives the
inclusion probabilities ``P(B ⊆ A) = det(K_B)``. A sample is a boolean mask of shape ``(N,)``.

Three exact samplers:

* ``"spectral"`` (Hough et al. 2006; Kulesza & Taskar 2012, Alg. 1): eigendecompose
  ``L = V diag(lam) V^T`` once (cached), keep eigenvector ``n`` with probability
  ``lam_n / (1 + lam_n)``, then draw the projection DPP of the kept eigenvectors item by item
  (:func:`sample_projection_dpp`): either the chain rule as a pivoted Cholesky factorisation
  carried in the ``m``-dimensional eigen-coordinates (``O(N m^2)`` for ``m`` kept
  eigenvectors, no ``N x N`` matrix), or a rejection sampler of each conditional that reads
  the ``N x m`` eigenvectors once (``O(N m + m^3 log m)``), whichever a cost model prefers.
* ``"dual"`` for ``L = Phi Phi^T`` with features ``Phi`` of shape ``(N, d)``: the eigenvectors
  of ``L`` come from the thin SVD of ``Phi`` (``O(N d^2)``, the numerically stable form of the
  dual kernel ``Phi^T Phi`` of Kulesza & Taskar 2012, sec. 3.3); the ``N x N`` matrix is never
  formed.
* ``"cholesky"`` (Poulson 2019; Launay, Galerne & Desolneux 2020): sequential Bernoulli
  decisions on the diagonal of an LDL^T factorisation of ``K``, conditioning the rest of the
  kernel on each decision; ``O(N^3)`` with no eigendecomposition, batched over samples.

References:
    Macchi (1975). The coincidence approach to stochastic point processes. Adv. Appl. Prob. 7.
    Hough, Krishnapur, Peres & Virag (2006). Determinantal processes and independence.
    Probability Surveys 3.
    Kulesza & Taskar (2012). Determinantal point processes for machine learning.
    Foundations and Trends in Machine Learning 5(2-3).
    Poulson (2019). High-performance sampling of generic determinantal point processes.
    Phil. Trans. R. Soc. A 378.
    Launay, Galerne & Desolneux (2020). Exact sampling of determinantal point processes
    without eigendecomposition. J. Appl. Prob. 57(4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from bayestorch.utils.chunking import check_chunk_size, chunk_slices, resolve_chunk_size
from bayestorch.utils.linalg import NotPSDError, symmetrize
from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = ["DPP", "Spectrum", "l_ensemble_spectrum", "sample_projection_dpp"]

_METHODS = ("spectral", "dual", "cholesky")


class Spectrum(NamedTuple):
    """Eigenvalues and orthonormal eigenvectors of an L-ensemble (or of a marginal kernel).

    Shape:
        ``eigenvalues``: ``(*batch, R)``; ``eigenvectors``: ``(*batch, N, R)``, with
        ``R = N`` for a full kernel and ``R = min(N, d)`` for features.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor


# ----------------------------------------------------------------------------- checks


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _check_square(name: str, matrix: Tensor) -> None:
    if not isinstance(matrix, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if not matrix.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {matrix.dtype}")
    if matrix.dim() < 2 or matrix.shape[-1] != matrix.shape[-2] or matrix.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape (..., N, N) with N >= 1, got {tuple(matrix.shape)}"
        )


def check_symmetric(name: str, matrix: Tensor, rtol: float | None = None) -> Tensor:
    """Raise ``ValueError`` unless ``matrix`` is symmetric up to a relative tolerance.

    The tolerance is ``rtol * max|A|`` on ``max|A - A^T|`` (``rtol`` defaults to
    ``10 sqrt(eps)`` of the dtype), so round-off asymmetry passes; returns ``(A + A^T) / 2``.

    Shape:
        ``matrix``: ``(..., N, N)``.
    """
    _check_square(name, matrix)
    if rtol is None:
        rtol = 10.0 * _eps(matrix.dtype) ** 0.5
    gap = (matrix - matrix.transpose(-1, -2)).abs().amax(dim=(-1, -2))
    scale = matrix.abs().amax(dim=(-1, -2))
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} of shape {tuple(matrix.shape)} holds NaN or inf")
    if bool((gap > rtol * scale).any()):
        raise ValueError(
            f"{name} of shape {tuple(matrix.shape)} must be symmetric: max|A - A^T| = "
            f"{float(gap.max()):.3g} exceeds {rtol:.2g} * max|A| = "
            f"{float((rtol * scale).max()):.3g}"
        )
    return symmetrize(matrix)


def _psd_tolerance(eigenvalues: Tensor, n: int) -> Tensor:
    """Round-off size of eigenvalues: ``10 N eps max|lam|`` (per batch element)."""
    scale = eigenvalues.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(eigenvalues.dtype).tiny)
    return 10.0 * n * _eps(eigenvalues.dtype) * scale


def _checked_eigh(name: str, matrix: Tensor, upper: float | None = None) -> Spectrum:
    """``eigh`` of a symmetric matrix whose eigenvalues must lie in ``[0, upper]``.

    Eigenvalues within round-off (``10 N eps max|lam|``) of the bounds are clamped onto them;
    anything further out raises :class:`NotPSDError` naming the matrix and the bad eigenvalue.
    """
    n = matrix.shape[-1]
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    tol = _psd_tolerance(eigenvalues, n)
    low = eigenvalues[..., :1]
    if bool((low < -tol).any()):
        raise NotPSDError(
            f"{name} of shape {tuple(matrix.shape)} must be positive semi-definite: smallest "
            f"eigenvalue {float(low.min()):.3g} is below -{float(tol.max()):.3g} (round-off bound)"
        )
    eigenvalues = eigenvalues.clamp_min(0.0)
    if upper is not None:
        high = eigenvalues[..., -1:]
        if bool((high > upper + tol).any()):
            raise NotPSDError(
                f"{name} of shape {tuple(matrix.shape)} must satisfy 0 <= K <= I: largest "
                f"eigenvalue {float(high.max()):.6g} exceeds {upper:g} (beyond round-off "
                f"{float(tol.max()):.3g})"
            )
        eigenvalues = eigenvalues.clamp_max(upper)
    return Spectrum(eigenvalues, eigenvectors)


def check_features(name: str, features: Tensor) -> None:
    """Raise unless ``features`` is a finite floating tensor of shape ``(..., N, d)``."""
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {features.dtype}")
    if features.dim() < 2 or features.shape[-1] == 0 or features.shape[-2] == 0:
        raise ValueError(
            f"{name} must have shape (..., N, d) with N, d >= 1, got {tuple(features.shape)}"
        )
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} of shape {tuple(features.shape)} holds NaN or inf")


def l_ensemble_spectrum(L: Tensor | None = None, *, features: Tensor | None = None) -> Spectrum:
    """Eigenvalues (clamped at 0) and orthonormal eigenvectors of ``L`` or of ``Phi Phi^T``.

    With ``features`` the thin SVD ``Phi = U S W^T`` gives ``L = U diag(S^2) U^T`` in
    ``O(N d^2)`` without forming ``L``; singular values below round-off count as zero.

    Args:
        L: symmetric positive semi-definite L-ensemble.
        features: ``Phi``, so that ``L = Phi Phi^T``.

    Shape:
        ``L``: ``(*batch, N, N)`` -> ``(*batch, N)``, ``(*batch, N, N)``;
        ``features``: ``(*batch, N, d)`` -> ``(*batch, R)``, ``(*batch, N, R)``,
        ``R = min(N, d)``.

    Raises:
        ValueError: ``L`` not square or not symmetric (relative tolerance).
        NotPSDError: ``L`` has an eigenvalue below ``-10 N eps max|lam|``.

    References:
        Kulesza & Taskar (2012), sec. 3.3 (dual representation).
    """
    if (L is None) == (features is None):
        raise ValueError("pass exactly one of L and features")
    if L is not None:
        return _checked_eigh("L", check_symmetric("L", L))
    check_features("features", features)
    u, s, _ = torch.linalg.svd(features, full_matrices=False)
    eigenvalues = s.square()
    keep = eigenvalues > _psd_tolerance(eigenvalues, max(features.shape[-2:]))
    return Spectrum(torch.where(keep, eigenvalues, 0.0), u * keep.unsqueeze(-2))


# ------------------------------------------------------------------- projection phase


PROJECTION_ALGORITHMS = ("auto", "rejection", "chain_rule")


def sample_projection_dpp(
    eigenvectors: Tensor,
    selected: Tensor,
    generator: torch.Generator | None = None,
    algorithm: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Exact draws of the projection DPPs spanned by chosen eigenvectors of one kernel.

    Row ``s`` of ``selected`` picks orthonormal columns ``V_s`` of ``eigenvectors``; the draw
    is the projection DPP with kernel ``K_s = V_s V_s^T``, built item by item from the chain
    rule ``P(i | i_1..i_t) = |P_t^perp v_i|^2 / (m - t)``, where ``v_i`` is row ``i`` of ``V_s``
    and ``P_t^perp`` projects out the rows already drawn (Gram-Schmidt in ``R^m``).

    * ``"rejection"``: propose ``i`` with probability ``|v_i|^2 / m`` (one
      ``cumsum`` over ``N``, once per draw) and accept with ``|P_t^perp v_i|^2 / |v_i|^2``;
      the acceptance rate at step ``t`` is ``(m - t) / m``, so a draw needs about ``m H_m``
      proposals at ``O(m t)`` each, and after the first cumsum it never touches the
      ``N x m`` matrix again: ``O(N m + m^3 log m)``. Proposals come in blocks sized to the
      current acceptance rate and the first accepted one is kept, so the Python loop runs
      about ``m`` times. An orthonormal basis of the drawn rows is kept (re-orthogonalised
      once per step).
    * ``"chain_rule"``: the residuals ``|P_t^perp v_i|^2`` of all ``N`` items are updated at
      every step (a pivoted Cholesky factorisation whose pivots are drawn by inverse CDF),
      ``O(N m^2)``; the better choice unless ``N`` is much larger than ``m log m``.
    * ``"auto"`` (default): ``"rejection"`` when ``N > 16 m H_m`` (``H_m`` the harmonic
      number; the constant is the crossover measured on CPU, where the chain rule's dense
      products run faster per flop than the rejection step's small gathers), else
      ``"chain_rule"``.

    Memory: the draws run in chunks of ``chunk_size`` rows, each holding ``O(N + m R)``
    numbers per row, so peak memory is set by the chunk, not by ``S``. The chain rule's
    uniforms are drawn for all rows first, so its draws do not depend on ``chunk_size``; the
    rejection sampler draws chunk after chunk (the same law for any ``chunk_size``).

    Args:
        eigenvectors: ``V`` with orthonormal columns.
        selected: which columns each draw uses.
        generator: the source of the uniforms.
        algorithm: ``"auto"``, ``"rejection"`` or ``"chain_rule"``.
        chunk_size: rows drawn at once (default: as many as fit
            :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`).

    Returns:
        Boolean masks with ``selected[s].sum()`` items set in row ``s``.

    Shape:
        ``eigenvectors``: ``(N, R)``; ``selected``: ``(S, R)`` bool -> ``(S, N)``.

    References:
        Hough et al. (2006), Alg. 18; Gillenwater (2014). Approximate inference for DPPs,
        PhD thesis, sec. 2.4 (chain rule as Gram-Schmidt); Poulson (2019). The rejection
        step is the textbook one (von Neumann 1951) applied to each conditional.
    """
    if algorithm not in PROJECTION_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {PROJECTION_ALGORITHMS}, got {algorithm!r}")
    n = eigenvectors.shape[0]
    num_rows = selected.shape[0]
    sizes = selected.sum(-1)
    if num_rows == 0 or int(sizes.max()) == 0:
        return torch.zeros(num_rows, n, dtype=torch.bool, device=eigenvectors.device)
    used = selected.any(0)  # only the columns some row uses
    v = eigenvectors[:, used]  # (N, R_u)
    weight = selected[:, used].to(eigenvectors.dtype)  # (S, R_u)
    m = int(sizes.max())
    if algorithm == "auto":
        algorithm = "rejection" if n > 16 * m * (math.log(m) + 0.58) else "chain_rule"
    itemsize = eigenvectors.element_size()
    chunk = resolve_chunk_size(chunk_size, itemsize * (4 * n + 2 * m * v.shape[1]), num_rows)
    if algorithm == "rejection":
        if num_rows == 1:  # all used columns are selected
            return _projection_rejection_single(v, generator)
        return torch.cat(
            [
                _projection_rejection(v, weight[rows], sizes[rows], generator)
                for rows in chunk_slices(num_rows, chunk)
            ]
        )
    uniforms = rand_open01((m, num_rows, 1), generator=generator, device=v.device, dtype=v.dtype)
    return torch.cat(
        [
            _projection_chain_rule(v, weight[rows], sizes[rows], uniforms[:, rows])
            for rows in chunk_slices(num_rows, chunk)
        ]
    )


def _projection_rejection(
    v: Tensor, weight: Tensor, sizes: Tensor, generator: torch.Generator | None
) -> Tensor:
    n, r = v.shape
    num_rows = weight.shape[0]
    device, dtype = v.device, v.dtype
    target = sizes.tolist()  # the loop's bookkeeping lives on the host: no per-op syncs
    count = [0] * num_rows
    m = max(target)
    if bool((weight == 1).all()):  # a single draw (or equal selections): no masking needed
        weight = None
    if weight is None:  # one proposal CDF shared by all rows, searched as a 1-D boundary
        cumulative = v.square().sum(-1).cumsum(-1)  # (N,)
        totals = cumulative[-1]
    else:
        cumulative = (v.square() @ weight.T).T.contiguous().cumsum(-1)  # (S, N)
        totals = cumulative[:, -1:]
    basis = v.new_zeros(num_rows, m, r)  # orthonormal rows spanning the drawn v_i
    mask = torch.zeros(num_rows, n, dtype=torch.bool, device=device)
    tiny = torch.finfo(dtype).tiny
    while True:
        active = [c < t for c, t in zip(count, target)]
        if not any(active):
            return mask
        # Block of proposals per row: P(no acceptance in a block) <= exp(-2) at the
        # lowest acceptance rate (m - t) / m among the active rows.
        rate = min((t - c) / t for c, t, a in zip(count, target, active) if a)
        block = min(max(math.ceil(2.0 / rate), 4), 4096)
        u = rand_open01((2, num_rows, block), generator=generator, device=device, dtype=dtype)
        candidate = torch.searchsorted(cumulative, u[0] * totals).clamp_max(n - 1)  # (S, B)
        a = v[candidate]  # (S, B, R_u)
        if weight is not None:
            a = a * weight.unsqueeze(1)
        norm2 = a.square().sum(-1)
        drawn = max(count)
        if drawn:
            span = basis[:, :drawn]  # (S, t, R_u)
            coords = torch.bmm(a, span.transpose(1, 2))  # (S, B, t)
            residual = norm2 - coords.square().sum(-1)
        else:
            residual = norm2
        # accept with |P^perp v|^2 / |v|^2; an item already drawn has residual 0 (exactly
        # 0 here, not round-off)
        accept = (u[1] * norm2 < residual) & ~mask.gather(-1, candidate)
        took = accept.any(-1)
        first = accept.to(torch.uint8).argmax(-1)  # the first accepted proposal
        took_host = took.tolist()
        which = [s for s in range(num_rows) if took_host[s] and active[s]]
        if not which:
            continue
        index = torch.tensor(which, device=device)
        pick = first[index]
        new = a[index, pick]  # (W, R_u)
        if drawn:  # Gram-Schmidt against the drawn rows, then once more for round-off
            span_w = span[index]
            new = new - torch.bmm(coords[index, pick].unsqueeze(1), span_w)[:, 0]
            new = (
                new - torch.bmm(torch.bmm(span_w, new.unsqueeze(-1)).transpose(1, 2), span_w)[:, 0]
            )
        new = new / new.norm(dim=-1, keepdim=True).clamp_min(tiny)
        slots = torch.tensor([count[s] for s in which], device=device)
        basis[index, slots] = new
        mask[index, candidate[index, pick]] = True
        for s in which:
            count[s] += 1


def _projection_rejection_single(v: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw of the projection DPP of all columns of ``v``: the rejection sampler with
    host-side indexing (fewer, smaller ops than the batched form)."""
    n, m = v.shape
    device, dtype = v.device, v.dtype
    cumulative = v.square().sum(-1).cumsum(-1)
    total = cumulative[-1]
    basis = v.new_zeros(m, m)
    picks = torch.empty(m, dtype=torch.long, device=device)
    tiny = torch.finfo(dtype).tiny
    for t in range(m):
        span = basis[:t]
        block = min(max(math.ceil(2.0 * m / (m - t)), 4), 4096)
        while True:
            u = rand_open01((2, block), generator=generator, device=device, dtype=dtype)
            candidate = torch.searchsorted(cumulative, u[0] * total).clamp_max(n - 1)
            a = v[candidate]  # (B, m)
            norm2 = a.square().sum(-1)
            coords = a @ span.T  # (B, t)
            residual = norm2 - coords.square().sum(-1)
            # a drawn item's residual is 0 only up to round-off: exclude it exactly
            accept = (u[1] * norm2 < residual) & (candidate.unsqueeze(-1) != picks[:t]).all(-1)
            hits = accept.nonzero()
            if hits.shape[0]:
                j = int(hits[0, 0])
                break
        new = a[j] - coords[j] @ span  # Gram-Schmidt, then once more for round-off
        new = new - (span @ new) @ span
        basis[t] = new / new.norm().clamp_min(tiny)
        picks[t] = candidate[j]
    return torch.zeros(1, n, dtype=torch.bool, device=device).index_fill_(1, picks, True)


def _projection_chain_rule(v: Tensor, weight: Tensor, sizes: Tensor, uniforms: Tensor) -> Tensor:
    """The chain rule for rows with ``weight``/``sizes``; ``uniforms``: ``(>= m, S, 1)``."""
    n = v.shape[0]
    num_rows = weight.shape[0]
    device, dtype = v.device, v.dtype
    m = int(sizes.max())
    # Equal sizes and selections (a single draw, k-DPP rows): no masks in the loop.
    ragged = bool((sizes != m).any())
    if bool((weight == 1).all()):
        weight = None
    residual = v.square().sum(-1).expand(num_rows, n) if weight is None else v.square() @ weight.T
    residual = residual.T.contiguous() if weight is not None else residual.contiguous()
    coefficients = v.new_zeros(num_rows, m, v.shape[-1])  # rows a_t
    tiny = torch.finfo(dtype).tiny
    picks = torch.full((num_rows, m), n, dtype=torch.long, device=device)  # n: no pick
    vt = v.T.contiguous()
    for t in range(m):
        cumulative = residual.cumsum(-1)
        item = torch.searchsorted(cumulative, uniforms[t] * cumulative[:, -1:])
        item = item.clamp_max(n - 1)  # (S, 1)
        pivot = residual.gather(-1, item).clamp_min(tiny).sqrt()
        a = v[item[:, 0]]  # K[:, item] in eigen-coordinates
        if weight is not None:
            a = a * weight
        if t:
            previous = coefficients[:, :t]  # (S, t, R_u), contiguous rows
            cross = torch.bmm(previous, a.unsqueeze(-1))  # C[item, :t]
            a = torch.baddbmm(a.unsqueeze(1), cross.transpose(1, 2), previous, alpha=-1.0)[:, 0]
        a = a / pivot
        if ragged:
            active = (sizes > t).unsqueeze(-1)  # (S, 1)
            a = torch.where(active, a, 0.0)
            item = torch.where(active, item, n)
        coefficients[:, t] = a
        column = a @ vt  # C[:, t] of every row, (S, N)
        residual = torch.addcmul(residual, column, column, value=-1.0).clamp_min_(0.0)
        residual.scatter_(-1, item.clamp_max(n - 1), 0.0)
        picks[:, t] = item[:, 0]
    mask = torch.zeros(num_rows, n + 1, dtype=torch.bool, device=device)
    return mask.scatter_(-1, picks, True)[:, :n]


def _sample_spectral(
    selection_probs: Tensor,
    eigenvectors: Tensor,
    num_samples: int,
    generator: torch.Generator | None,
    chunk_size: int | None = None,
) -> Tensor:
    """Phase one (keep eigenvector ``n`` with probability ``mu_n``) and the projection phase.

    Shape:
        ``selection_probs``: ``(B, R)``; ``eigenvectors``: ``(B, N, R)`` ->
        ``(num_samples, B, N)``.
    """
    batch, r = selection_probs.shape
    uniforms = rand_open01(
        (num_samples, batch, r),
        generator=generator,
        device=selection_probs.device,
        dtype=selection_probs.dtype,
    )
    keep = uniforms < selection_probs
    draws = [
        sample_projection_dpp(eigenvectors[b], keep[:, b], generator, chunk_size=chunk_size)
        for b in range(batch)
    ]
    if not draws:  # an empty batch of kernels
        return keep.new_zeros((num_samples, 0, eigenvectors.shape[-2]))
    return torch.stack(draws, dim=1)


def sample_cholesky(
    marginal_kernel: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Sequential (LDL^T) sampler from a marginal kernel, no eigendecomposition.

    Item ``i`` is included with its conditional probability ``K_ii`` given the decisions on
    items ``< i``; the trailing block is then conditioned by a rank-one update
    ``K -= K_{:,i} K_{i,:} / (K_ii - [i excluded])``, the Schur complement of an LDL^T step.

    Each draw conditions its own ``N x N`` copy of the kernel, so the draws run in chunks of
    ``chunk_size`` (default: as many as fit
    :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`); peak memory is about
    ``chunk_size * N^2`` numbers whatever ``num_samples`` is. The uniforms are drawn for all
    draws first, so the result does not depend on ``chunk_size``.

    Shape:
        ``marginal_kernel``: ``(B, N, N)`` -> ``(num_samples, B, N)``.

    References:
        Poulson (2019), Alg. 1; Launay, Galerne & Desolneux (2020), Alg. 2.
    """
    batch, n, _ = marginal_kernel.shape
    rows = num_samples * batch
    uniforms = rand_open01(
        (n, rows), generator=generator, device=marginal_kernel.device, dtype=marginal_kernel.dtype
    )
    chunk = resolve_chunk_size(chunk_size, n * n * marginal_kernel.element_size(), rows)
    # row r = (sample s, kernel b) with b = r % batch, in sample-major order
    which = torch.arange(rows, device=marginal_kernel.device) % batch
    masks = [
        _cholesky_draws(marginal_kernel[which[part]], uniforms[:, part])
        for part in chunk_slices(rows, chunk)
    ]
    return torch.cat(masks).reshape(num_samples, batch, n)


def _cholesky_draws(kernel: Tensor, uniforms: Tensor) -> Tensor:
    """The LDL^T draws of :func:`sample_cholesky` on ``kernel`` ``(R, N, N)`` (a copy,
    conditioned in place), with ``uniforms`` ``(N, R)``; returns masks ``(R, N)``."""
    n = kernel.shape[-1]
    tiny = torch.finfo(kernel.dtype).tiny
    mask = torch.zeros(kernel.shape[0], n, dtype=torch.bool, device=kernel.device)
    for i in range(n):
        p = kernel[:, i, i].clamp(0.0, 1.0)
        take = uniforms[i] < p
        mask[:, i] = take
        if i + 1 == n:
            break
        pivot = torch.where(take, p, p - 1.0)
        pivot = torch.where(pivot.abs() < tiny, torch.where(take, tiny, -tiny), pivot)
        col = kernel[:, i + 1 :, i]
        # rank-one Schur update in place (no (R, N, N) temporary)
        kernel[:, i + 1 :, i + 1 :].baddbmm_(
            col.unsqueeze(-1), (col / pivot.unsqueeze(-1)).unsqueeze(-2), alpha=-1.0
        )
    return mask


# ------------------------------------------------------------------------- log-dets


def map_sample_chunks(
    fn: Callable[[Tensor], Tensor],
    mask: Tensor,
    event_dims: int,
    row_bytes: int,
    chunk_size: int | None,
) -> Tensor:
    """``fn(mask)`` evaluated on chunks of the leading (sample) dims of ``mask``.

    ``mask`` is ``(*sample, *rest)`` with ``len(rest) = event_dims``; ``fn`` maps
    ``(rows, *rest)`` to ``(rows, *out)``, using about ``row_bytes`` of temporaries per row.
    Returns ``(*sample, *out)``. Without sample dims ``fn`` is called once.
    """
    if mask.dim() <= event_dims:  # no sample dims (a mask may broadcast against the batch)
        return fn(mask)
    sample = mask.shape[: mask.dim() - event_dims]
    flat = mask.reshape(math.prod(sample), *mask.shape[len(sample) :])
    chunk = resolve_chunk_size(chunk_size, row_bytes, flat.shape[0])
    out = torch.cat([fn(flat[rows]) for rows in chunk_slices(flat.shape[0], chunk)])
    return out.reshape(*sample, *out.shape[1:])


def log_det_subsets(
    mask: Tensor,
    *,
    L: Tensor | None = None,
    features: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """``log det(L_A)`` for the subsets ``A`` given as masks (``-inf`` when singular).

    With ``L`` the submatrix is embedded as ``L ∘ m m^T + diag(1 - m)`` (same determinant),
    so a batch of masks is a batched ``slogdet``, taken in chunks of ``chunk_size`` masks
    (default: as many as keep the ``N x N`` temporaries under
    :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`). With ``features`` only the
    selected rows are gathered (padded to the largest subset), so ``N x N`` is never formed;
    subsets larger than ``d`` get ``-inf``.

    Shape:
        ``mask``: ``(*sample, *batch, N)`` bool; ``L``: ``(*batch, N, N)``; ``features``:
        ``(*batch, N, d)`` -> ``(*sample, *batch)``.

    References:
        Kulesza & Taskar (2012), eq. (2.12).
    """
    m = mask.to(torch.bool)
    if L is not None:

        def log_dets(rows: Tensor) -> Tensor:
            mf = rows.to(L.dtype)
            matrix = L * mf.unsqueeze(-1) * mf.unsqueeze(-2) + torch.diag_embed(1.0 - mf)
            sign, logabs = torch.linalg.slogdet(matrix)
            return torch.where(sign > 0, logabs, float("-inf"))

        batch_dims = L.dim() - 2
        n = L.shape[-1]
        row_bytes = 3 * n * n * L.element_size() * max(1, L.shape[:-2].numel())
        return map_sample_chunks(log_dets, m, batch_dims + 1, row_bytes, chunk_size)
    d = features.shape[-1]
    sizes = m.sum(-1)
    width = int(sizes.max()) if sizes.numel() else 0
    out_shape = torch.broadcast_shapes(m.shape[:-1], features.shape[:-2])
    if width == 0:
        return features.new_zeros(out_shape)
    m = m.expand(*out_shape, m.shape[-1])
    phi = features.expand(*out_shape, *features.shape[-2:])
    order = torch.sort(m.to(torch.uint8), dim=-1, descending=True, stable=True).indices[..., :width]
    rows = torch.gather(phi, -2, order.unsqueeze(-1).expand(*order.shape, d))
    valid = (torch.arange(width, device=m.device) < sizes.unsqueeze(-1)).to(features.dtype)
    rows = rows * valid.unsqueeze(-1)
    gram = rows @ rows.transpose(-1, -2) + torch.diag_embed(1.0 - valid)
    sign, logabs = torch.linalg.slogdet(gram)
    return torch.where((sign > 0) & (sizes <= d), logabs, float("-inf"))


def _check_mask(value: Tensor, n: int) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"value must be a torch.Tensor mask, got {type(value).__name__}")
    if value.dim() < 1 or value.shape[-1] != n:
        raise ValueError(f"value must be a mask of shape (..., {n}), got {tuple(value.shape)}")
    if value.dtype != torch.bool:
        if bool(((value != 0) & (value != 1)).any()):
            raise ValueError("value must be a boolean mask (or hold only 0 and 1)")
        value = value != 0
    return value


# ----------------------------------------------------------------------------- DPP


class DPP(Distribution):
    """Determinantal point process over subsets of ``N`` items; a sample is a bool mask.

    Give exactly one of ``L`` (L-ensemble, symmetric PSD), ``K`` (marginal kernel,
    ``0 <= K <= I``) or ``features`` (``L = Phi Phi^T``; sampled by the dual method without
    forming ``N x N``). The eigendecomposition is computed on first use and cached, so
    repeated ``sample`` calls cost only the sampling phase. Leading dims are batch dims.

    Args:
        L: the L-ensemble.
        K: the marginal kernel.
        features: ``Phi`` with ``L = Phi Phi^T``.
        validate_args: when true (torch's default), check the input at construction:
            symmetry (relative tolerance ``10 sqrt(eps)``) always, and the eigenvalue bounds
            (``L >= 0``; ``0 <= K <= I``, up to ``10 N eps max|lam|``), which costs the
            eigendecomposition that sampling needs anyway. With false they are checked on
            first use of the spectrum.

    Shape:
        ``L``, ``K``: ``(*batch, N, N)``; ``features``: ``(*batch, N, d)``;
        ``sample(sample_shape)``: ``(*sample_shape, *batch, N)`` bool;
        ``log_prob(mask)``: ``(*sample, *batch)``.

    Example::

        >>> x = torch.randn(50, 2, dtype=torch.float64)
        >>> dpp = DPP(L=torch.exp(-torch.cdist(x, x) ** 2))
        >>> mask = dpp.sample(generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isfinite(dpp.log_prob(mask)))
        True

    References:
        Kulesza & Taskar (2012); Hough et al. (2006); Poulson (2019).
    """

    arg_constraints = {
        "L": constraints.positive_semidefinite,
        "K": constraints.positive_semidefinite,
        "features": constraints.real,
    }
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(
        self,
        L: Tensor | None = None,
        K: Tensor | None = None,
        *,
        features: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        given = [name for name, x in (("L", L), ("K", K), ("features", features)) if x is not None]
        if len(given) != 1:
            raise ValueError(f"pass exactly one of L, K and features, got {given or 'none'}")
        self._L = self._K = self._features = None
        self._spectrum: Spectrum | None = None
        if L is not None:
            self._L = check_symmetric("L", L)
            n, batch = L.shape[-1], L.shape[:-2]
        elif K is not None:
            self._K = check_symmetric("K", K)
            n, batch = K.shape[-1], K.shape[:-2]
        else:
            check_features("features", features)
            self._features = features
            n, batch = features.shape[-2], features.shape[:-2]
        self.num_items = n
        # torch's own PSD constraint has no round-off tolerance; our checks replace it.
        super().__init__(batch, torch.Size([n]), validate_args=False)
        if validate_args is None:
            validate_args = Distribution._validate_args
        self._check_values = bool(validate_args)
        if self._check_values:
            self.spectrum  # noqa: B018 - computes and checks the eigenvalues

    # ------------------------------------------------------------------ parameters
    @property
    def source(self) -> str:
        """Which parameter defines the process: ``"L"``, ``"K"`` or ``"features"``."""
        return "L" if self._L is not None else "K" if self._K is not None else "features"

    @property
    def _param(self) -> Tensor:
        return next(x for x in (self._L, self._K, self._features) if x is not None)

    @property
    def spectrum(self) -> Spectrum:
        """Cached eigenvalues and eigenvectors of ``L`` (or of ``K`` for a ``K`` source)."""
        if self._spectrum is None:
            if self._K is not None:
                self._spectrum = _checked_eigh("K", self._K, upper=1.0)
            elif self._L is not None:
                self._spectrum = _checked_eigh("L", self._L)
            else:
                self._spectrum = l_ensemble_spectrum(features=self._features)
        return self._spectrum

    @property
    def selection_probs(self) -> Tensor:
        """Eigenvalues of ``K``: the probability that each eigenvector is kept, ``(*batch, R)``."""
        lam = self.spectrum.eigenvalues
        return lam if self._K is not None else lam / (1.0 + lam)

    @property
    def L(self) -> Tensor:
        """The L-ensemble (formed as ``Phi Phi^T`` for features; raises for ``K`` sources
        with an eigenvalue 1, whose L-ensemble does not exist)."""
        if self._L is not None:
            return self._L
        if self._features is not None:
            return self._features @ self._features.transpose(-1, -2)
        mu, v = self.spectrum
        if bool((mu >= 1.0).any()):
            raise ValueError("K has an eigenvalue 1: this DPP has no L-ensemble")
        return (v * (mu / (1.0 - mu)).unsqueeze(-2)) @ v.transpose(-1, -2)

    @property
    def marginal_kernel(self) -> Tensor:
        """``K = L (L + I)^-1``, from the cached eigendecomposition. Shape ``(*batch, N, N)``."""
        if self._K is not None:
            return self._K
        v = self.spectrum.eigenvectors
        return symmetrize((v * self.selection_probs.unsqueeze(-2)) @ v.transpose(-1, -2))

    @property
    def inclusion_probs(self) -> Tensor:
        """``P(i in A) = K_ii``, ``O(N R)`` from the spectrum. Shape ``(*batch, N)``."""
        if self._K is not None:
            return self._K.diagonal(dim1=-2, dim2=-1).clamp(0.0, 1.0)
        v = self.spectrum.eigenvectors
        return (v.square() * self.selection_probs.unsqueeze(-2)).sum(-1).clamp(0.0, 1.0)

    @property
    def mean(self) -> Tensor:
        """Expected mask: the inclusion probabilities."""
        return self.inclusion_probs

    @property
    def variance(self) -> Tensor:
        p = self.inclusion_probs
        return p * (1.0 - p)

    @property
    def expected_size(self) -> Tensor:
        """``E|A| = tr K = sum_n lam_n / (1 + lam_n)``. Shape ``batch_shape``."""
        return self.selection_probs.sum(-1)

    def pair_inclusion_probs(self) -> Tensor:
        """``P(i, j in A) = K_ii K_jj - K_ij^2`` (diagonal: ``K_ii``). Shape ``(*batch, N, N)``."""
        k = self.marginal_kernel
        diag = k.diagonal(dim1=-2, dim2=-1)
        pairs = diag.unsqueeze(-1) * diag.unsqueeze(-2) - k.square()
        return pairs.diagonal_scatter(diag, dim1=-2, dim2=-1)

    def _marginal_kernel_for_cholesky(self) -> Tensor:
        # Without a cached spectrum, K = I - (L + I)^-1 by a linear solve: no eigendecomposition.
        if self._spectrum is not None or self._K is not None:
            return self.marginal_kernel
        L = self.L
        eye = torch.eye(self.num_items, dtype=L.dtype, device=L.device)
        return symmetrize(eye - torch.linalg.solve(L + eye, eye.expand_as(L)))

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
        method: str | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Exact draws as boolean masks.

        Args:
            sample_shape: leading shape of the draws; they are drawn as batches of
                ``chunk_size`` draws (the projection phase runs on each as one batch).
            generator: source of randomness (on the parameters' device).
            method: ``"spectral"``, ``"dual"`` (features only) or ``"cholesky"``; the default
                is ``"dual"`` for features and ``"spectral"`` otherwise.
            chunk_size: draws (per kernel of the batch) sampled at once; bounds peak memory
                (``"cholesky"``: about ``chunk_size * N^2`` numbers; spectral and dual:
                ``chunk_size * (N + m R)`` for ``m`` kept of ``R`` eigenvectors). The default
                keeps the temporaries under
                :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`. The result does not
                depend on it, except for the spectral rejection sampler (used when ``N`` is
                much larger than the expected size), whose draws follow the same law.

        Shape:
            ``(*sample_shape, *batch_shape, N)``.
        """
        check_chunk_size(chunk_size)
        if method is None:
            method = "dual" if self._features is not None else "spectral"
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if method == "dual" and self._features is None:
            raise ValueError("method='dual' needs a DPP built from features")
        param = self._param
        check_generator_device(generator, param.device)
        shape = torch.Size(sample_shape)
        num = shape.numel()
        batch = self.batch_shape.numel()
        n = self.num_items
        if method == "cholesky":
            kernel = self._marginal_kernel_for_cholesky().reshape(batch, n, n)
            mask = sample_cholesky(kernel, num, generator, chunk_size=chunk_size)
            return mask.reshape(shape + self.batch_shape + (n,))
        # spectral and dual share the two phases; they differ in how the spectrum is found.
        mu = self.selection_probs  # explicit sizes: an empty batch cannot infer a -1
        mu = mu.reshape(batch, mu.shape[-1])
        vectors = self.spectrum.eigenvectors.reshape(batch, n, mu.shape[-1])
        mask = _sample_spectral(mu, vectors, num, generator, chunk_size)
        return mask.reshape(shape + self.batch_shape + (n,))

    def log_prob(self, value: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """``log P(A) = log det(L_A) - log det(L + I)`` (or ``log|det(K - I_{not A})|``).

        ``chunk_size`` masks are evaluated at once (default: as many as keep the ``N x N``
        temporaries under :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`).

        Shape:
            ``value``: ``(*sample, *batch, N)`` mask -> ``(*sample, *batch)``.
        """
        mask = _check_mask(value, self.num_items)
        if self._K is not None:
            K = self._K

            def log_probs(rows: Tensor) -> Tensor:
                mf = rows.to(K.dtype)
                return torch.linalg.slogdet(K - torch.diag_embed(1.0 - mf))[1]

            n = self.num_items
            row_bytes = 3 * n * n * K.element_size() * max(1, self.batch_shape.numel())
            return map_sample_chunks(log_probs, mask, K.dim() - 1, row_bytes, chunk_size)
        log_norm = torch.log1p(self.spectrum.eigenvalues).sum(-1)
        log_det = log_det_subsets(mask, L=self._L, features=self._features, chunk_size=chunk_size)
        return log_det - log_norm

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """All ``2^N`` masks (small ``N`` only). Shape ``(2^N, *batch, N)``."""
        masks = all_subsets(self.num_items, device=self._param.device)
        masks = masks.reshape(-1, *([1] * len(self.batch_shape)), self.num_items)
        return masks.expand(-1, *self.batch_shape, -1) if expand else masks

    def __repr__(self) -> str:
        return f"DPP({self.source}: batch_shape={tuple(self.batch_shape)}, N={self.num_items})"


def all_subsets(n: int, device: torch.device | str | None = None) -> Tensor:
    """Every subset of ``n`` items as a bool mask, in binary order. Shape ``(2^n, n)``."""
    if n > 20:
        raise ValueError(f"enumerating 2^n subsets needs n <= 20, got n={n}")
    codes = torch.arange(2**n, device=device)
    return (codes.unsqueeze(-1) >> torch.arange(n, device=device)) & 1 == 1
