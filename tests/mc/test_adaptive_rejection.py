"""bayestorch/mc/adaptive_rejection.py — adaptive rejection sampling: exactness, hull
refinement, log-concavity checks, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from bayestorch.mc import AdaptiveRejectionSampler, NotLogConcaveError
from bayestorch.testing import assert_ks

pytestmark = pytest.mark.statistical


def test_standard_normal_exact():
    ars = AdaptiveRejectionSampler(lambda x: -0.5 * x**2)
    x = ars.sample(5000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5000,)
    assert_ks(x, stats.norm().cdf)


def test_acceptance_rises_toward_one_as_the_hull_refines():
    # Gilks & Wild's behaviour; a reference implementation on N(0, 1) went 0.875 -> 0.978
    # -> 0.996 -> 0.998 over proposals 1-10 / 11-100 / 101-1000 / later, with ~51
    # evaluations per 5000 draws. Averaged over 20 independent samplers.
    g = torch.Generator().manual_seed(1)
    rates, evaluations = [], []
    for _ in range(20):
        ars = AdaptiveRejectionSampler(lambda x: -0.5 * x**2)
        ars.sample(5000, generator=g)
        rates.append(ars.acceptance_rates((10, 100, 1000)))
        evaluations.append(ars.num_evaluations)
    first, second, third, rest = torch.tensor(rates).mean(0).tolist()
    assert first < second < third < rest
    assert 0.75 < first and rest > 0.99
    assert sum(evaluations) / len(evaluations) < 80


@pytest.mark.parametrize(
    ("log_p", "domain", "dist"),
    [
        (lambda x: 2.0 * x.log() - x, (0.0, math.inf), stats.gamma(3.0)),  # Gamma(3, 1)
        (lambda x: x.log() + 2.0 * torch.log1p(-x), (0.0, 1.0), stats.beta(2.0, 3.0)),
        (lambda x: -0.5 * (x - 3.0) ** 2, (2.0, 5.0), stats.truncnorm(-1.0, 2.0, loc=3.0)),
        (lambda x: -x, (1.0, math.inf), stats.expon(loc=1.0)),  # log-linear: parallel tangents
    ],
    ids=["gamma", "beta", "truncated_normal", "exponential"],
)
def test_exact_on_bounded_and_half_bounded_domains(log_p, domain, dist):
    ars = AdaptiveRejectionSampler(log_p, domain)
    x = ars.sample(4000, generator=torch.Generator().manual_seed(1))
    assert bool(((x > domain[0]) & (x < domain[1])).all())
    assert_ks(x, dist.cdf, failure_rate=2.5e-4)


def test_envelope_draws_without_rejection_fail():
    # The broken variant: keeping every draw of the hull (no rejection step).
    ars = AdaptiveRejectionSampler(lambda x: -0.5 * x**2)
    x, _ = ars._sample_hull(5000, torch.Generator().manual_seed(2))
    with pytest.raises(AssertionError):
        assert_ks(x, stats.norm().cdf)


def test_hull_keeps_refining_across_calls_and_follows_device(device):
    ars = AdaptiveRejectionSampler(
        lambda x: -0.5 * x**2, initial_points=torch.tensor([-1.0, 1.0], device=device)
    )
    g = torch.Generator(device=device).manual_seed(3)
    a = ars.sample(100, generator=g)
    evaluations = ars.num_evaluations
    b = ars.sample(100, generator=g)
    assert a.device.type == device.type and b.shape == (100,)
    assert ars.num_evaluations - evaluations <= evaluations
    assert ars.sample(0).shape == (0,)


def test_same_generator_same_draws():
    draws = [
        AdaptiveRejectionSampler(lambda x: -0.5 * x**2).sample(
            300, generator=torch.Generator().manual_seed(4)
        )
        for _ in range(2)
    ]
    assert torch.equal(*draws)


def test_bimodal_density_is_caught_at_construction():
    def bimodal(x):
        return torch.logaddexp(-0.5 * (x - 3.0) ** 2, -0.5 * (x + 3.0) ** 2)

    with pytest.raises(NotLogConcaveError, match="not log-concave"):
        AdaptiveRejectionSampler(bimodal, initial_points=[-4.0, 0.0, 4.0])


def test_heavy_tails_are_caught_while_sampling():
    # Cauchy: log-concave on |x| < 1 only; the first construction points look fine.
    ars = AdaptiveRejectionSampler(lambda x: -torch.log1p(x**2), initial_points=[-0.5, 0.0, 0.5])
    with pytest.raises(NotLogConcaveError, match="not log-concave"):
        ars.sample(5000, generator=torch.Generator().manual_seed(5))


def test_bad_input():
    with pytest.raises(ValueError, match="domain"):
        AdaptiveRejectionSampler(lambda x: -x, (1.0, 0.0))
    with pytest.raises(ValueError, match="strictly inside"):
        AdaptiveRejectionSampler(lambda x: -x, (0.0, math.inf), initial_points=[-1.0])
    with pytest.raises(ValueError, match="not finite"):
        AdaptiveRejectionSampler(lambda x: torch.where(x > 0, -x, -math.inf))
    with pytest.raises(ValueError, match="not integrable"):
        AdaptiveRejectionSampler(lambda x: x)
    with pytest.raises(TypeError, match="callable"):
        AdaptiveRejectionSampler(3.0)
