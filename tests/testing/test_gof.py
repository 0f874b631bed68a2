"""Tests of bayestorch.testing.gof: power against subtly wrong samplers, calibration of the
p-values under the null, input validation, and the assertion messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayestorch.testing import (
    assert_counts,
    assert_ks,
    assert_ks_2samp,
    assert_z,
    categorical_counts,
    chisquare_pvalue,
    ks_2samp_pvalue,
    ks_pvalue,
    z_threshold,
)

stats = pytest.importorskip("scipy.stats")

PROBS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def _uniform_cdf(u):
    return np.clip(u, 0.0, 1.0)


# ---------------------------------------------------------------- Kolmogorov-Smirnov


@pytest.mark.statistical
def test_assert_ks_passes_on_correct_normal():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    assert_ks(x, stats.norm())
    assert_ks(x.numpy(), lambda v: stats.norm.cdf(v))  # callable and numpy input


@pytest.mark.statistical
def test_assert_ks_rejects_normal_with_sd_1_1():
    x = 1.1 * torch.randn(20000, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match=r"Kolmogorov-Smirnov.*p-value=.*failure_rate=0.001"):
        assert_ks(x, stats.norm())


@pytest.mark.statistical
def test_ks_pvalue_is_uniform_under_the_null():
    # 200 replicates of 20 draws: the exact KS p-values are Uniform(0, 1) under the null.
    u = torch.rand(200, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pvalues = np.array([ks_pvalue(row, _uniform_cdf) for row in u])
    assert_ks(pvalues, _uniform_cdf)


@pytest.mark.statistical
def test_assert_ks_2samp_passes_on_equal_and_rejects_sd_1_1():
    g = torch.Generator().manual_seed(3)
    a, b, c = torch.randn(3, 50000, generator=g)
    assert_ks_2samp(a, b)
    assert ks_2samp_pvalue(a, b) > 1e-3
    with pytest.raises(AssertionError, match=r"two-sample Kolmogorov-Smirnov.*p-value="):
        assert_ks_2samp(a, 1.1 * c)


@pytest.mark.statistical
def test_ks_2samp_pvalue_is_uniform_under_the_null():
    # Sizes 101 and 97 (coprime): D lives on a fine lattice, so the p-value is close to
    # continuous. With equal sizes it takes few values and is conservative (super-uniform).
    x = torch.randn(200, 101 + 97, generator=torch.Generator().manual_seed(4))
    pvalues = np.array([ks_2samp_pvalue(row[:101], row[101:]) for row in x])
    assert_ks(pvalues, _uniform_cdf)


def test_ks_rejects_non_finite_and_empty_samples():
    with pytest.raises(ValueError, match="non-finite"):
        ks_pvalue(torch.tensor([0.0, float("nan")]), stats.norm())
    with pytest.raises(ValueError, match="empty"):
        ks_pvalue(np.array([]), stats.norm())


# ---------------------------------------------------------------- chi-square


def _categorical(probs, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, n, replacement=True, generator=g)


@pytest.mark.statistical
def test_assert_counts_passes_on_correct_categorical():
    counts = categorical_counts(_categorical(PROBS, 20000, 5), 4)
    assert counts.shape == (4,) and counts.sum() == 20000
    assert_counts(counts, PROBS)


@pytest.mark.statistical
def test_assert_counts_rejects_one_probability_off_by_0_02():
    wrong = torch.tensor([0.12, 0.2, 0.3, 0.38], dtype=torch.float64)
    counts = categorical_counts(_categorical(wrong, 20000, 6), 4)
    with pytest.raises(AssertionError, match=r"chi-square.*dof=3.*p-value=.*failure_rate=0.001"):
        assert_counts(counts, PROBS)


@pytest.mark.statistical
def test_chisquare_pvalue_is_uniform_under_the_null():
    samples = _categorical(PROBS, 200 * 500, 7).reshape(200, 500)
    pvalues = np.array([chisquare_pvalue(categorical_counts(s, 4), PROBS) for s in samples])
    assert_ks(pvalues, _uniform_cdf)


@pytest.mark.statistical
def test_chisquare_pvalue_with_pooled_bins_is_uniform_under_the_null():
    # Expected counts 100, 60, 30, 6, 2, 2 at n=200: the last two bins are pooled.
    probs = torch.tensor([0.5, 0.3, 0.15, 0.03, 0.01, 0.01], dtype=torch.float64)
    samples = _categorical(probs, 200 * 200, 8).reshape(200, 200)
    pvalues = np.array([chisquare_pvalue(categorical_counts(s, 6), probs) for s in samples])
    assert_ks(pvalues, _uniform_cdf)


def test_chisquare_pooling_and_degrees_of_freedom():
    # Expected 50, 30, 10, 5, 3, 2: bins 5 and 6 pool into one bin of expected 5, so
    # 5 bins and 4 degrees of freedom.
    probs = np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.02])
    counts = np.array([55, 25, 12, 4, 2, 2])
    observed = np.array([55, 25, 12, 4, 4])
    expected = np.array([50, 30, 10, 5, 5])
    statistic = np.sum((observed - expected) ** 2 / expected)
    assert chisquare_pvalue(counts, probs) == pytest.approx(stats.chi2.sf(statistic, 4))
    # Without pooling every bin counts: 5 degrees of freedom.
    statistic = np.sum((counts - 100 * probs) ** 2 / (100 * probs))
    assert chisquare_pvalue(counts, probs, min_expected=0.0) == pytest.approx(
        stats.chi2.sf(statistic, 5)
    )


def test_chisquare_pooled_bin_still_small_merges_into_smallest_bin():
    # Expected 60, 36, 4: the only small bin (4 < 5) joins the smallest other bin (36).
    counts = np.array([58, 38, 4])
    probs = np.array([0.6, 0.36, 0.04])
    statistic = (58 - 60) ** 2 / 60 + (42 - 40) ** 2 / 40
    assert chisquare_pvalue(counts, probs) == pytest.approx(stats.chi2.sf(statistic, 1))


def test_chisquare_draw_of_impossible_category_gives_pvalue_zero():
    assert chisquare_pvalue([50, 49, 1], [0.5, 0.5, 0.0]) == 0.0
    with pytest.raises(AssertionError, match="chi-square"):
        assert_counts([50, 49, 1], [0.5, 0.5, 0.0])


def test_chisquare_batched_with_bonferroni():
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    good = np.array([[500, 500], [250, 750]])
    pvalues = chisquare_pvalue(good, probs)
    assert pvalues.shape == (2,) and np.all(pvalues == 1.0)
    assert_counts(good, probs)
    bad = np.array([[500, 500], [330, 670]])
    with pytest.raises(AssertionError, match=r"batch index \[1\].*Bonferroni"):
        assert_counts(bad, probs)


@pytest.mark.parametrize(
    ("counts", "probs", "message"),
    [
        ([10, 10], [0.5, 0.4], "sum to 1"),
        ([10, 10, 10], [0.5, 0.5], "same shape"),
        ([10, -1], [0.5, 0.5], "non-negative"),
        ([10.5, 10], [0.5, 0.5], "whole numbers"),
        ([0, 0], [0.5, 0.5], "all zero"),
        ([3, 3], [0.5, 0.5], "fewer than 2 bins"),
        ([10, 10], [1.5, -0.5], "non-negative"),
    ],
)
def test_chisquare_rejects_bad_input(counts, probs, message):
    with pytest.raises(ValueError, match=message):
        chisquare_pvalue(counts, probs)


def test_chisquare_accepts_float32_probs_summing_to_one_within_tolerance():
    probs = torch.softmax(torch.randn(50, generator=torch.Generator().manual_seed(9)), 0)
    counts = torch.round(probs.double() * 10000)
    assert 0.0 <= chisquare_pvalue(counts, probs) <= 1.0


def test_categorical_counts():
    samples = torch.tensor([[0, 2], [2, 2]])
    np.testing.assert_array_equal(categorical_counts(samples, 4), [1, 0, 3, 0])
    np.testing.assert_array_equal(categorical_counts(np.array([1, 1]), 2), [0, 2])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        categorical_counts(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="integer"):
        categorical_counts(torch.tensor([0.0, 1.0]), 3)


# ---------------------------------------------------------------- z-test


def test_z_threshold_values():
    assert z_threshold(1e-3) == pytest.approx(stats.norm.ppf(1 - 5e-4))
    assert z_threshold(1e-3, 10) == pytest.approx(stats.norm.ppf(1 - 5e-5))


def test_assert_z_two_sided_threshold():
    # Phi^-1(1 - 5e-4) = 3.29: z = +-3.2 passes, z = +-3.4 fails.
    assert_z(3.2, 0.0, 1.0)
    assert_z(torch.tensor(-6.4), 0.0, 2.0)
    with pytest.raises(AssertionError, match=r"z=3\.4.*threshold for failure_rate=0\.001"):
        assert_z(3.4, 0.0, 1.0)
    with pytest.raises(AssertionError, match=r"z=-3\.4"):
        assert_z(-3.4, 0.0, 1.0)
    assert_z(3.4, 0.0, 1.0, failure_rate=1e-4)  # threshold 3.89


def test_assert_z_bonferroni_over_elements():
    # With 10 elements the threshold is Phi^-1(1 - 5e-5) = 3.89: z = 3.5 passes.
    estimate = torch.zeros(2, 5, dtype=torch.float64)
    estimate[1, 3] = 3.5
    assert_z(estimate, torch.zeros(5), torch.ones(()))
    estimate[1, 3] = 4.0
    with pytest.raises(AssertionError, match=r"\[1, 3\] of shape \(2, 5\).*estimate=4"):
        assert_z(estimate, 0.0, 1.0)


def test_assert_z_nan_estimate_fails_and_bad_std_error_raises():
    with pytest.raises(AssertionError, match="z=nan"):
        assert_z(torch.tensor([0.0, float("nan")]), 0.0, 1.0)
    with pytest.raises(ValueError, match="std_error"):
        assert_z(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="failure_rate"):
        assert_z(0.0, 0.0, 1.0, failure_rate=0.0)


@pytest.mark.statistical
def test_assert_z_on_sample_means():
    # 50 sample means of 1000 normals each, against the truth with their exact standard
    # error. With 50 coordinates the threshold is 4.26, so a bias of 8 standard errors in
    # one coordinate is rejected unless its noise exceeds 3.7 (probability 1e-4).
    x = torch.randn(1000, 50, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    std_error = 1.0 / math.sqrt(1000)
    assert_z(x.mean(0), 0.0, std_error)
    truth = torch.zeros(50, dtype=torch.float64)
    truth[17] = 8 * std_error
    with pytest.raises(AssertionError, match=r"\[17\]"):
        assert_z(x.mean(0), truth, std_error)
