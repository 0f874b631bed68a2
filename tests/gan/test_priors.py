"""Latent priors (bayestorch.gan.priors): gradients, goodness of fit, stick-breaking, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor
from torch.func import functional_call

from bayestorch.distributions.stick_breaking import gem_expected_weights, kumaraswamy_log_sticks
from bayestorch.gan import DirichletProcessPrior, GaussianMixturePrior, GaussianPrior
from bayestorch.testing import assert_counts, assert_ks, assert_z
from bayestorch.testing.gof import categorical_counts

FAILURE_RATE = 1e-3


def _gmm(hard: bool = True, dtype=torch.float64) -> GaussianMixturePrior:
    prior = GaussianMixturePrior(3, 2, temperature=0.7, hard=hard).to(dtype)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-3.0, 0.0], [0.0, 2.0], [3.0, -1.0]]))
        prior.log_scales.copy_(torch.tensor([[0.0, -0.5], [-1.0, 0.3], [0.2, 0.0]]))
        prior.logits.copy_(torch.tensor([0.0, 1.0, -0.5]))
    return prior


def _dp(hard: bool = True, dtype=torch.float64) -> DirichletProcessPrior:
    prior = DirichletProcessPrior(1.5, 4, 2, temperature=0.7, hard=hard).to(dtype)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-3.0, 0.0], [0.0, 2.0], [3.0, -1.0], [0.0, -3.0]]))
        prior.log_scales.copy_(torch.tensor([[0.0, -0.5], [-1.0, 0.3], [0.2, 0.0], [0.0, 0.0]]))
        prior.log_a.copy_(torch.tensor([0.2, -0.3, 0.1]))
        prior.log_b.copy_(torch.tensor([0.5, 0.0, 0.3]))
    return prior


def _gaussian(dtype=torch.float64) -> GaussianPrior:
    prior = GaussianPrior(2, learnable=True).to(dtype)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[0.5, -1.0]]))
        prior.log_scales.copy_(torch.tensor([[0.3, -0.2]]))
    return prior


PRIORS = {"gaussian": _gaussian, "gmm": _gmm, "dp": _dp}


# -- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRIORS))
def test_rsample_gradcheck_in_every_parameter(name):
    # Relaxed draws (hard=False) are smooth in every parameter, so finite differences apply;
    # the noise is fixed by reseeding the generator inside the function.
    prior = PRIORS[name](hard=False) if name != "gaussian" else _gaussian()
    names = [n for n, _ in prior.named_parameters()]
    assert names, "every prior under test has parameters"
    for param_name in names:
        base = dict(prior.named_parameters())

        def f(value, param_name=param_name, base=base):
            params = {**base, param_name: value}
            g = torch.Generator().manual_seed(11)
            return functional_call(prior, params, ((5,), g))

        value = base[param_name].detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(f, (value,)), param_name


@pytest.mark.parametrize("make", [_gmm, _dp])
def test_straight_through_gradient_equals_relaxed_gradient_for_linear_loss(make):
    # z is linear in the one-hot, so for a linear loss the straight-through gradient of the
    # weight parameters equals the relaxed one at the same noise (the ST estimator's surrogate).
    c = torch.tensor([0.7, -1.3], dtype=torch.float64)
    grads = []
    for hard in (True, False):
        prior = make(hard=hard)
        z = prior.rsample((7,), torch.Generator().manual_seed(5))
        (z * c).sum().backward()
        weight_params = [
            p for n, p in prior.named_parameters() if n in ("logits", "log_a", "log_b")
        ]
        grads.append(torch.cat([p.grad.flatten() for p in weight_params]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


# -- goodness of fit ---------------------------------------------------------------------------


def _projected_mixture_cdf(prior, direction):
    w = prior.mixture_weights.detach().numpy()
    loc = (prior.means.detach() @ direction).numpy()
    scale = (prior.scales.detach().square() @ direction.square()).sqrt().numpy()
    return lambda x: np.sum(w * stats.norm.cdf((np.asarray(x)[:, None] - loc) / scale), -1)


def _assert_mixture_fit(prior, n, generator):
    z, k = prior.sample((n,), generator, return_component=True)
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]], dtype=z.dtype)
    rate = FAILURE_RATE / (len(directions) + 1)
    if prior.num_components > 1:
        weights = prior.mixture_weights.detach()
        assert_counts(categorical_counts(k, prior.num_components), weights, rate)
    else:
        assert torch.all(k == 0)
    for direction in directions:
        assert_ks(z @ direction, _projected_mixture_cdf(prior, direction), rate)


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(PRIORS))
def test_samples_fit_the_mixture_density(name, generator):
    # KS on four 1-d projections (each a 1-d Gaussian mixture) and chi-square on components.
    prior = PRIORS[name]()
    _assert_mixture_fit(prior, 4000, generator)


@pytest.mark.statistical
def test_relaxed_draws_fail_the_mixture_fit(generator):
    # The wrong variant: relaxed (non-straight-through) draws interpolate between components.
    with pytest.raises(AssertionError, match="Kolmogorov-Smirnov"):
        _assert_mixture_fit(_gmm(hard=False), 4000, generator)


@pytest.mark.parametrize("name", list(PRIORS))
def test_log_prob_matches_torch_mixture(name):
    prior = PRIORS[name]()
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=prior.mixture_weights.detach()),
        torch.distributions.Independent(
            torch.distributions.Normal(prior.means.detach(), prior.scales.detach()), 1
        ),
    )
    torch.testing.assert_close(prior.log_prob(z).detach(), reference.log_prob(z))
    torch.testing.assert_close(prior.posterior(z).sum(-1), torch.ones(6, dtype=torch.float64))


def test_same_generator_same_draws(device):
    prior = _dp(dtype=torch.float32).to(device)
    a = prior.sample((5,), torch.Generator(device=device).manual_seed(2), return_component=True)
    b = prior.sample((5,), torch.Generator(device=device).manual_seed(2), return_component=True)
    assert a[0].device.type == device.type and a[1].dtype == torch.long
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- stick-breaking ------------------------------------------------------------------------------


def _truncated_gem_means(alpha: float, truncation: int) -> Tensor:
    """``E[w_k]`` of GEM(alpha) truncated with ``v_T = 1``: the first ``T - 1`` as GEM, the
    last ``(alpha / (1 + alpha))^(T - 1)``."""
    head = gem_expected_weights(alpha, truncation - 1, dtype=torch.float64)
    last = torch.tensor([(alpha / (1 + alpha)) ** (truncation - 1)], dtype=torch.float64)
    return torch.cat([head, last])


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_stick_weights_at_init_are_truncated_gem_and_sum_to_one(alpha):
    prior = DirichletProcessPrior(alpha, 12, 3).double()
    torch.testing.assert_close(prior.weights.detach(), _truncated_gem_means(alpha, 12))
    for p in (prior, _dp()):
        torch.testing.assert_close(p.weights.sum().detach(), torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(p.mixture_weights, p.weights)
    assert tuple(prior.log_a.shape) == (11,)  # T - 1 sticks


def _stick_draws(a, b, n, generator, truncation=6):
    prior = DirichletProcessPrior(1.0, truncation, 1).double()
    with torch.no_grad():
        prior.log_a.fill_(math.log(a))
        prior.log_b.fill_(math.log(b))
    return prior.stick_log_weights((n,), generator).exp()


@pytest.mark.statistical
@pytest.mark.parametrize("alpha", [0.7, 3.0])
def test_drawn_stick_weights_mean_matches_truncated_gem(alpha, generator):
    # Each draw's weights sum to 1; their Monte Carlo mean matches E[w_k] = alpha^(k-1) /
    # (1 + alpha)^k for k < T and E[w_T] = (alpha / (1 + alpha))^(T - 1).
    draws = _stick_draws(1.0, alpha, 20000, generator)
    torch.testing.assert_close(draws.sum(-1), torch.ones(20000, dtype=torch.float64))
    truth = _truncated_gem_means(alpha, 6)
    assert_z(draws.mean(0), truth, draws.std(0) / math.sqrt(draws.shape[0]), FAILURE_RATE)


@pytest.mark.statistical
def test_wrong_sticks_fail_gem_mean(generator):
    # Kumaraswamy(alpha, 1) (parameters swapped) is not Beta(1, alpha): the same test fails.
    draws = _stick_draws(3.0, 1.0, 20000, generator)
    truth = _truncated_gem_means(3.0, 6)
    with pytest.raises(AssertionError, match="z-test failed"):
        assert_z(draws.mean(0), truth, draws.std(0) / math.sqrt(draws.shape[0]), FAILURE_RATE)


@pytest.mark.statistical
def test_draws_and_stick_weights_follow_one_truncation_law(generator):
    """Issue 21: at T = 3, alpha = 2.5 the last weight's mean was 0.146 in stick_log_weights
    (all T sticks drawn) and 0.51 in rsample (v_T = 1). One law now: E[w_T] = (2.5 / 3.5)^2."""
    alpha, n = 2.5, 20000
    prior = DirichletProcessPrior(alpha, 3, 1).double()
    expected_last = (alpha / (1 + alpha)) ** 2
    last = prior.stick_log_weights((n,), generator).exp()[:, -1]
    assert_z(last.mean(), torch.tensor(expected_last), last.std() / math.sqrt(n), FAILURE_RATE)
    torch.testing.assert_close(prior.weights[-1].detach(), torch.tensor(expected_last).double())
    _, component = prior.sample((n,), generator, return_component=True)
    hits = (component == 2).double()
    assert_z(hits.mean(), torch.tensor(expected_last), hits.std() / math.sqrt(n), FAILURE_RATE)
    # the same generator state gives draws whose component logits are the stick weights
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(prior._choice_logits((5,), g1), prior.stick_log_weights((5,), g2))


def test_single_component_truncation():
    prior = DirichletProcessPrior(1.0, 1, 2).double()
    assert prior.log_a.numel() == 0
    torch.testing.assert_close(prior.weights, torch.ones(1, dtype=torch.float64))
    z, k = prior.sample((4,), torch.Generator().manual_seed(0), return_component=True)
    assert z.shape == (4, 2) and bool((k == 0).all())


@pytest.mark.statistical
def test_kumaraswamy_one_b_is_beta_one_b(generator):
    log_v, log_1mv = kumaraswamy_log_sticks(
        torch.tensor(1.0, dtype=torch.float64),
        torch.tensor(2.5, dtype=torch.float64),
        (5000,),
        generator=generator,
    )
    torch.testing.assert_close(log_v.exp() + log_1mv.exp(), torch.ones(5000, dtype=torch.float64))
    assert_ks(log_v.exp(), stats.beta(1.0, 2.5).cdf, FAILURE_RATE)


def test_dp_effective_components():
    prior = DirichletProcessPrior(0.5, 20, 2)
    k = prior.num_effective_components(0.01)
    assert k == int((gem_expected_weights(0.5, 20) > 0.01).sum())


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GaussianMixturePrior(0, 2), "num_components"),
        (lambda: GaussianMixturePrior(3, 0), "dim"),
        (lambda: GaussianMixturePrior(3, 2, temperature=0.0), "temperature"),
        (lambda: DirichletProcessPrior(-1.0, 5, 2), "alpha"),
        (lambda: DirichletProcessPrior(1.0, 0, 2), "truncation"),
        (lambda: GaussianPrior(0), "dim"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_log_prob_rejects_wrong_latent_dim():
    with pytest.raises(ValueError, match="dim=2"):
        _gmm().log_prob(torch.zeros(4, 3, dtype=torch.float64))
