"""Importance sampling: log Z within its standard error, ESS, weights, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from bayestorch.mc import importance_ess, importance_sample, log_normalizer_estimate
from bayestorch.testing import assert_z

pytestmark = pytest.mark.statistical

# Unnormalised N(1, 0.5^2) times e^3: log Z = 3 + log(0.5 sqrt(2 pi)).
LOG_Z = 3.0 + math.log(0.5 * math.sqrt(2 * math.pi))


def log_p(x):
    return 3.0 - 0.5 * ((x - 1.0) / 0.5) ** 2


def test_log_normalizer_within_three_standard_errors(device):
    # 20 independent runs; every one within 3 standard errors (Bonferroni over the 20 at
    # the failure rate of a single 3-sigma test, 0.27 %).
    g = torch.Generator(device=device).manual_seed(0)
    q = Normal(torch.tensor(0.0, device=device), torch.tensor(2.0, device=device))
    runs = [importance_sample(log_p, q, 4000, g) for _ in range(20)]
    estimates = torch.stack([r.log_normalizer for r in runs])
    errors = torch.stack([r.log_normalizer_std_error for r in runs])
    assert estimates.device.type == device.type
    assert_z(estimates, LOG_Z, errors, failure_rate=2.7e-3)
    # The self-normalised mean of the target, 1, within 3 delta-method errors.
    mean = torch.stack([r.expectation() for r in runs])
    se = torch.stack(
        [(r.normalized_weights**2 * (r.samples - 1.0) ** 2).sum().sqrt() for r in runs]
    )
    assert_z(mean, 1.0, se, failure_rate=2.7e-3)


def test_weights_without_proposal_density_fail():
    # The broken variant: log-weights log p instead of log p - log q.
    g = torch.Generator().manual_seed(1)
    q = Normal(0.0, 2.0)
    broken = (lambda n, gen: 2.0 * torch.randn(n, generator=gen), lambda x: 0 * x)
    runs = [importance_sample(log_p, broken, 4000, g) for _ in range(20)]
    with pytest.raises(AssertionError, match="z-test failed"):
        assert_z(
            torch.stack([r.log_normalizer for r in runs]),
            LOG_Z,
            torch.stack([r.log_normalizer_std_error for r in runs]),
            failure_rate=2.7e-3,
        )
    assert q.scale == 2.0


def test_exact_proposal_has_full_ess_and_zero_error():
    g = torch.Generator().manual_seed(2)
    target = MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    res = importance_sample(lambda x: target.log_prob(x) + 7.0, target, 1000, g)
    assert res.samples.shape == (1000, 2) and res.log_weights.shape == (1000,)
    torch.testing.assert_close(res.ess, torch.tensor(1000.0))
    torch.testing.assert_close(res.log_normalizer, torch.tensor(7.0))
    assert float(res.log_normalizer_std_error) < 1e-3
    torch.testing.assert_close(res.expectation(), res.samples.mean(0))


def test_log_space_helpers():
    lw = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [-1000.0, -1000.0, -1000.0, -math.inf]], dtype=torch.float64
    )
    torch.testing.assert_close(importance_ess(lw), lw.new_tensor([4.0, 3.0]))
    log_z, se = log_normalizer_estimate(lw)
    torch.testing.assert_close(log_z, lw.new_tensor([0.0, -1000.0 + math.log(0.75)]))
    # w = (1, 1, 1, 0) / ...: sd / mean = sqrt(4/3 * (4/3 - 1)) = 2/3; se = (2/3)/sqrt(4)
    torch.testing.assert_close(se, lw.new_tensor([0.0, 1.0 / 3.0]))


def test_bad_input():
    q = Normal(0.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        importance_sample(lambda x: x * math.nan, q, 10)
    with pytest.raises(ValueError, match="all 10 importance weights are zero"):
        importance_sample(lambda x: x * 0 - math.inf, q, 10)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        importance_sample(lambda x: x.sum(), q, 10)
    with pytest.raises(ValueError, match="num_samples"):
        importance_sample(log_p, q, 1)
