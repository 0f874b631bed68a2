"""ELBO and IWAE bound on factor analysis, where log p(x), the posterior and every
moment the tests need are exact.

Model: z ~ N(0, I_k), x | z ~ N(W z + b, diag(psi)). q(z | x) = N(mu, diag(s^2)) is
deliberately not the exact posterior, so the ELBO gap KL(q || p(z|x)) is visible.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from bayestorch.testing import assert_z
from bayestorch.vi import elbo, iwae_bound

K, D = 2, 3
pytestmark = pytest.mark.statistical


class FactorAnalysis:
    def __init__(self, device):
        opts = {"dtype": torch.float64, "device": device}
        self.W = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.6, -1.2]], **opts)
        self.b = torch.tensor([0.2, -0.1, 0.4], **opts)
        self.psi = torch.tensor([0.5, 0.3, 0.8], **opts)
        self.x = torch.tensor([1.1, -0.4, 0.9], **opts)
        self.prior = Independent(Normal(torch.zeros(K, **opts), torch.ones(K, **opts)), 1)
        marginal_cov = self.W @ self.W.T + torch.diag(self.psi)
        self.log_px = MultivariateNormal(self.b, marginal_cov).log_prob(self.x)
        precision = torch.eye(K, **opts) + self.W.T @ torch.diag(1 / self.psi) @ self.W
        self.post_cov = torch.linalg.inv(precision)
        self.post_mean = self.post_cov @ self.W.T @ ((self.x - self.b) / self.psi)
        # q: shifted mean, diagonal scales that ignore the posterior correlation.
        self.q_loc = self.post_mean + torch.tensor([0.3, -0.2], **opts)
        self.q_scale = self.post_cov.diagonal().sqrt() * torch.tensor([1.2, 0.9], **opts)

    def q(self, loc=None, scale=None, batch=()):
        loc = self.q_loc if loc is None else loc
        scale = self.q_scale if scale is None else scale
        return Independent(
            Normal(loc.expand(*batch, *loc.shape), scale.expand(*batch, *scale.shape)), 1
        )

    def log_likelihood(self, z):
        mean = z @ self.W.T + self.b
        return Normal(mean, self.psi.sqrt()).log_prob(self.x).sum(-1)

    def exact_elbo(self, loc=None, scale=None):
        """E_q[log p(x|z)] - KL(q || p) in closed form (differentiable in loc, scale)."""
        loc = self.q_loc if loc is None else loc
        scale = self.q_scale if scale is None else scale
        resid = self.x - self.W @ loc - self.b
        spread = (self.W**2) @ (scale**2)
        expected_loglik = (
            -0.5 * torch.log(2 * math.pi * self.psi) - 0.5 * (resid**2 + spread) / self.psi
        ).sum()
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * torch.log(scale)).sum()
        return expected_loglik - kl

    def second_moment_of_ratio(self):
        """E_q[r^2], r = p(z|x) / q(z): Gaussian integral in closed form."""
        S_inv = torch.linalg.inv(self.post_cov)
        D_inv = torch.diag(1 / self.q_scale**2)
        A = 2 * S_inv - D_inv
        b = 2 * S_inv @ self.post_mean - D_inv @ self.q_loc
        c = 2 * self.post_mean @ S_inv @ self.post_mean - self.q_loc @ D_inv @ self.q_loc
        log_value = (
            torch.log(self.q_scale).sum()
            - torch.logdet(self.post_cov)
            - 0.5 * torch.logdet(A)
            + 0.5 * b @ torch.linalg.solve(A, b)
            - 0.5 * c
        )
        return log_value.exp()


@pytest.fixture
def fa(device):
    return FactorAnalysis(device)


def _generator(fa, seed):
    return torch.Generator(device=fa.x.device).manual_seed(seed)


def test_exact_gap_is_kl_to_posterior(fa):
    # Sanity of the closed forms used below: log p(x) - ELBO = KL(q || p(z | x)) > 0.
    q_full = MultivariateNormal(fa.q_loc, torch.diag(fa.q_scale**2))
    gap = torch.distributions.kl_divergence(q_full, MultivariateNormal(fa.post_mean, fa.post_cov))
    assert gap > 0.01
    torch.testing.assert_close(fa.log_px - fa.exact_elbo(), gap, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_estimate_is_unbiased(fa, analytic_kl):
    replicates = 4000
    estimates = elbo(
        fa.log_likelihood,
        fa.q(batch=(replicates,)),
        fa.prior,
        num_samples=2,
        analytic_kl=analytic_kl,
        generator=_generator(fa, 1),
    )
    assert estimates.shape == (replicates,)
    se = estimates.std() / math.sqrt(replicates)
    assert_z(estimates.mean(), fa.exact_elbo(), se)
    # A 2-sample IWAE bound is a different (larger) quantity: the same test rejects it.
    wrong = iwae_bound(
        fa.log_likelihood, fa.q(batch=(replicates,)), fa.prior, 2, generator=_generator(fa, 2)
    )
    with pytest.raises(AssertionError):
        assert_z(wrong.mean(), fa.exact_elbo(), wrong.std() / math.sqrt(replicates))


def test_elbo_is_a_lower_bound_in_every_draw_on_average(fa):
    estimates = elbo(fa.log_likelihood, fa.q(batch=(4000,)), fa.prior, generator=_generator(fa, 3))
    # One-sided: the mean sits below log p(x) by much more than its standard error.
    z = (fa.log_px - estimates.mean()) / (estimates.std() / math.sqrt(4000))
    assert z > 10, f"ELBO mean is not below log p(x): z = {z:.2f}"


def test_iwae_increases_with_k_and_approaches_log_px(fa):
    # Sized for power: E[L_K] - E[L_K'] ~ c (1/K - 1/K'), c = (E r^2 - 1)/2 = 0.37 here, so
    # the 16 -> 256 step is 0.022 nats against a standard error of 0.0025 (z ~ 9).
    # (An earlier 32 -> 1024 ladder with 2000 replicates had expected z ~ 3.2: underpowered.)
    replicates = 8000
    means, ses = [], []
    ks = [1, 4, 16, 256]
    for i, k in enumerate(ks):
        bounds = iwae_bound(
            fa.log_likelihood,
            fa.q(batch=(replicates,)),
            fa.prior,
            k,
            chunk_size=100,
            generator=_generator(fa, 10 + i),
        )
        means.append(bounds.mean())
        ses.append(bounds.std() / math.sqrt(replicates))
    # K = 1 is the ELBO.
    assert_z(means[0], fa.exact_elbo(), ses[0])
    # Strictly increasing: each difference is positive at the declared failure rate.
    z_crit = 3.3  # one-sided, failure rate 5e-4 per comparison
    for j in range(len(ks) - 1):
        z = (means[j + 1] - means[j]) / math.hypot(ses[j], ses[j + 1])
        assert z > z_crit, (
            f"IWAE bound did not increase from K={ks[j]} to K={ks[j + 1]} (z = {z:.2f})"
        )
    # Large K: E[L_K] = log p(x) - (E_q[r^2] - 1) / (2K) + O(1/K^2), r = p(z|x)/q(z).
    predicted = fa.log_px - (fa.second_moment_of_ratio() - 1) / (2 * ks[-1])
    assert_z(means[-1], predicted, ses[-1])
    # The check has power: an estimator stuck at the ELBO is many standard errors away.
    assert (predicted - means[0]) / ses[-1] > 50


def test_second_moment_closed_form_matches_monte_carlo(fa):
    # Guards the closed form used for the large-K prediction.
    n = 200_000
    g = _generator(fa, 4)
    z = fa.q_loc + fa.q_scale * torch.randn(
        n, K, generator=g, device=fa.x.device, dtype=torch.float64
    )
    log_r = MultivariateNormal(fa.post_mean, fa.post_cov).log_prob(z) - fa.q().log_prob(z)
    r2 = torch.exp(2 * log_r)
    assert_z(r2.mean(), fa.second_moment_of_ratio(), r2.std() / math.sqrt(n))


def test_reparameterised_gradient_is_unbiased(fa):
    """Mean of per-draw reparameterised gradients vs the exact gradient of the closed form."""
    replicates = 4000
    loc = fa.q_loc.expand(replicates, K).clone().requires_grad_(True)
    log_scale = fa.q_scale.log().expand(replicates, K).clone().requires_grad_(True)
    estimates = elbo(
        fa.log_likelihood,
        fa.q(loc, log_scale.exp()),
        fa.prior,
        analytic_kl=False,
        generator=_generator(fa, 5),
    )
    grad_loc, grad_log_scale = torch.autograd.grad(estimates.sum(), (loc, log_scale))
    exact_loc = fa.q_loc.clone().requires_grad_(True)
    exact_log_scale = fa.q_scale.log().clone().requires_grad_(True)
    exact = torch.autograd.grad(
        fa.exact_elbo(exact_loc, exact_log_scale.exp()), (exact_loc, exact_log_scale)
    )
    for estimate, truth in zip((grad_loc, grad_log_scale), exact):
        assert_z(estimate.mean(0), truth, estimate.std(0) / math.sqrt(replicates))


def test_elbo_gradcheck_for_fixed_noise(fa):
    """With the noise fixed by a reseeded generator the estimate is a smooth function."""

    def fn(loc, log_scale):
        posterior = Independent(Normal(loc, log_scale.exp()), 1)
        return elbo(
            fa.log_likelihood, posterior, fa.prior, num_samples=3, generator=_generator(fa, 6)
        )

    inputs = (fa.q_loc.clone().requires_grad_(True), fa.q_scale.log().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs)


def test_log_likelihood_shape_is_checked(fa):
    with pytest.raises(ValueError, match="log_likelihood_fn must map"):
        elbo(lambda z: z.sum(), fa.q(), fa.prior, generator=_generator(fa, 0))
    with pytest.raises(ValueError, match="num_samples"):
        elbo(fa.log_likelihood, fa.q(), fa.prior, num_samples=0)
