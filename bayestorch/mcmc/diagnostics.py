"""Convergence diagnostics for many chains at once: R-hat, bulk/tail ESS, MCSE, summary.

Implements Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC":

* :func:`effective_sample_size` / :func:`mcse_mean`: Stan's multi-chain ESS of the mean
  ("ess_basic", not rank-normalised): FFT autocovariances per chain, combined with the
  within- and between-chain variances, then Geyer's initial positive and initial
  monotone sequence truncation.
* :func:`rank_normalize`: average ranks of all chains' draws pooled, mapped through the
  normal quantile of ``(r - 3/8) / (S + 1/4)`` (Blom 1958).
* :func:`ess_bulk` (ESS of the rank-normalised split chains), :func:`ess_tail` (the
  smaller ESS of the indicators ``x <= q_0.05`` and ``x <= q_0.95``),
  :func:`ess_quantile`, :func:`rhat` (rank-normalised split R-hat: the larger of the
  bulk R-hat and the R-hat of the folded draws ``|x - median|``) and :func:`mcse_sd`.
* :func:`summary` (all of them at once, sharing sorts, centring and splitting) and
  :func:`format_summary` (a fixed-width text table).

Chains are split in half first, as in Stan and ArviZ, so that a trend within a chain
shows up as between-chain variance. Everything is batched over chains and event
dimensions (no Python loop over either), runs on the device of the input without host
synchronisation, and computes in float64. Every function equals its ArviZ 0.23
counterpart (``ess(method="mean" | "bulk" | "tail" | "quantile")``,
``rhat(method="rank")``, ``mcse(method="mean" | "sd")``, ``summary``), including its
edge-case conventions: a constant coordinate has ESS equal to the number of draws and a
NaN R-hat and ``mcse_sd``; R-hat needs at least 2 chains (NaN otherwise); quantiles are
R's type 7.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "effective_sample_size",
    "ess_bulk",
    "ess_quantile",
    "ess_tail",
    "format_summary",
    "mcse_mean",
    "mcse_sd",
    "rank_normalize",
    "rhat",
    "summary",
]

# Range below which a coordinate counts as constant (numpy's float64 "resolution",
# the threshold ArviZ uses); its ESS is then defined as the number of draws.
_CONSTANT_RESOLUTION = 1e-15


def _check_samples(samples: Tensor) -> None:
    if not isinstance(samples, Tensor):
        raise TypeError(f"samples must be a torch.Tensor, got {type(samples).__name__}")
    if samples.dim() < 2:
        raise ValueError(
            f"samples must have shape (chains, draws, *event), got shape {tuple(samples.shape)}"
        )
    if samples.is_complex():
        raise TypeError(f"samples must be real (floating, integer or bool), got {samples.dtype}")
    if samples.shape[0] < 1 or samples.shape[1] < 4:
        raise ValueError(
            "samples need at least 1 chain and 4 draws (chains, draws, *event), "
            f"got shape {tuple(samples.shape)}"
        )


def _working_dtype(samples: Tensor) -> tuple[Tensor, torch.dtype]:
    """``(chains, draws, *event)`` draws as float64 in the layout ``(*event, chains, draws)``
    (contiguous), and the dtype of the result.

    Autocorrelation sums near the truncation point are sensitive to rounding, so the
    computation runs in float64; the result is returned in the input's float dtype.
    Draws last make the FFTs, sorts and scans run along contiguous memory; chains next
    to them make a chain's split halves and the pooled draws of a coordinate views.
    """
    out_dtype = samples.dtype if samples.is_floating_point() else torch.float64
    work = samples.to(torch.float64).movedim((0, 1), (-2, -1)).contiguous()
    return work, out_dtype


def _split_last(chains: Tensor) -> Tensor:
    """Split each chain into its first and last halves (the middle draw of an odd chain
    is dropped): ``(..., chains, draws) -> (..., 2 * chains, draws // 2)``."""
    half = chains.shape[-1] // 2
    return torch.cat([chains[..., :half], chains[..., chains.shape[-1] - half :]], dim=-2)


def _split_chains(samples: Tensor) -> Tensor:
    """:func:`_split_last` in the public layout: ``(chains, draws, *event) -> (2 * chains,
    draws // 2, *event)``."""
    return _split_last(samples.movedim((0, 1), (-2, -1))).movedim((-2, -1), (0, 1))


def _next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: a fast FFT length."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def _mean_autocovariance(chains: Tensor) -> Tensor:
    """Biased (divide-by-n) autocovariance at every lag, averaged over chains, via FFT.

    The inverse FFT is linear, so the chains' power spectra are averaged first and one
    inverse transform per coordinate suffices.

    Shape:
        ``(..., chains, draws) -> (..., draws)``; lag along the last dim.
    """
    num_draws = chains.shape[-1]
    if chains.numel() == 0:  # no coordinates (an empty event): MKL's FFT rejects empty input
        return chains.new_zeros((*chains.shape[:-2], num_draws))
    centred = chains - chains.mean(dim=-1, keepdim=True)
    # Zero-pad to >= 2n - 1 so the circular correlation equals the linear one.
    fft_len = _next_fast_len(2 * num_draws - 1)
    spectrum = torch.view_as_real(torch.fft.rfft(centred, n=fft_len, dim=-1)).square()
    power = (spectrum[..., 0] + spectrum[..., 1]).mean(dim=-2)
    acov = torch.fft.irfft(torch.complex(power, torch.zeros_like(power)), n=fft_len, dim=-1)
    return acov[..., :num_draws] / num_draws


def _all_finite(largest: Tensor, smallest: Tensor) -> Tensor:
    # max and min propagate NaN, so both are finite exactly when every value is; cheaper
    # than a full isfinite pass, and they are needed anyway for the constant check.
    return torch.isfinite(largest) & torch.isfinite(smallest)


def _ess_last(chains: Tensor) -> Tensor:
    """Multi-chain ESS of chains used as given (no splitting, no rank normalisation).

    Follows Stan's ``compute_effective_sample_size`` / ArviZ's ``_ess`` exactly,
    vectorised: the sequential Geyer loops become a first-non-positive-pair search and
    a cumulative minimum over the pair sums.

    Shape:
        ``(..., chains, draws) -> (...)``, float64 in, float64 out.
    """
    num_chains, num_draws = chains.shape[-2:]
    total = num_chains * num_draws
    acov = _mean_autocovariance(chains)
    within = acov[..., :1] * num_draws / (num_draws - 1.0)  # mean of chain variances
    var_plus = within * (num_draws - 1.0) / num_draws
    if num_chains > 1:
        var_plus = var_plus + chains.mean(dim=-1).var(dim=-1, correction=1).unsqueeze(-1)

    # Combined autocorrelation at every lag (Vehtari et al. 2021, Sec. 3); rho_0 = 1.
    rho = 1.0 - (within - acov) / var_plus
    rho[..., 0] = 1.0

    # Pair sums P_k = rho_{2k} + rho_{2k+1} for the pairs Stan's loop can reach:
    # k = 0..k_max with 2k + 1 <= draws - 2.
    k_max = max((num_draws - 3) // 2, 0)
    num_pairs = k_max + 1
    even = rho[..., 0 : 2 * num_pairs : 2]
    pairs = rho[..., : 2 * num_pairs].unflatten(-1, (num_pairs, 2)).sum(dim=-1)

    # Initial positive sequence: keep pairs before the first non-positive one (K). If all
    # reachable pairs are positive, K = k_max.
    non_positive = pairs <= 0
    non_positive[..., -1] = True
    keep = torch.cumsum(non_positive.to(torch.int32), dim=-1) == 0  # k < K
    first_bad = keep.sum(dim=-1, keepdim=True)  # K
    # Initial monotone sequence: pair sums made non-increasing.
    monotone = torch.cummin(pairs, dim=-1).values
    # Stan adds rho_{2K} on its own when it is positive (or when pair K was accepted).
    last_even = even.gather(-1, first_bad).squeeze(-1)
    last_pair = pairs.gather(-1, first_bad).squeeze(-1)
    last_term = torch.where((last_pair >= 0) | (last_even > 0), last_even, 0.0)

    tau = -1.0 + 2.0 * torch.where(keep, monotone, 0.0).sum(dim=-1) + last_term
    # Stan's cap: ESS <= N log10(N), to guard against antithetic chains.
    tau = tau.clamp(min=1.0 / math.log10(total))
    ess = total / tau

    largest, smallest = chains.flatten(-2).amax(dim=-1), chains.flatten(-2).amin(dim=-1)
    ess = torch.where((largest - smallest) < _CONSTANT_RESOLUTION, float(total), ess)
    return torch.where(_all_finite(largest, smallest), ess, float("nan"))


def _ess_from_samples(samples: Tensor) -> Tensor:
    """:func:`_ess_last` in the public layout: ``(chains, draws, *event) -> (*event,)``,
    float64 in, float64 out. E.g. ``bulk = _ess_from_samples(_z_scale(_split_chains(x)))``.
    """
    return _ess_last(samples.movedim((0, 1), (-2, -1)).contiguous())


def effective_sample_size(samples: Tensor, *, split: bool = True) -> Tensor:
    """Multi-chain effective sample size of the mean ("ess_basic", not rank-normalised).

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.
        split: split each chain in half first (Stan's and ArviZ's default), so that
            non-stationary chains get a low ESS.

    Returns:
        ESS per coordinate, on the device of ``samples`` and in its floating dtype
        (float64 for integer input). NaN where a coordinate has a non-finite draw;
        the number of draws where a coordinate is constant.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization,
        folding, and localization: an improved R-hat for assessing convergence of
        MCMC. Bayesian Analysis 16(2). Geyer (1992). Practical Markov chain Monte
        Carlo. Statistical Science 7(4). Stan Reference Manual, "Effective sample
        size".

    Example::

        >>> x = torch.randn(4, 1000, 3, generator=torch.Generator().manual_seed(0))
        >>> effective_sample_size(x).shape
        torch.Size([3])
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    return _ess_last(_split_last(work) if split else work).to(out_dtype)


def mcse_mean(samples: Tensor, *, split: bool = True) -> Tensor:
    """Monte Carlo standard error of the posterior mean: ``sd / sqrt(ess)``.

    ``sd`` is the standard deviation of all draws pooled (``ddof=1``) and ``ess`` is
    :func:`effective_sample_size`.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.
        split: passed to :func:`effective_sample_size`.

    Returns:
        MCSE per coordinate, on the device of ``samples`` and in its floating dtype.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2); Flegal, Haran, Jones (2008).
        Markov chain Monte Carlo: can we trust the third significant figure?
        Statistical Science 23(2).
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    ess = _ess_last(_split_last(work) if split else work)
    sd = work.flatten(-2).std(dim=-1, correction=1)
    return (sd / ess.sqrt()).to(out_dtype)


# ---------------------------------------------------------------------------------------
# Rank normalisation, quantiles, R-hat: private blocks on float64 tensors.
# ---------------------------------------------------------------------------------------

# Blom's (1958) offset in the rank back-transformation (r - c) / (S - 2c + 1).
_BLOM_OFFSET = 3.0 / 8.0


def _normal_scores(sorted_values: Tensor, order: Tensor) -> Tensor:
    """Rank-normalised draws from their sort: ``torch.sort(pooled, dim=-1)`` of pooled
    draws ``(..., S)`` gives their normal scores ``(..., S)`` in their original places.

    Tied draws occupy sorted positions ``start..end`` and share the average rank
    ``(start + end) / 2 + 1``, as scipy's ``rankdata(method="average")``. Since
    ``2 * rank - 2 = start + end`` is an integer below ``2 S - 1``, the normal quantiles
    are computed once for those ``2 S - 1`` values and looked up.
    """
    size = sorted_values.shape[-1]
    device = sorted_values.device
    positions = torch.arange(size, device=device)
    is_first = torch.ones_like(sorted_values, dtype=torch.bool)
    is_first[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    is_last = torch.ones_like(is_first)
    is_last[..., :-1] = is_first[..., 1:]
    start = torch.where(is_first, positions, 0).cummax(dim=-1).values
    end = torch.where(is_last, positions, size - 1).flip(-1).cummin(dim=-1).values.flip(-1)
    ranks = (torch.arange(2 * size - 1, dtype=torch.float64, device=device) + 2.0) / 2.0
    table = torch.special.ndtri((ranks - _BLOM_OFFSET) / (size - 2.0 * _BLOM_OFFSET + 1.0))
    return torch.empty_like(sorted_values).scatter_(-1, order, table[start + end])


def _z_last(chains: Tensor, sort: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Rank-normalise all chains' draws pooled: ``(..., chains, draws)`` -> same shape.

    ``sort`` may pass ``torch.sort(chains.flatten(-2), dim=-1)`` when already computed.
    """
    if sort is None:
        sort = torch.sort(chains.flatten(-2), dim=-1)
    return _normal_scores(*sort).unflatten(-1, chains.shape[-2:])


def _z_scale(samples: Tensor) -> Tensor:
    """:func:`_z_last` in the public layout ``(chains, draws, *event)``."""
    return _z_last(samples.movedim((0, 1), (-2, -1))).movedim((-2, -1), (0, 1))


def _median_sorted(sorted_pooled: Tensor) -> Tensor:
    """numpy's median (mean of the two middle values) from sorted ``(..., S)``."""
    size = sorted_pooled.shape[-1]
    return (sorted_pooled[..., (size - 1) // 2] + sorted_pooled[..., size // 2]) / 2.0


def _quantile_sorted(sorted_pooled: Tensor, prob: float) -> Tensor:
    """R's type 7 quantile from sorted ``(..., S)``, with the arithmetic of scipy's
    ``mstats.mquantiles(alphap=1, betap=1)`` (ArviZ's quantile), so that a quantile
    landing on tied draws equals them exactly and ``x <= q`` counts them alike."""
    size = sorted_pooled.shape[-1]
    aleph = size * prob + (1.0 + prob * (1.0 - 1.0 - 1.0))
    index = int(math.floor(min(max(aleph, 1.0), size - 1.0)))
    gamma = min(max(aleph - index, 0.0), 1.0)
    return (1.0 - gamma) * sorted_pooled[..., index - 1] + gamma * sorted_pooled[..., index]


def _rhat_basic(chains: Tensor) -> Tensor:
    """Gelman-Rubin potential scale reduction of chains used as given.

    Shape:
        ``(..., chains, draws) -> (...)``.
    """
    num_draws = chains.shape[-1]
    between = num_draws * chains.mean(dim=-1).var(dim=-1, correction=1)
    within = chains.var(dim=-1, correction=1).mean(dim=-1)
    return torch.sqrt((between / within + num_draws - 1.0) / num_draws)


def _larger(first: Tensor, second: Tensor) -> Tensor:
    """Python's ``max(first, second)`` elementwise: ``second`` only if it is larger (so a
    NaN ``first`` wins, a NaN ``second`` loses), as in ArviZ."""
    return torch.where(second > first, second, first)


def _smaller(first: Tensor, second: Tensor) -> Tensor:
    """Python's ``min(first, second)`` elementwise (see :func:`_larger`)."""
    return torch.where(second < first, second, first)


def _rank_rhat(chains: Tensor, median: Tensor | None = None) -> Tensor:
    """Rank-normalised split R-hat of float64 ``(..., chains, draws)`` draws: ``(...)``.

    The draws are folded around ``median``; by default the median of the split chains
    (``arviz.rhat``); ``arviz.summary`` folds around the median of all draws, which
    differs when the number of draws is odd.
    """
    split = _split_last(chains)
    sort = torch.sort(split.flatten(-2), dim=-1)
    bulk = _rhat_basic(_z_last(split, sort))
    if median is None:
        median = _median_sorted(sort.values)
    tail = _rhat_basic(_z_last((split - median[..., None, None]).abs()))
    rhat_value = _larger(bulk, tail)
    if chains.shape[-2] < 2:  # ArviZ's convention, though split chains would allow it
        rhat_value = torch.full_like(rhat_value, float("nan"))
    return rhat_value


def _finite_coordinates(chains: Tensor) -> Tensor:
    """Whether all draws of a coordinate are finite: ``(..., chains, draws) -> (...)``."""
    return _all_finite(chains.flatten(-2).amax(dim=-1), chains.flatten(-2).amin(dim=-1))


def _nan_where_not_finite(value: Tensor, chains: Tensor) -> Tensor:
    """NaN at every coordinate of ``value`` whose draws ``(..., chains, draws)`` are not
    all finite."""
    return torch.where(_finite_coordinates(chains), value, float("nan"))


def _check_prob(name: str, prob: float) -> float:
    prob = float(prob)
    if not 0.0 < prob < 1.0:
        raise ValueError(f"{name} must be a probability in (0, 1), got {prob}")
    return prob


# ---------------------------------------------------------------------------------------
# Public diagnostics.
# ---------------------------------------------------------------------------------------


def rank_normalize(samples: Tensor) -> Tensor:
    """Rank-normalise draws: normal scores of their ranks among all chains' draws.

    Each draw is replaced by ``Phi^{-1}((r - 3/8) / (S + 1/4))``, where ``r`` is its rank
    among the ``S = chains * draws`` draws of its coordinate (tied draws share their
    average rank) and ``Phi^{-1}`` the standard normal quantile. Chains are not split.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.

    Returns:
        z-scores of the same shape, on the device of ``samples`` and in its floating
        dtype (float64 for integer input). A coordinate with a NaN draw is all NaN.

    Shape:
        ``(chains, draws, *event) -> (chains, draws, *event)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2), Sec. 4. Blom (1958).
        Statistical Estimates and Transformed Beta-Variables. Wiley.
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    has_nan = torch.isnan(work).flatten(-2).any(dim=-1)
    z = torch.where(has_nan[..., None, None], float("nan"), _z_last(work))
    return z.movedim((-2, -1), (0, 1)).to(out_dtype)


def ess_bulk(samples: Tensor) -> Tensor:
    """Bulk effective sample size: the ESS of the rank-normalised split chains.

    Measures how well the centre of the distribution is explored; unlike the ESS of the
    mean it is defined for heavy-tailed draws and invariant to monotone transformations.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.

    Returns:
        Bulk ESS per coordinate, on the device of ``samples`` and in its floating dtype
        (float64 for integer input). NaN where a coordinate has a non-finite draw; the
        number of (split) draws where it is constant. Equals ``arviz.ess(x,
        method="bulk")``.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization,
        folding, and localization: an improved R-hat for assessing convergence of
        MCMC. Bayesian Analysis 16(2), Sec. 4.

    Example::

        >>> x = torch.randn(4, 1000, 3, generator=torch.Generator().manual_seed(0))
        >>> ess_bulk(x).shape
        torch.Size([3])
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    ess = _ess_last(_z_last(_split_last(work)))
    return _nan_where_not_finite(ess, work).to(out_dtype)


def _indicator_ess(chains: Tensor, probs: Sequence[float]) -> Tensor:
    """ESS of the split indicators ``x <= q_p`` of ``(..., chains, draws)`` draws for
    each ``p``: ``(..., len(probs))``, in one batched FFT."""
    sorted_all = torch.sort(chains.flatten(-2), dim=-1).values
    split = _split_last(chains)
    indicators = [split <= _quantile_sorted(sorted_all, prob)[..., None, None] for prob in probs]
    return _ess_last(torch.stack(indicators, dim=-3).to(torch.float64))


def ess_quantile(samples: Tensor, prob: float) -> Tensor:
    """Effective sample size of a quantile: the ESS of the indicator ``x <= q_prob``.

    The quantile ``q_prob`` of all draws pooled is R's type 7; the indicator's chains
    are split in half.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.
        prob: the quantile's probability, in (0, 1).

    Returns:
        ESS per coordinate, as :func:`ess_bulk`. Equals ``arviz.ess(x,
        method="quantile", prob=prob)``.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2), Sec. 4.3.
    """
    _check_samples(samples)
    prob = _check_prob("prob", prob)
    work, out_dtype = _working_dtype(samples)
    ess = _indicator_ess(work, [prob])[..., 0]
    return _nan_where_not_finite(ess, work).to(out_dtype)


def ess_tail(samples: Tensor, *, prob: float = 0.05) -> Tensor:
    """Tail effective sample size: the smaller ESS of the quantiles ``prob`` and
    ``1 - prob`` (5% and 95% by default).

    Measures how well the tails are explored, which a good bulk ESS does not imply.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.
        prob: probability of the lower quantile, in (0, 1).

    Returns:
        Tail ESS per coordinate, as :func:`ess_bulk`. Equals ``arviz.ess(x,
        method="tail", prob=prob)``.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2), Sec. 4.3.
    """
    _check_samples(samples)
    prob = _check_prob("prob", prob)
    work, out_dtype = _working_dtype(samples)
    both = _indicator_ess(work, [prob, 1.0 - prob])
    ess = _smaller(both[..., 0], both[..., 1])
    return _nan_where_not_finite(ess, work).to(out_dtype)


def rhat(samples: Tensor) -> Tensor:
    """Rank-normalised split R-hat: the larger of the bulk and the tail (folded) R-hat.

    Each chain is split in half; the bulk R-hat is the classic potential scale
    reduction of the rank-normalised split chains, the tail R-hat that of the
    rank-normalised ``|x - median|``, which catches chains with equal locations but
    different scales. Vehtari et al. recommend using draws only when R-hat < 1.01.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.

    Returns:
        R-hat per coordinate, on the device of ``samples`` and in its floating dtype
        (float64 for integer input). NaN for a single chain (as ArviZ), for a constant
        coordinate, and where a coordinate has a non-finite draw. Equals ``arviz.rhat(x,
        method="rank")``.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2), Sec. 4.1-4.2. Gelman and Rubin
        (1992). Inference from iterative simulation using multiple sequences.
        Statistical Science 7(4).

    Example::

        >>> x = torch.randn(4, 1000, 3, generator=torch.Generator().manual_seed(0))
        >>> bool((rhat(x) < 1.01).all())
        True
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    return _nan_where_not_finite(_rank_rhat(work), work).to(out_dtype)


def _mcse_sd_from(
    squared_deviations: Tensor, ess_of_squares: Tensor, mean_of_squares: Tensor
) -> Tensor:
    # Delta method: Var(s^2) ~ Var((x - m)^2) / ESS, then sd = sqrt(s^2) divides by 4 s^2.
    fourth = (squared_deviations**2).flatten(-2).mean(dim=-1)
    var_of_var = (fourth - mean_of_squares**2) / ess_of_squares
    return torch.sqrt(var_of_var / mean_of_squares / 4.0)


def mcse_sd(samples: Tensor) -> Tensor:
    """Monte Carlo standard error of the posterior standard deviation.

    With ``d = (x - mean)^2`` over all draws pooled: ``Var(sd) ~ (mean(d^2) -
    mean(d)^2) / ess(d) / (4 mean(d))`` (delta method), where ``ess(d)`` is the split
    ESS of the mean of ``d`` (:func:`effective_sample_size`). This is the definition of
    ArviZ 0.23's ``mcse(method="sd")``; posterior 1.x / ArviZ 1.x use a different one.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.

    Returns:
        MCSE per coordinate, on the device of ``samples`` and in its floating dtype. NaN
        for a constant coordinate (0 / 0, as ArviZ) and where a draw is non-finite.

    Shape:
        ``(chains, draws, *event) -> (*event,)``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2), Appendix; ArviZ 0.23
        ``arviz.mcse``.
    """
    _check_samples(samples)
    work, out_dtype = _working_dtype(samples)
    squares = (work - work.flatten(-2).mean(dim=-1)[..., None, None]) ** 2
    ess = _ess_last(_split_last(squares))
    value = _mcse_sd_from(squares, ess, squares.flatten(-2).mean(dim=-1))
    return _nan_where_not_finite(value, work).to(out_dtype)


def _hdi_sorted(sorted_pooled: Tensor, hdi_prob: float) -> tuple[Tensor, Tensor]:
    """Narrowest interval holding ``floor(hdi_prob * S) + 1`` sorted draws (ArviZ's
    unimodal HDI; the first narrowest on ties)."""
    size = sorted_pooled.shape[-1]
    span = int(math.floor(hdi_prob * size))
    widths = sorted_pooled[..., span:] - sorted_pooled[..., : size - span]
    start = widths.argmin(dim=-1, keepdim=True)
    lower = sorted_pooled.gather(-1, start).squeeze(-1)
    upper = sorted_pooled.gather(-1, start + span).squeeze(-1)
    return lower, upper


def summary(samples: Tensor, *, hdi_prob: float = 0.94) -> dict[str, Tensor]:
    """Posterior summary and convergence diagnostics of every coordinate at once.

    Computes the same numbers as the separate functions, sharing their sorts, centring
    and splitting.

    Args:
        samples: draws of shape ``(chains, draws, *event)``, at least 4 draws.
        hdi_prob: probability mass of the highest-density interval, in (0, 1).

    Returns:
        A dict of tensors of shape ``event``, keyed as the columns of ``arviz.summary``:
        ``mean``, ``sd`` (``ddof=1``), ``hdi_3%`` and ``hdi_97%`` (named after
        ``hdi_prob``; the narrowest interval of the pooled draws), ``mcse_mean``,
        ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat``. On the device of ``samples``
        and in its floating dtype. Diagnostics are NaN where a coordinate has a
        non-finite draw; mean, sd and HDI are NaN where it has a NaN draw. Equals
        ``arviz.summary(x, round_to="none")`` (whose ``r_hat`` folds the draws around
        the median of all draws, not of the split chains as ``arviz.rhat`` does: the two
        differ slightly for an odd number of draws).

    Shape:
        ``(chains, draws, *event) -> {name: (*event,)}``.

    References:
        Vehtari et al. (2021), Bayesian Analysis 16(2). Hyndman (1996). Computing and
        graphing highest density regions. The American Statistician 50(2).

    Example::

        >>> x = torch.randn(4, 1000, 3, generator=torch.Generator().manual_seed(0))
        >>> sorted(summary(x))[:3]
        ['ess_bulk', 'ess_tail', 'hdi_3%']
    """
    _check_samples(samples)
    hdi_prob = _check_prob("hdi_prob", hdi_prob)
    work, out_dtype = _working_dtype(samples)
    num_chains, num_draws = work.shape[-2:]
    pooled = work.flatten(-2)
    size = pooled.shape[-1]

    mean = pooled.mean(dim=-1)
    squares = (work - mean[..., None, None]) ** 2
    sum_squares = squares.flatten(-2).sum(dim=-1)
    sd = torch.sqrt(sum_squares / (size - 1))

    sort = torch.sort(pooled, dim=-1)
    hdi_lower, hdi_upper = _hdi_sorted(sort.values, hdi_prob)
    split = _split_last(work)
    if num_draws % 2 == 0:  # the split chains hold the same draws: reuse the sort
        z_bulk = _split_last(_z_last(work, sort))
    else:
        z_bulk = _z_last(split)
    quantile_05, quantile_95 = (
        _quantile_sorted(sort.values, prob)[..., None, None] for prob in (0.05, 0.95)
    )
    # One ESS call per statistic rather than one on all five stacked: the same work, but
    # a fifth of the memory, which on CPU is faster (fewer page faults, warm caches).
    ess_mean, bulk, ess_low, ess_high, ess_squares = (
        _ess_last(part.to(torch.float64))
        for part in (
            split,
            z_bulk,
            split <= quantile_05,
            split <= quantile_95,
            _split_last(squares),
        )
    )

    if num_chains >= 2:
        median = _median_sorted(sort.values)[..., None, None]
        r_hat = _larger(_rhat_basic(z_bulk), _rhat_basic(_z_last((split - median).abs())))
    else:  # ArviZ's convention
        r_hat = torch.full_like(mean, float("nan"))

    alpha = 1.0 - hdi_prob
    diagnostics = {
        "mcse_mean": torch.sqrt(sum_squares / (size - 1) / ess_mean),
        "mcse_sd": _mcse_sd_from(squares, ess_squares, sum_squares / size),
        "ess_bulk": bulk,
        "ess_tail": _smaller(ess_low, ess_high),
        "r_hat": r_hat,
    }
    has_nan = torch.isnan(sort.values[..., -1])  # sort puts NaN last
    stats = {
        "mean": mean,
        "sd": sd,
        f"hdi_{100 * alpha / 2:g}%": torch.where(has_nan, float("nan"), hdi_lower),
        f"hdi_{100 * (1 - alpha / 2):g}%": torch.where(has_nan, float("nan"), hdi_upper),
    }
    finite = _finite_coordinates(work)
    stats.update({key: torch.where(finite, v, float("nan")) for key, v in diagnostics.items()})
    return {key: value.to(out_dtype) for key, value in stats.items()}


# ---------------------------------------------------------------------------------------
# Text table.
# ---------------------------------------------------------------------------------------

_RHAT_THRESHOLD = 1.01  # Vehtari et al. (2021): use the draws only if R-hat < 1.01


def _format_cell(key: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if key.startswith("ess"):
        return f"{value:.0f}"
    if key == "r_hat":
        return f"{value:.3f}"
    magnitude = abs(value)
    if magnitude != 0.0 and (magnitude < 1e-2 or magnitude >= 1e6):
        return f"{value:.2e}"
    return f"{value:.3f}"


def format_summary(
    stats: dict[str, Tensor],
    names: Sequence[str] | None = None,
    max_rows: int | None = 40,
) -> str:
    """Format a :func:`summary` dict as a fixed-width text table, one row a coordinate.

    Columns follow the dict's order; ESS values print as integers, R-hat with 3
    decimals, other values with 3 decimals (or in exponent notation when very small or
    large). Footnotes count rows with R-hat above 1.01 and explain NaN diagnostics.
    Copies the values to the host (the one synchronisation of this module).

    Args:
        stats: tensors of one common shape ``event``, e.g. the output of :func:`summary`.
        names: a label per coordinate (``prod(event)`` of them, in row-major order);
            by default ``x`` for a scalar and ``x[i, j, ...]`` otherwise, as ArviZ.
        max_rows: longest table printed in full; a longer one shows its first and last
            rows around a ``...`` line. ``None`` prints every row.

    Returns:
        The table as a string (no trailing newline).

    Shape:
        ``{name: (*event,)} -> str``.

    References:
        ArviZ ``arviz.summary``; Vehtari et al. (2021), Bayesian Analysis 16(2).

    Example::

        >>> x = torch.randn(4, 100, 2, generator=torch.Generator().manual_seed(0))
        >>> print(format_summary(summary(x)).splitlines()[0].split())
        ['mean', 'sd', 'hdi_3%', 'hdi_97%', 'mcse_mean', 'mcse_sd', 'ess_bulk', 'ess_tail', 'r_hat']
    """
    if not isinstance(stats, dict) or not stats:
        raise ValueError("stats must be a non-empty dict of tensors, e.g. summary(samples)")
    shapes = {key: tuple(torch.as_tensor(value).shape) for key, value in stats.items()}
    event_shape = next(iter(shapes.values()))
    if any(shape != event_shape for shape in shapes.values()):
        raise ValueError(f"stats must hold tensors of one common shape, got shapes {shapes}")
    if max_rows is not None and max_rows < 2:
        raise ValueError(f"max_rows must be None or at least 2, got {max_rows}")
    num_rows = math.prod(event_shape)
    if names is None:
        if event_shape == ():
            names = ["x"]
        else:
            grid = itertools.product(*(range(size) for size in event_shape))
            names = [f"x[{', '.join(map(str, index))}]" for index in grid]
    names = [str(name) for name in names]
    if len(names) != num_rows:
        raise ValueError(
            f"names must hold one label per coordinate ({num_rows} for event shape "
            f"{event_shape}), got {len(names)}"
        )
    columns = {
        key: torch.as_tensor(value).detach().reshape(-1).to("cpu", torch.float64).tolist()
        for key, value in stats.items()
    }
    rows = list(range(num_rows))
    if max_rows is not None and num_rows > max_rows:
        head = (max_rows + 1) // 2
        rows = rows[:head] + [-1] + rows[num_rows - (max_rows - head) :]

    header = [""] + list(columns)
    body = [
        ["..."] * len(header)
        if row < 0
        else [names[row]] + [_format_cell(key, values[row]) for key, values in columns.items()]
        for row in rows
    ]
    widths = [max(len(line[col]) for line in [header, *body]) for col in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if col == 0 else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(line, widths))
        ).rstrip()
        for line in [header, *body]
    ]
    if len(rows) < num_rows:
        lines.append(f"({num_rows} rows, {len(rows) - 1} shown)")
    r_hat = columns.get("r_hat")
    if r_hat is not None:
        num_high = sum(value > _RHAT_THRESHOLD for value in r_hat)
        if num_high:
            lines.append(f"{num_high} of {num_rows} rows have r_hat > {_RHAT_THRESHOLD}")
    diagnostic_keys = [key for key in columns if key.startswith(("ess", "mcse", "r_hat"))]
    if any(math.isnan(columns[key][row]) for key in diagnostic_keys for row in range(num_rows)):
        lines.append(
            "nan diagnostics: a non-finite draw, a constant coordinate (r_hat, mcse_sd) "
            "or a single chain (r_hat)"
        )
    return "\n".join(lines)
