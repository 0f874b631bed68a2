"""EnergyPrior (bayestorch.gan.energy_prior): HMC draws against a closed form, the
score-function surrogate against the exact gradient, and training inside a GAN."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from bayestorch.gan import GAN
from bayestorch.gan.energy_prior import EnergyPrior
from bayestorch.testing import assert_ks, assert_z

FAILURE_RATE = 1e-3


class _Quadratic(nn.Module):
    """energy(z) = c |z|^2 / 2, so p(z) = N(0, I / (1 + c))."""

    def __init__(self, c: float):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c, dtype=torch.float64))

    def forward(self, z):
        return 0.5 * self.c * z.square().sum(-1)


def _prior(c: float) -> EnergyPrior:
    return EnergyPrior(_Quadratic(c), 2, step_size=0.3, num_leapfrog=4).double()


@pytest.mark.statistical
def test_hmc_draws_fit_the_closed_form(generator):
    prior = _prior(3.0)
    z = prior.rsample((3000,), generator)  # warm-up transitions from N(0, I)
    z = prior.rsample((3000,), generator)  # persistent chains advanced
    sd = 1 / math.sqrt(4.0)
    for j in range(2):
        assert_ks(z[:, j], stats.norm(scale=sd).cdf, FAILURE_RATE / 2)


@pytest.mark.statistical
def test_unconverged_chains_fail_the_closed_form(generator):
    # The wrong variant: one tiny HMC transition leaves the draws near the N(0, I) start.
    prior = EnergyPrior(_Quadratic(3.0), 2, step_size=0.01, num_leapfrog=1, warmup_transitions=1)
    z = prior.double().rsample((3000,), generator)
    with pytest.raises(AssertionError, match="Kolmogorov-Smirnov"):
        assert_ks(z[:, 0], stats.norm(scale=0.5).cdf, FAILURE_RATE)


@pytest.mark.statistical
def test_surrogate_gradient_matches_exact_gradient(generator):
    # l(z) = |z|^2: E_p[l] = 2 / (1 + c), d/dc = -2 / (1 + c)^2.
    c, n = 1.5, 4000
    prior = _prior(c)
    prior.rsample((n,), generator)
    z = prior.rsample((n,), generator)
    loss = z.square().sum(-1)
    # per-draw contributions of the surrogate's gradient d/dc: -(l_i - mean l) |z_i|^2 / 2
    per_draw = -(loss - loss.mean()) * 0.5 * z.square().sum(-1)
    prior.surrogate_loss(z, loss).backward()
    torch.testing.assert_close(prior.energy.c.grad, per_draw.mean())
    se = per_draw.std() / math.sqrt(n)
    assert_z(prior.energy.c.grad, -2 / (1 + c) ** 2, se, FAILURE_RATE)


def test_energy_prior_trains_inside_a_gan():
    torch.manual_seed(0)
    energy = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    prior = EnergyPrior(energy, 2, warmup_transitions=3)
    gan = GAN(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Linear(2, 1), prior)
    before = [p.detach().clone() for p in energy.parameters()]
    g = torch.Generator().manual_seed(0)
    metrics = gan.training_step(torch.randn(16, 2, generator=g), g)
    assert math.isfinite(metrics["g_loss"])
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(before, energy.parameters(), strict=True)
    )
    assert gan.sample(16, g).shape == (16, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        EnergyPrior(nn.Linear(2, 1), 0)
    with pytest.raises(ValueError, match="step_size"):
        EnergyPrior(nn.Linear(2, 1), 2, step_size=-1.0)
    with pytest.raises(ValueError, match="dim=2"):
        EnergyPrior(nn.Linear(2, 1), 2).log_prob(torch.zeros(3, 4))
