"""Goodness-of-fit helpers with a declared failure rate.

Every ``*_pvalue`` function returns a p-value that is (close to) Uniform(0, 1) when the
sampler is correct; every ``assert_*`` function fails when that p-value (or a z-score's
two-sided tail probability) falls below the declared ``failure_rate``, so a correct
sampler fails with probability ``failure_rate`` and a wrong one with a probability
that grows with the sample size.

Inputs may be torch tensors on any device or numpy arrays; they are copied to CPU
float64 numpy. scipy is imported lazily (it is in the ``test`` extra only).

References:
    Kolmogorov (1933), Smirnov (1948): the one- and two-sample KS tests.
    Pearson (1900): the chi-square goodness-of-fit test.
    Cochran (1954). Some methods for strengthening the common chi-square tests.
    Biometrics 10(4): the "expected count of at least 5" rule behind ``min_expected``.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

__all__ = [
    "assert_counts",
    "assert_ks",
    "assert_ks_2samp",
    "assert_z",
    "categorical_counts",
    "chisquare_pvalue",
    "ks_2samp_pvalue",
    "ks_pvalue",
    "z_threshold",
]

DEFAULT_FAILURE_RATE = 1e-3
"""The declared probability that a correct implementation fails one statistical assertion."""

# Tolerance on sum(probs) == 1 in chisquare_pvalue (loose enough for float32 softmax).
_PROBS_SUM_TOL = 1e-6


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError as err:  # pragma: no cover - exercised only without scipy
        raise ImportError(
            "bayestorch.testing needs scipy for its goodness-of-fit tests: "
            "pip install bayestorch[test]"
        ) from err
    return stats


def _to_numpy(x: Any) -> np.ndarray:
    """CPU float64 numpy copy of a tensor (any device), array or number."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _check_failure_rate(failure_rate: float) -> None:
    if not 0.0 < failure_rate < 1.0:
        raise ValueError(f"failure_rate must be in (0, 1), got {failure_rate}")


def _draws(samples: Any, name: str) -> np.ndarray:
    x = _to_numpy(samples).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains {np.sum(~np.isfinite(x))} non-finite values")
    return x


def _ks_test(samples: Any, cdf: Callable[[np.ndarray], np.ndarray] | Any) -> tuple[float, float]:
    stats = _scipy_stats()
    x = _draws(samples, "samples")
    cdf_fn = cdf.cdf if hasattr(cdf, "cdf") else cdf
    if not callable(cdf_fn):
        raise TypeError("cdf must be a callable on numpy arrays or a scipy frozen distribution")
    result = stats.kstest(x, cdf_fn)
    return float(result.statistic), float(result.pvalue)


def ks_pvalue(samples: Any, cdf: Callable[[np.ndarray], np.ndarray] | Any) -> float:
    """One-sample Kolmogorov–Smirnov p-value of draws against a continuous CDF.

    Exact for small samples, asymptotic for large ones (scipy's ``method="auto"``).
    For discrete distributions the test is conservative; use :func:`chisquare_pvalue`.

    Args:
        samples: draws, tensor (any device) or array of any shape; all elements are
            treated as i.i.d. draws from ``cdf``.
        cdf: a callable mapping a float64 numpy array to CDF values, or a scipy frozen
            distribution (``scipy.stats.norm(0, 1)``).

    Returns:
        The p-value, Uniform(0, 1) when the draws come from ``cdf``.

    Shape:
        ``samples``: any; flattened to ``(n,)``.

    References:
        Kolmogorov (1933); Smirnov (1948); Marsaglia, Tsang, Wang (2003). Evaluating
        Kolmogorov's distribution. Journal of Statistical Software 8(18).
    """
    return _ks_test(samples, cdf)[1]


def assert_ks(
    samples: Any,
    cdf: Callable[[np.ndarray], np.ndarray] | Any,
    failure_rate: float = DEFAULT_FAILURE_RATE,
) -> None:
    """Assert that draws fit a continuous CDF (one-sample KS test).

    A correct sampler fails with probability ``failure_rate``.

    Args:
        samples: draws, as for :func:`ks_pvalue`.
        cdf: as for :func:`ks_pvalue`.
        failure_rate: the declared probability that a correct sampler fails.

    Raises:
        AssertionError: when the p-value is below ``failure_rate``.

    Shape:
        ``samples``: any; flattened to ``(n,)``.

    References:
        Kolmogorov (1933); Smirnov (1948).
    """
    _check_failure_rate(failure_rate)
    statistic, pvalue = _ks_test(samples, cdf)
    if pvalue < failure_rate:
        n = _to_numpy(samples).size
        raise AssertionError(
            f"Kolmogorov-Smirnov test rejected the fit: statistic D={statistic:.4g} "
            f"(n={n}), p-value={pvalue:.3g} < failure_rate={failure_rate:g}"
        )


def _ks_2samp_test(a: Any, b: Any) -> tuple[float, float]:
    stats = _scipy_stats()
    result = stats.ks_2samp(_draws(a, "a"), _draws(b, "b"))
    return float(result.statistic), float(result.pvalue)


def ks_2samp_pvalue(a: Any, b: Any) -> float:
    """Two-sample Kolmogorov–Smirnov p-value: do two samplers draw the same distribution?

    Args:
        a: draws of the first sampler (tensor on any device or array, any shape).
        b: draws of the second sampler.

    Returns:
        The p-value, Uniform(0, 1) when both come from the same continuous distribution.
        With equal (or small, commensurate) sample sizes the statistic takes few values
        and the p-value is conservative: P(p <= a) <= a, so the failure rate still holds.

    Shape:
        ``a``: any, flattened to ``(n,)``; ``b``: any, flattened to ``(m,)``.

    References:
        Smirnov (1948). Table for estimating the goodness of fit of empirical
        distributions. Annals of Mathematical Statistics 19(2).
    """
    return _ks_2samp_test(a, b)[1]


def assert_ks_2samp(a: Any, b: Any, failure_rate: float = DEFAULT_FAILURE_RATE) -> None:
    """Assert that two samplers draw the same continuous distribution (two-sample KS).

    Args:
        a: draws of the first sampler.
        b: draws of the second sampler.
        failure_rate: the declared probability that two agreeing samplers fail.

    Raises:
        AssertionError: when the p-value is below ``failure_rate``.

    Shape:
        ``a``: any, flattened to ``(n,)``; ``b``: any, flattened to ``(m,)``.

    References:
        Smirnov (1948).
    """
    _check_failure_rate(failure_rate)
    statistic, pvalue = _ks_2samp_test(a, b)
    if pvalue < failure_rate:
        raise AssertionError(
            f"two-sample Kolmogorov-Smirnov test rejected equality: statistic "
            f"D={statistic:.4g} (n={_to_numpy(a).size}, m={_to_numpy(b).size}), "
            f"p-value={pvalue:.3g} < failure_rate={failure_rate:g}"
        )


def categorical_counts(samples: Any, num_categories: int) -> np.ndarray:
    """Count how often each category ``0..num_categories-1`` was drawn.

    Args:
        samples: integer category indices (tensor on any device or array, any shape).
        num_categories: the number of categories.

    Returns:
        int64 numpy array of counts.

    Shape:
        ``samples``: any -> ``(num_categories,)``.

    References:
        Pearson (1900); the counts feed :func:`chisquare_pvalue`.
    """
    if (
        isinstance(num_categories, bool)
        or not isinstance(num_categories, int)
        or num_categories < 1
    ):
        raise ValueError(f"num_categories must be a positive int, got {num_categories!r}")
    if isinstance(samples, torch.Tensor):
        if samples.is_floating_point() or samples.is_complex():
            raise ValueError(f"samples must be integer category indices, got {samples.dtype}")
        x = samples.detach().cpu().to(torch.int64).numpy().ravel()
    else:
        x = np.asarray(samples).ravel()
        if x.size and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"samples must be integer category indices, got {x.dtype}")
        x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= num_categories):
        raise ValueError(
            f"samples must lie in [0, {num_categories}), got values in [{x.min()}, {x.max()}]"
        )
    return np.bincount(x, minlength=num_categories)


def _pool(observed: np.ndarray, expected: np.ndarray, min_expected: float):
    """Pool bins with expected count < min_expected into one bin; if that bin is still
    below min_expected, merge it into the smallest remaining bin."""
    small = expected < min_expected
    if not small.any():
        return observed, expected
    obs, exp = observed[~small], expected[~small]
    pooled_obs, pooled_exp = observed[small].sum(), expected[small].sum()
    if pooled_exp >= min_expected or obs.size == 0:
        return np.append(obs, pooled_obs), np.append(exp, pooled_exp)
    smallest = np.argmin(exp)
    obs, exp = obs.copy(), exp.copy()
    obs[smallest] += pooled_obs
    exp[smallest] += pooled_exp
    return obs, exp


def _chisquare_test(counts: Any, probs: Any, min_expected: float) -> tuple[float, float, int]:
    """Pearson statistic, p-value and degrees of freedom for one row of counts."""
    if not 0 <= min_expected < float("inf"):
        raise ValueError(f"min_expected must be finite and >= 0, got {min_expected!r}")
    stats = _scipy_stats()
    n = counts.sum()
    if n == 0:
        raise ValueError("counts are all zero: draw some samples first")
    # A draw in a category of probability zero is impossible: the sampler is wrong.
    if np.any((probs == 0) & (counts > 0)):
        return float("inf"), 0.0, counts.size - 1
    observed, expected = _pool(counts, n * probs, min_expected)
    if observed.size < 2:
        raise ValueError(
            f"after pooling bins with expected count < min_expected={min_expected:g}, "
            f"fewer than 2 bins remain (n={n:g} draws): the test would be vacuous; "
            "draw more samples"
        )
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    dof = observed.size - 1
    return statistic, float(stats.chi2.sf(statistic, dof)), dof


def _check_counts_probs(counts: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    counts_np, probs_np = _to_numpy(counts), _to_numpy(probs)
    if counts_np.shape != probs_np.shape or counts_np.ndim == 0:
        raise ValueError(
            f"counts and probs must have the same shape (*batch, num_categories), got "
            f"counts {counts_np.shape} and probs {probs_np.shape}"
        )
    if not np.all(np.isfinite(counts_np)) or np.any(counts_np < 0):
        raise ValueError("counts must be finite and non-negative")
    if np.any(counts_np != np.round(counts_np)):
        raise ValueError("counts must be whole numbers")
    if not np.all(np.isfinite(probs_np)) or np.any(probs_np < 0):
        raise ValueError("probs must be finite and non-negative")
    sums = probs_np.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > _PROBS_SUM_TOL):
        raise ValueError(
            f"probs must sum to 1 along the last dimension (tolerance {_PROBS_SUM_TOL:g}), "
            f"got sums in [{sums.min():.9g}, {sums.max():.9g}]"
        )
    return counts_np, probs_np / sums[..., None]


def _chisquare_rows(counts: Any, probs: Any, min_expected: float):
    counts_np, probs_np = _check_counts_probs(counts, probs)
    batch_shape = counts_np.shape[:-1]
    rows = [
        _chisquare_test(c, p, min_expected)
        for c, p in zip(
            counts_np.reshape(-1, counts_np.shape[-1]), probs_np.reshape(-1, probs_np.shape[-1])
        )
    ]
    return rows, batch_shape


def chisquare_pvalue(counts: Any, probs: Any, min_expected: float = 5.0) -> float | np.ndarray:
    """Pearson chi-square p-value of a discrete sampler's counts against exact probabilities.

    Bins whose expected count ``n * probs`` is below ``min_expected`` are pooled into
    one bin, so the chi-square approximation holds (Cochran's rule); if the pooled bin
    is itself still below ``min_expected`` it is merged into the smallest remaining bin.
    The statistic then has ``bins - 1`` degrees of freedom, ``bins`` counted after
    pooling. A positive count in a category of probability zero gives p-value 0.

    Args:
        counts: how often each category was drawn (see :func:`categorical_counts`);
            whole, non-negative numbers.
        probs: the exact probabilities; each row sums to 1 (tolerance 1e-6).
        min_expected: the smallest expected count a bin may have before it is pooled.

    Returns:
        The p-value (a float), or an array of p-values of shape ``batch`` for batched
        input; approximately Uniform(0, 1) when the sampler is correct.

    Raises:
        ValueError: when shapes differ, counts are negative or fractional, probs do not
            sum to 1, or fewer than two bins remain after pooling.

    Shape:
        ``counts``, ``probs``: ``(*batch, num_categories)`` -> ``batch``.

    References:
        Pearson (1900). Philosophical Magazine 50(302). Cochran (1954). Biometrics 10(4).
    """
    rows, batch_shape = _chisquare_rows(counts, probs, min_expected)
    pvalues = np.array([pvalue for _, pvalue, _ in rows]).reshape(batch_shape)
    return float(pvalues) if pvalues.ndim == 0 else pvalues


def assert_counts(
    counts: Any,
    probs: Any,
    failure_rate: float = DEFAULT_FAILURE_RATE,
    min_expected: float = 5.0,
) -> None:
    """Assert that a discrete sampler's counts fit exact probabilities (chi-square test).

    For batched input the failure rate is split evenly across the rows (Bonferroni),
    so a correct sampler still fails with probability at most ``failure_rate``.

    Args:
        counts: category counts, as for :func:`chisquare_pvalue`.
        probs: exact probabilities, same shape as ``counts``.
        failure_rate: the declared probability that a correct sampler fails.
        min_expected: see :func:`chisquare_pvalue`.

    Raises:
        AssertionError: when the smallest p-value is below ``failure_rate / rows``.

    Shape:
        ``counts``, ``probs``: ``(*batch, num_categories)``.

    References:
        Pearson (1900); Bonferroni correction for the batch.
    """
    _check_failure_rate(failure_rate)
    rows, batch_shape = _chisquare_rows(counts, probs, min_expected)
    threshold = failure_rate / len(rows)
    worst = min(range(len(rows)), key=lambda i: rows[i][1])
    statistic, pvalue, dof = rows[worst]
    if pvalue < threshold:
        where = (
            f" at batch index {_format_index(np.unravel_index(worst, batch_shape))}"
            if batch_shape
            else ""
        )
        raise AssertionError(
            f"chi-square test rejected the counts{where}: statistic={statistic:.4g} "
            f"(dof={dof}, n={_to_numpy(counts).reshape(len(rows), -1)[worst].sum():g}), "
            f"p-value={pvalue:.3g} < failure_rate={failure_rate:g}"
            + (f" / {len(rows)} rows (Bonferroni)" if len(rows) > 1 else "")
        )


def z_threshold(failure_rate: float, num_tests: int = 1) -> float:
    """Two-sided z threshold ``Phi^-1(1 - failure_rate / (2 num_tests))`` (Bonferroni)."""
    _check_failure_rate(failure_rate)
    if isinstance(num_tests, bool) or not isinstance(num_tests, int) or num_tests < 1:
        raise ValueError(f"num_tests must be a positive int, got {num_tests!r}")
    return NormalDist().inv_cdf(1.0 - failure_rate / (2.0 * num_tests))


def _format_index(index: tuple[int, ...]) -> str:
    return f"[{', '.join(str(int(i)) for i in index)}]" if index else "(scalar)"


def _worst_z(estimate: Any, truth: Any, std_error: Any):
    """Broadcast, z-scores, and the index of the largest |z| (NaN counts as worst)."""
    est, tru, se = np.broadcast_arrays(_to_numpy(estimate), _to_numpy(truth), _to_numpy(std_error))
    if est.size == 0:
        raise ValueError("estimate, truth and std_error broadcast to an empty shape")
    if np.any(~np.isfinite(se)) or np.any(se <= 0):
        raise ValueError("std_error must be finite and positive")
    z = (est - tru) / se
    score = np.where(np.isnan(z), np.inf, np.abs(z))
    worst = np.unravel_index(np.argmax(score), z.shape) if z.ndim else ()
    return est, tru, se, z, worst


def assert_z(
    estimate: Any, truth: Any, std_error: Any, failure_rate: float = DEFAULT_FAILURE_RATE
) -> None:
    """Assert that estimates agree with the truth within their standard errors (z-test).

    Two-sided test of ``z = (estimate - truth) / std_error`` against the threshold
    ``Phi^-1(1 - failure_rate / (2 m))``, elementwise over the ``m`` elements of the
    broadcast shape: the failure rate is split evenly across elements (Bonferroni), so
    a correct estimator with normal errors fails with probability at most
    ``failure_rate``. A NaN estimate always fails.

    Args:
        estimate: the estimates (tensor on any device, array or number).
        truth: the true values, broadcastable with ``estimate``.
        std_error: the standard errors of the estimates, broadcastable, positive.
        failure_rate: the declared probability that a correct estimator fails.

    Raises:
        AssertionError: naming the worst element, its estimate, truth, standard error,
            z and the threshold.

    Shape:
        ``estimate``, ``truth``, ``std_error``: broadcastable to a common shape.

    References:
        Bonferroni correction; Dunn (1961). Multiple comparisons among means. JASA 56.
    """
    _check_failure_rate(failure_rate)
    est, tru, se, z, worst = _worst_z(estimate, truth, std_error)
    threshold = z_threshold(failure_rate, max(z.size, 1))
    if not np.abs(z[worst]) <= threshold:  # also catches NaN
        raise AssertionError(
            f"z-test failed at {_format_index(worst)} of shape {z.shape}: "
            f"estimate={est[worst]:.6g}, truth={tru[worst]:.6g}, std_error={se[worst]:.4g}, "
            f"z={z[worst]:.3g}, |z| > {threshold:.3g} = threshold for failure_rate="
            f"{failure_rate:g} over {z.size} element(s) (Bonferroni)"
        )
