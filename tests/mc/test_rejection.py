"""Rejection sampling: exactness (KS), acceptance rate Z / M, envelope violations, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import MultivariateNormal, Normal

from bayestorch.mc import EnvelopeViolationWarning, rejection_sample
from bayestorch.testing import assert_ks, assert_z

pytestmark = pytest.mark.statistical

LOG_Z = 0.5 * math.log(2 * math.pi)  # of exp(-x^2 / 2)
LOG_M = math.log(2.0) + LOG_Z  # sup exp(-x^2/2) / Normal(0, 2).pdf, at x = 0


def log_p(x):
    return -0.5 * x**2


def test_exact_draws_and_acceptance_rate(device):
    g = torch.Generator(device=device).manual_seed(0)
    q = Normal(torch.tensor(0.0, device=device), torch.tensor(2.0, device=device))
    samples, rate, num_proposals = rejection_sample(log_p, q, LOG_M, 20_000, g)
    assert samples.shape == (20_000,) and samples.device.type == device.type
    assert_ks(samples, stats.norm().cdf)
    # acceptance rate = Z / M = 1/2, a binomial proportion over num_proposals
    se = math.sqrt(0.25 / num_proposals)
    assert_z(rate, math.exp(LOG_Z - LOG_M), se)


def test_too_small_envelope_warns_and_is_rejected_by_ks():
    g = torch.Generator().manual_seed(1)
    with pytest.warns(EnvelopeViolationWarning, match="increase log_M"):
        samples, _, _ = rejection_sample(log_p, Normal(0.0, 2.0), LOG_M - 1.0, 20_000, g)
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(samples, stats.norm().cdf)


def test_broken_sampler_without_proposal_density_fails():
    # Accepting with p / M instead of p / (M q) is the classic bug: it must fail the test.
    g = torch.Generator().manual_seed(2)
    q = Normal(0.0, 2.0)
    broken = (lambda n, gen: q.loc + q.scale * torch.randn(n, generator=gen), lambda x: 0 * x)
    samples, _, _ = rejection_sample(log_p, broken, 0.0, 20_000, g)
    with pytest.raises(AssertionError):
        assert_ks(samples, stats.norm().cdf)


def test_multivariate_event_and_pair_proposal():
    g = torch.Generator().manual_seed(3)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = MultivariateNormal(torch.zeros(2), cov)
    q = MultivariateNormal(torch.zeros(2), 4.0 * torch.eye(2))
    # sup p/q over x is at x = 0 (q is broader in every direction)
    log_m = float(target.log_prob(torch.zeros(2)) - q.log_prob(torch.zeros(2)))
    samples, _, _ = rejection_sample(target.log_prob, q, log_m, 5000, g)
    assert samples.shape == (5000, 2)
    assert_ks(samples[:, 0], stats.norm().cdf, failure_rate=5e-4)
    assert_ks((samples[:, 0] - samples[:, 1]) / math.sqrt(0.4), stats.norm().cdf, 5e-4)
    pair = (lambda n, gen: 3.0 * torch.randn(n, generator=gen), Normal(0.0, 3.0).log_prob)
    out = rejection_sample(log_p, pair, math.log(3.0) + LOG_Z, 100, g)
    assert out.samples.shape == (100,)


def test_same_generator_same_draws():
    a = rejection_sample(log_p, Normal(0.0, 2.0), LOG_M, 500, torch.Generator().manual_seed(5))
    b = rejection_sample(log_p, Normal(0.0, 2.0), LOG_M, 500, torch.Generator().manual_seed(5))
    assert torch.equal(a.samples, b.samples)


def test_bad_input():
    q = Normal(0.0, 2.0)
    with pytest.raises(ValueError, match="log_M must be a finite scalar"):
        rejection_sample(log_p, q, math.inf, 10)
    with pytest.raises(ValueError, match="num_samples"):
        rejection_sample(log_p, q, LOG_M, 0)
    with pytest.raises(ValueError, match=r"log_p must map .* shape \(256,\)"):
        rejection_sample(lambda x: x[:, None], q, LOG_M, 10)
    with pytest.raises(ValueError, match="NaN"):
        rejection_sample(lambda x: x * math.nan, q, LOG_M, 10)
    with pytest.raises(TypeError, match="proposal must be"):
        rejection_sample(log_p, "normal", LOG_M, 10)
    with pytest.raises(RuntimeError, match="max_proposals"):
        rejection_sample(lambda x: x * 0 - math.inf, q, LOG_M, 10, max_proposals=1000)
