"""Convergence diagnostics for many chains at once: effective sample size and MCSE.

Implements the multi-chain effective sample size of Stan (Vehtari et al. 2021,
"ess_basic", i.e. *not* rank-normalised): FFT autocovariances per chain, combined
with the within- and between-chain variances, then Geyer's initial positive and
initial monotone sequence truncation. Chains are split in half first, as in Stan
and ArviZ, so that a trend within a chain shows up as between-chain variance.

Everything is batched over chains and event dimensions (no Python loop over either)
and runs on the device of the input. The result equals ``arviz.ess(x,
method="mean")`` and ``arviz.mcse(x, method="mean")`` coordinate by coordinate.

Rank-normalised bulk/tail ESS and split R-hat build on the private blocks here:
``_split_chains`` and ``_ess_from_samples`` (which takes already split chains), e.g.
``bulk = _ess_from_samples(z_scale(_split_chains(x)))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["effective_sample_size", "mcse_mean"]

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
    if samples.shape[0] < 1 or samples.shape[1] < 4:
        raise ValueError(
            "samples need at least 1 chain and 4 draws (chains, draws, *event), "
            f"got shape {tuple(samples.shape)}"
        )


def _working_dtype(samples: Tensor) -> tuple[Tensor, torch.dtype]:
    # Autocorrelation sums near the truncation point are sensitive to rounding, so the
    # computation runs in float64; the result is returned in the input's float dtype.
    out_dtype = samples.dtype if samples.is_floating_point() else torch.float64
    return samples.to(torch.float64), out_dtype


def _split_chains(samples: Tensor) -> Tensor:
    """Split each chain into its first and last halves (the middle draw of an odd chain
    is dropped), giving ``(2 * chains, draws // 2, *event)``."""
    half = samples.shape[1] // 2
    return torch.cat([samples[:, :half], samples[:, samples.shape[1] - half :]], dim=0)


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


def _autocovariance(samples: Tensor) -> Tensor:
    """Biased (divide-by-n) autocovariance of every chain at every lag, via FFT.

    Shape:
        ``(chains, draws, *event) -> (chains, draws, *event)``; lag along dim 1.
    """
    num_draws = samples.shape[1]
    # FFT along a contiguous last axis: several times faster than along a strided one.
    centred = (samples - samples.mean(dim=1, keepdim=True)).movedim(1, -1).contiguous()
    # Zero-pad to >= 2n - 1 so the circular correlation equals the linear one.
    fft_len = _next_fast_len(2 * num_draws - 1)
    spectrum = torch.fft.rfft(centred, n=fft_len, dim=-1)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=fft_len, dim=-1)
    return acov[..., :num_draws].movedim(-1, 1) / num_draws


def _ess_from_samples(samples: Tensor) -> Tensor:
    """Multi-chain ESS of chains used as given (no splitting, no rank normalisation).

    Follows Stan's ``compute_effective_sample_size`` / ArviZ's ``_ess`` exactly,
    vectorised: the sequential Geyer loops become a first-non-positive-pair search and
    a cumulative minimum over the pair sums.

    Shape:
        ``(chains, draws, *event) -> (*event,)``, float64 in, float64 out.
    """
    num_chains, num_draws = samples.shape[:2]
    total = num_chains * num_draws
    acov = _autocovariance(samples)
    within = acov[:, 0].mean(dim=0) * num_draws / (num_draws - 1.0)  # mean of chain variances
    var_plus = within * (num_draws - 1.0) / num_draws
    if num_chains > 1:
        var_plus = var_plus + samples.mean(dim=1).var(dim=0, correction=1)

    # Combined autocorrelation at every lag (Vehtari et al. 2021, Sec. 3); rho_0 = 1.
    rho = 1.0 - (within - acov.mean(dim=0)) / var_plus
    rho[0] = 1.0

    # Pair sums P_k = rho_{2k} + rho_{2k+1} for the pairs Stan's loop can reach:
    # k = 0..k_max with 2k + 1 <= draws - 2.
    k_max = max((num_draws - 3) // 2, 0)
    num_pairs = k_max + 1
    event_shape = rho.shape[1:]
    even = rho[0 : 2 * num_pairs : 2]
    pairs = rho[: 2 * num_pairs].reshape(num_pairs, 2, *event_shape).sum(dim=1)

    # Initial positive sequence: keep pairs before the first non-positive one (K). If all
    # reachable pairs are positive, K = k_max.
    non_positive = pairs <= 0
    non_positive[-1] = True
    keep = torch.cumsum(non_positive.to(torch.int64), dim=0) == 0  # k < K
    first_bad = keep.sum(dim=0, keepdim=True)  # K
    # Initial monotone sequence: pair sums made non-increasing.
    monotone = torch.cummin(pairs, dim=0).values
    # Stan adds rho_{2K} on its own when it is positive (or when pair K was accepted).
    last_even = even.gather(0, first_bad).squeeze(0)
    last_pair = pairs.gather(0, first_bad).squeeze(0)
    last_term = torch.where((last_pair >= 0) | (last_even > 0), last_even, 0.0)

    tau = -1.0 + 2.0 * torch.where(keep, monotone, 0.0).sum(dim=0) + last_term
    # Stan's cap: ESS <= N log10(N), to guard against antithetic chains.
    tau = tau.clamp(min=1.0 / math.log10(total))
    ess = total / tau

    flat = samples.flatten(0, 1)
    constant = (flat.amax(dim=0) - flat.amin(dim=0)) < _CONSTANT_RESOLUTION
    ess = torch.where(constant, float(total), ess)
    not_finite = ~torch.isfinite(flat).all(dim=0)
    return torch.where(not_finite, float("nan"), ess)


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
    if split:
        work = _split_chains(work)
    return _ess_from_samples(work).to(out_dtype)


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
    ess = _ess_from_samples(_split_chains(work) if split else work)
    sd = work.flatten(0, 1).std(dim=0, correction=1)
    return (sd / ess.sqrt()).to(out_dtype)
