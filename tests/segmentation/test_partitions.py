"""EPPFs, conjugate marginal likelihoods and partition summaries against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.metrics import adjusted_rand_score, mutual_info_score

from bayestorch.segmentation.conjugate import NormalInverseGamma, NormalInverseWishart
from bayestorch.segmentation.partition_estimates import (
    adjusted_rand_index,
    binder_loss,
    coclustering,
    partition_point_estimate,
    variation_of_information,
)
from bayestorch.segmentation.partitions import GibbsPartitionPrior, canonical_labels, set_partitions

PRIORS = [
    GibbsPartitionPrior("dp", alpha=1.7),
    GibbsPartitionPrior("pitman_yor", alpha=0.6, discount=0.35),
    GibbsPartitionPrior("finite", num_labels=4, dirichlet=0.7),
    GibbsPartitionPrior("finite", num_labels=4),
]


def _sizes(partitions: torch.Tensor) -> torch.Tensor:
    n = partitions.shape[1]
    ones = torch.ones(partitions.shape, dtype=torch.float64)
    return torch.zeros(partitions.shape[0], n, dtype=torch.float64).scatter_add_(
        1, partitions, ones
    )


@pytest.mark.parametrize("prior", PRIORS, ids=["dp", "py", "finite", "potts"])
def test_eppf_sums_to_one_over_all_partitions(prior):
    for n in (1, 4, 7):
        log_g = prior.log_eppf(_sizes(set_partitions(n)))
        assert math.isclose(float(torch.logsumexp(log_g, 0)), 0.0, abs_tol=1e-10)


def test_dp_eppf_is_ewens_formula():
    alpha, sizes = 1.7, [3, 1, 2]
    n = sum(sizes)
    expected = len(sizes) * math.log(alpha) + sum(math.lgamma(s) for s in sizes)
    expected -= math.lgamma(alpha + n) - math.lgamma(alpha)
    got = GibbsPartitionPrior("dp", alpha=alpha).log_eppf(torch.tensor([[3.0, 1, 2, 0, 0, 0]]))
    assert math.isclose(float(got), expected, rel_tol=1e-12)


def test_potts_limit_counts_labellings():
    # uniform labels over K: g = K! / (K - k)! / K^n
    got = GibbsPartitionPrior("finite", num_labels=3).log_eppf(torch.tensor([[2.0, 2.0, 0.0, 0.0]]))
    assert math.isclose(float(got), math.log(6 / 81), rel_tol=1e-12)


@pytest.mark.parametrize("prior", PRIORS, ids=["dp", "py", "finite", "potts"])
def test_ratios_agree_with_eppf(prior):
    # from blocks (3, 2), a block of size 2 joins the first or opens a new one
    joined = prior.log_eppf(torch.tensor([[5.0, 2.0, 0.0]]))
    opened = prior.log_eppf(torch.tensor([[3.0, 2.0, 2.0]]))
    add = prior.log_add(torch.tensor([[3.0]]), torch.tensor([[2.0]]))
    new = prior.log_new(torch.tensor([2.0]), torch.tensor([2]))
    # both ratios are relative to g(3, 2) at n = 5; the normalisers in n cancel in
    # (joined - opened), which is what the sampler uses
    assert math.isclose(float(joined - opened), float(add.squeeze() - new), rel_tol=1e-10)


# Pitman-Yor is defined for alpha > -d (Pitman 2006, section 3.2), not only alpha > 0.
NEGATIVE_PY = [
    GibbsPartitionPrior("pitman_yor", alpha=-0.2, discount=0.35),
    GibbsPartitionPrior("pitman_yor", alpha=0.0, discount=0.5),
]


@pytest.mark.parametrize("prior", NEGATIVE_PY, ids=["alpha<0", "alpha=0"])
def test_pitman_yor_with_alpha_down_to_minus_discount(prior):
    for n in (1, 4, 7):
        log_g = prior.log_eppf(_sizes(set_partitions(n)))
        assert math.isclose(float(torch.logsumexp(log_g, 0)), 0.0, abs_tol=1e-10)
    test_ratios_agree_with_eppf(prior)
    # opening the first block: g(3) up to the normaliser (alpha + 1)_2 that every choice
    # shares; V's factor is an empty product (1), finite at alpha <= 0
    a = float(prior.alpha)
    first = prior.log_new(torch.tensor([3.0]), torch.tensor([0]))
    g3 = float(prior.log_eppf(torch.tensor([[3.0]]))) + math.lgamma(a + 3) - math.lgamma(a + 1)
    assert math.isclose(float(first), g3, rel_tol=1e-12)
    with pytest.raises(ValueError, match="alpha must be > -discount"):
        GibbsPartitionPrior("pitman_yor", alpha=-0.35, discount=0.35)


def test_parameters_a_prior_does_not_have_are_rejected():
    for kwargs in ({"alpha": -5.0}, {"alpha": 2.0}, {"discount": 0.3}):
        with pytest.raises(ValueError, match="do not apply to the 'finite'"):
            GibbsPartitionPrior("finite", num_labels=3, **kwargs)
    for kind in ("dp", "pitman_yor"):
        with pytest.raises(ValueError, match="num_labels apply only to the 'finite'"):
            GibbsPartitionPrior(kind, num_labels=3)
        with pytest.raises(ValueError, match="dirichlet apply only"):
            GibbsPartitionPrior(kind, dirichlet=0.5)


def test_canonical_labels_and_bad_priors():
    labels = torch.tensor([[5, 5, 2, 7, 2], [0, 1, 0, 1, 3]])
    assert canonical_labels(labels).tolist() == [[0, 0, 1, 2, 1], [0, 1, 0, 1, 2]]
    with pytest.raises(ValueError, match="alpha"):
        GibbsPartitionPrior("dp", alpha=0.0)
    with pytest.raises(ValueError, match="discount"):
        GibbsPartitionPrior("pitman_yor", discount=1.0)
    with pytest.raises(ValueError, match="num_labels"):
        GibbsPartitionPrior("finite")
    with pytest.raises(ValueError, match="partition_prior"):
        GibbsPartitionPrior("ibp")


def test_normal_inverse_gamma_matches_numerical_integration():
    # p(y) = int int prod N(y_i | mu, s2) N(mu | m0, s2 / k0) InvGamma(s2 | a0, b0) dmu ds2,
    # over mu and t = log s2 (finite limits far in the tails), densities written out
    y = np.array([0.3, -0.2, 0.9])
    m0, k0, a0, b0 = 0.1, 0.5, 2.5, 0.7

    def joint(mu, t):
        s2 = math.exp(t)
        r = y - mu
        log_lik = -0.5 * r @ r / s2 - 0.5 * len(y) * math.log(2 * math.pi * s2)
        log_mu = -0.5 * k0 * (mu - m0) ** 2 / s2 - 0.5 * math.log(2 * math.pi * s2 / k0)
        log_s2 = a0 * math.log(b0) - math.lgamma(a0) - (a0 + 1) * t - b0 / s2
        return math.exp(log_lik + log_mu + log_s2 + t)  # + t: ds2 = s2 dt

    value, _ = integrate.dblquad(joint, -30, 15, -30, 30, epsabs=0, epsrel=1e-12)
    got = NormalInverseGamma(m0, k0, a0, b0).log_marginal_data(torch.tensor(y)[:, None])
    assert abs(float(got) - math.log(value)) < 1e-8


def test_normal_inverse_wishart_in_one_dimension_is_normal_inverse_gamma():
    y = torch.tensor([[0.3], [-0.2], [0.9], [1.4]], dtype=torch.float64)
    nig = NormalInverseGamma(0.1, 0.5, 2.5, 0.7).log_marginal_data(y)
    niw = NormalInverseWishart(1, 0.1, 0.5, dof=5.0, scale=1.4).log_marginal_data(y)
    assert abs(float(nig - niw)) < 1e-10


def test_normal_inverse_wishart_matches_student_t_chain_rule():
    # p(y_1..y_n) = prod_i p(y_i | y_<i), each a multivariate Student t (scipy)
    y = np.array([[0.3, 1.0, 0.2], [-0.2, 0.4, 0.1], [0.9, 0.8, -0.5], [0.1, -0.3, 0.7]])
    m0, k0, nu0 = np.array([0.1, 0.2, 0.0]), 0.5, 4.5
    psi0 = np.array([[0.8, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.6]])
    total = 0.0
    for i in range(len(y)):
        x, n = y[:i], i
        kn, nun = k0 + n, nu0 + n
        mean = x.mean(0) if n else np.zeros(3)
        scatter = (x - mean).T @ (x - mean) if n else np.zeros((3, 3))
        mn = (k0 * m0 + n * mean) / kn
        psin = psi0 + scatter + k0 * n / kn * np.outer(mean - m0, mean - m0)
        df = nun - 3 + 1
        total += stats.multivariate_t.logpdf(y[i], mn, psin * (kn + 1) / (kn * df), df=df)
    niw = NormalInverseWishart(3, torch.tensor(m0), k0, dof=nu0, scale=torch.tensor(psi0))
    assert abs(float(niw.log_marginal_data(torch.tensor(y))) - total) < 1e-8


def test_conjugate_bad_hyperparameters():
    with pytest.raises(ValueError, match="kappa"):
        NormalInverseGamma(kappa=0.0)
    with pytest.raises(ValueError, match="rate"):
        NormalInverseGamma(rate=-1.0)
    with pytest.raises(ValueError, match="dof"):
        NormalInverseWishart(3, dof=1.0)
    with pytest.raises(ValueError, match="positive definite"):
        NormalInverseWishart(2, scale=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))


def test_distances_match_scikit_learn_and_brute_force():
    gen = np.random.default_rng(0)
    for _ in range(5):
        a, b = gen.integers(0, 4, 30), gen.integers(0, 6, 30)
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        assert math.isclose(
            float(adjusted_rand_index(ta, tb)), adjusted_rand_score(a, b), abs_tol=1e-12
        )
        ha = stats.entropy(np.bincount(a))
        hb = stats.entropy(np.bincount(b))
        vi = ha + hb - 2 * mutual_info_score(a, b)
        assert math.isclose(float(variation_of_information(ta, tb)), vi, abs_tol=1e-12)
        together_a = a[:, None] == a[None, :]
        together_b = b[:, None] == b[None, :]
        pairs = np.triu(together_a != together_b, 1).sum()
        assert float(binder_loss(ta, tb)) == pairs
    batch = torch.as_tensor(gen.integers(0, 3, (4, 30)))
    assert adjusted_rand_index(batch, batch).tolist() == [1.0] * 4
    assert variation_of_information(batch, batch).tolist() == [0.0] * 4


def test_coclustering_and_point_estimate():
    draws = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [5, 5, 2, 2]])
    p = coclustering(draws)
    assert p[0, 1] == 0.75 and p[1, 2] == 0.25 and p[2, 3] == 1.0 and bool((p.diag() == 1).all())
    assert coclustering(draws, torch.tensor([2, 3])).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    for loss in ("vi", "binder"):
        estimate, expected = partition_point_estimate(draws, loss)
        assert canonical_labels(estimate[None]).tolist() == [[0, 0, 1, 1]]
        assert expected.shape == (4,)
    with pytest.raises(ValueError, match="loss"):
        partition_point_estimate(draws, "rand")
