"""Gibbs on the Bayesian Gaussian mixture against the exact posterior (label enumeration)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from bayestorch.mcmc.gaussian_mixture import BayesianGaussianMixture, MixtureParameters
from bayestorch.testing import assert_counts, assert_ks, assert_mcmc_mean, run_kernel

pytestmark = pytest.mark.statistical

DATA = torch.tensor([-2.1, -1.4, -0.3, 1.2, 2.5], dtype=torch.float64)
K = 2


def make_model(data=DATA):
    # Asymmetric prior means identify the labels; small data keep 2^5 label vectors.
    return BayesianGaussianMixture(
        data,
        K,
        concentration=1.5,
        prior_mean=torch.tensor([-1.0, 1.0], dtype=torch.float64),
        prior_kappa=0.5,
        prior_shape=3.0,
        prior_rate=2.0,
    )


def exact_posterior(model):
    """All K^N label vectors, their posterior probabilities and conjugate posteriors."""
    labels = torch.tensor(list(itertools.product(range(K), repeat=DATA.numel())))
    probs = torch.softmax(model.log_marginal_given_labels(labels), 0)
    return labels, probs, model.posterior_given_labels(labels)


def exact_draws(model, chains, generator):
    labels, probs, _ = exact_posterior(model)
    index = torch.multinomial(probs, chains, replacement=True, generator=generator)
    position = model.pack(
        torch.full((chains, K), 0.5, dtype=torch.float64),
        torch.zeros(chains, K, dtype=torch.float64),
        torch.ones(chains, K, dtype=torch.float64),
        labels[index],
    )
    weights = model.sample_weights(position, generator)
    components = model.sample_components(position, generator)
    return model.pack(weights, components[:, :K], components[:, K:], labels[index])


def label_counts(labels):
    codes = (labels * (K ** torch.arange(DATA.numel() - 1, -1, -1))).sum(-1)
    return torch.bincount(codes, minlength=K ** DATA.numel())


def mean_cdf(model, k):
    """CDF of the posterior of mean_k: a mixture over labels of Student-t's."""
    _, probs, post = exact_posterior(model)
    df = 2 * post.shape[:, k].numpy()
    scale = np.sqrt(post.rate[:, k].numpy() / (post.shape[:, k].numpy() * post.kappa[:, k].numpy()))
    loc = post.loc[:, k].numpy()
    p = probs.numpy()
    return lambda x: (p * stats.t.cdf(np.asarray(x)[:, None], df, loc, scale)).sum(1)


def precision_cdf(model, k):
    _, probs, post = exact_posterior(model)
    shape, rate, p = post.shape[:, k].numpy(), post.rate[:, k].numpy(), probs.numpy()
    return lambda x: (p * stats.gamma.cdf(np.asarray(x)[:, None], shape, scale=1 / rate)).sum(1)


def check_exact(model, params: MixtureParameters, failure_rate=1e-3):
    rate = failure_rate / 5
    labels, probs, _ = exact_posterior(model)
    counts = label_counts(params.labels)
    assert_counts(counts, probs, rate)
    for k in range(K):
        assert_ks(params.means[:, k], mean_cdf(model, k), rate)
        assert_ks(params.precisions[:, k], precision_cdf(model, k), rate)


@pytest.mark.parametrize("scan", ["systematic", "random"])
def test_gibbs_leaves_the_exact_posterior_invariant(scan):
    model = make_model()
    g = torch.Generator().manual_seed(0)
    state, _ = run_kernel(model.gibbs_kernel(scan), exact_draws(model, 4000, g), 3, g)
    check_exact(model, model.unpack(state.position))


def test_wrong_precision_conditional_fails():
    # The broken variant: the Gamma rate without the 1/2 on the scatter term.
    class Broken(BayesianGaussianMixture):
        def posterior_given_labels(self, labels):
            post = super().posterior_given_labels(labels)
            return post._replace(rate=2 * post.rate - self.prior_rate)

    model, broken = (
        make_model(),
        Broken(
            DATA,
            K,
            concentration=1.5,
            prior_mean=torch.tensor([-1.0, 1.0], dtype=torch.float64),
            prior_kappa=0.5,
            prior_shape=3.0,
            prior_rate=2.0,
        ),
    )
    g = torch.Generator().manual_seed(1)
    state, _ = run_kernel(broken.gibbs_kernel(), exact_draws(model, 4000, g), 3, g)
    with pytest.raises(AssertionError):
        check_exact(model, model.unpack(state.position))


def test_gibbs_recovers_the_posterior_means():
    model = make_model()
    g = torch.Generator().manual_seed(2)
    labels, probs, post = exact_posterior(model)
    truth = torch.cat(
        [
            (probs[:, None] * post.concentration / post.concentration.sum(-1, keepdim=True)).sum(0),
            (probs[:, None] * post.loc).sum(0),
            (probs[:, None] * post.shape / post.rate).sum(0),
        ]
    )
    kernel = model.gibbs_kernel()
    state = kernel.init(model.initial_position(8, g))
    for _ in range(50):  # burn-in from prior draws
        state, _ = kernel.step(state, g)
    draws = []
    for _ in range(400):
        state, _ = kernel.step(state, g)
        draws.append(state.position[:, : 3 * K])
    assert_mcmc_mean(torch.stack(draws, 1), truth)


def test_marginal_likelihood_matches_the_joint():
    # Bayes: log p(x, z) = log p(x, z, theta) - log p(theta | x, z) at any theta.
    model = make_model()
    g = torch.Generator().manual_seed(3)
    position = model.initial_position(6, g)
    w, m, t, z = model.unpack(position)
    post = model.posterior_given_labels(z)
    log_post = (
        torch.distributions.Dirichlet(post.concentration).log_prob(w)
        + torch.distributions.Gamma(post.shape, post.rate).log_prob(t).sum(-1)
        + torch.distributions.Normal(post.loc, (post.kappa * t).rsqrt()).log_prob(m).sum(-1)
    )
    torch.testing.assert_close(
        model.log_joint(position) - log_post, model.log_marginal_given_labels(z)
    )
    bad = position.clone()
    bad[:, K] = -1.0  # a negative precision
    bad[:, 2 * K] = -1.0
    assert bool((model.log_joint(bad) == -torch.inf).all())


def test_bad_input():
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        BayesianGaussianMixture(torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match="NaN"):
        BayesianGaussianMixture(torch.tensor([0.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="prior_kappa"):
        BayesianGaussianMixture(DATA, 2, prior_kappa=0.0)
    with pytest.raises(ValueError, match="num_components"):
        BayesianGaussianMixture(DATA, 0)
