"""Tests of bayestorch.testing.mcse.assert_mcmc_mean: passes on correct autocorrelated
chains, fails on biased ones, and its z-scores are calibrated (where a naive i.i.d.
standard error is not)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayestorch.mcmc import effective_sample_size, mcse_mean
from bayestorch.testing import assert_ks, assert_mcmc_mean

stats = pytest.importorskip("scipy.stats")


def ar1(phi, num_chains, num_draws, event_shape=(), *, seed, device="cpu"):
    """Stationary AR(1) chains with mean 0 and variance 1: x_t = phi x_{t-1} + sqrt(1-phi^2) e_t."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_draws, num_chains, *event_shape, generator=g, dtype=torch.float64)
    signal = pytest.importorskip("scipy.signal")
    # The recursion as a linear filter over time, started from the stationary x_0 = e_0.
    e = noise.numpy()
    x = np.empty_like(e)
    x[0] = e[0]
    x[1:], _ = signal.lfilter([math.sqrt(1.0 - phi**2)], [1.0, -phi], e[1:], axis=0, zi=phi * e[:1])
    return torch.from_numpy(x).movedim(0, 1).to(device)


@pytest.mark.statistical
def test_passes_on_ar1_chains_with_the_right_mean(device):
    truth = torch.tensor([-1.0, 0.0, 2.5], dtype=torch.float64)
    x = ar1(0.9, 4, 5000, (3,), seed=0, device=device) + truth.to(device)
    assert_mcmc_mean(x, truth)
    assert_mcmc_mean(x.cpu().numpy(), truth.numpy())  # numpy input


@pytest.mark.statistical
def test_fails_on_chains_biased_by_8_mcse():
    # One coordinate: threshold 3.29, so a bias of 8 MCSE fails unless the noise exceeds
    # 4.7 MCSE (probability 1e-6).
    x = ar1(0.9, 4, 5000, seed=1)
    biased = x + 8 * mcse_mean(x)
    with pytest.raises(AssertionError, match="MCMC mean differs"):
        assert_mcmc_mean(biased, 0.0)


def test_threshold_at_5_mcse_and_message():
    # Truth exactly 3 and 5 MCSE from the estimate; with 2 coordinates the threshold is
    # Phi^-1(1 - 1e-3 / 4) = 3.48: |z| = 3 passes, |z| = 5 fails.
    x = ar1(0.9, 4, 1000, (2,), seed=2)
    mean, mcse, ess = x.mean(dim=(0, 1)), mcse_mean(x), effective_sample_size(x)
    assert_mcmc_mean(x, mean - torch.tensor([3.0, -3.0], dtype=torch.float64) * mcse)
    truth = mean.clone()
    truth[1] -= 5 * mcse[1]
    message = (
        rf"coordinate \[1\] of event shape \(2,\): estimate={mean[1]:.6g}, "
        rf"truth={truth[1]:.6g}, mcse={mcse[1]:.4g}, ess={ess[1]:.1f}, z=5, "
        r"\|z\| > 3.48 = threshold for failure_rate=0.001 over 2 coordinate\(s\)"
    )
    with pytest.raises(AssertionError, match=message):
        assert_mcmc_mean(x, truth)


@pytest.mark.statistical
@pytest.mark.parametrize("phi", [0.0, 0.9])
def test_mcse_z_scores_are_standard_normal(phi):
    # 200 independent replicates (event dim) of 4 chains x 1000 draws: z = mean / mcse is
    # approximately N(0, 1) for i.i.d. and for strongly autocorrelated chains alike.
    x = ar1(phi, 4, 1000, (200,), seed=3)
    z = x.mean(dim=(0, 1)) / mcse_mean(x)
    assert_ks(z, stats.norm())


@pytest.mark.statistical
def test_naive_standard_error_is_rejected_by_the_calibration_check():
    # The same check is decisive: with sd / sqrt(N) instead of the MCSE, phi = 0.9 chains
    # give z-scores about sqrt(19) = 4.4 times too wide.
    x = ar1(0.9, 4, 1000, (200,), seed=3)
    naive = x.flatten(0, 1).std(dim=0) / math.sqrt(4 * 1000)
    with pytest.raises(AssertionError):
        assert_ks(x.mean(dim=(0, 1)) / naive, stats.norm())


def test_non_finite_or_stuck_chains_fail():
    x = ar1(0.5, 2, 100, (3,), seed=4)
    x[1, 50, 2] = float("nan")
    with pytest.raises(AssertionError, match=r"coordinate \[2\].*non-finite or constant"):
        assert_mcmc_mean(x, 0.0)
    stuck = torch.zeros(2, 100, dtype=torch.float64)
    with pytest.raises(AssertionError, match="non-finite or constant"):
        assert_mcmc_mean(stuck, 0.0)


def test_truth_must_broadcast_to_event_shape():
    x = ar1(0.5, 2, 100, (3,), seed=5)
    with pytest.raises(ValueError, match="event shape"):
        assert_mcmc_mean(x, np.zeros((2, 3)))
    with pytest.raises(ValueError):
        assert_mcmc_mean(x, np.zeros(4))
