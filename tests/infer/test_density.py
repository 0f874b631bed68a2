"""ModelDensity against hand-written unconstrained densities with their Jacobians."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D

import bayestorch as bt
from bayestorch.infer import ModelDensity
from bayestorch.infer.transforms import (
    LowerCholeskyVectorTransform,
    PositiveDefiniteVectorTransform,
)

Y = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=torch.float64)


def eight_schools(sigma, y=None):
    mu = bt.sample("mu", D.Normal(0.0, 5.0))
    tau = bt.sample("tau", D.HalfCauchy(5.0))
    with bt.plate("school", 8):
        theta = bt.sample("theta", D.Normal(mu, tau))
        bt.sample("y", D.Normal(theta, sigma), obs=y)
    bt.deterministic("shrinkage", 1 - tau / (tau + sigma.mean()))


def eight_schools_hand(z):
    mu, log_tau, theta = z[:, 0], z[:, 1], z[:, 2:]
    tau = log_tau.exp()
    return (
        D.Normal(0.0, 5.0).log_prob(mu)
        + D.HalfCauchy(5.0).log_prob(tau)
        + log_tau
        + D.Normal(mu[:, None], tau[:, None]).log_prob(theta).sum(-1)
        + D.Normal(theta, SIGMA).log_prob(Y).sum(-1)
    )


COUNTS = torch.tensor([3.0, 0.0, 5.0, 2.0], dtype=torch.float64)
ALPHA = torch.tensor([1.5, 0.5, 2.0, 1.0], dtype=torch.float64)


def dirichlet_multinomial(counts):
    p = bt.sample("p", D.Dirichlet(ALPHA))
    bt.sample("counts", D.Multinomial(int(counts.sum()), probs=p), obs=counts)


def dirichlet_multinomial_hand(z):
    transform = D.StickBreakingTransform()
    p = transform(z)
    return (
        D.Dirichlet(ALPHA).log_prob(p)
        + transform.log_abs_det_jacobian(z, p)
        + D.Multinomial(int(COUNTS.sum()), probs=p).log_prob(COUNTS)
    )


X_LKJ = torch.tensor(
    [[0.3, -1.2, 0.8], [1.1, 0.4, -0.2], [-0.7, 0.9, 1.5], [0.2, -0.3, 0.1]], dtype=torch.float64
)


def lkj_model(x):
    chol = bt.sample("L", D.LKJCholesky(3, 2.0))
    scale = bt.sample("scale", D.Independent(D.LogNormal(torch.zeros(3), 1.0), 1))
    with bt.plate("obs", x.shape[0]):
        bt.sample(
            "x", D.MultivariateNormal(torch.zeros(3), scale_tril=scale[:, None] * chol), obs=x
        )


def lkj_hand(z):
    corr = D.CorrCholeskyTransform()
    chol = corr(z[:, :3])
    log_scale = z[:, 3:]
    scale = log_scale.exp()
    tril = scale[:, :, None] * chol
    return (
        D.LKJCholesky(3, 2.0).log_prob(chol)
        + corr.log_abs_det_jacobian(z[:, :3], chol)
        + D.LogNormal(torch.zeros(3), 1.0).log_prob(scale).sum(-1)
        + log_scale.sum(-1)
        + D.MultivariateNormal(torch.zeros(3), scale_tril=tril[:, None]).log_prob(X_LKJ).sum(-1)
    )


SUCCESSES = torch.tensor([3.0, 7.0, 5.0], dtype=torch.float64)


def beta_uniform(k):
    p = bt.sample("p", D.Beta(2.0, 3.0))
    a = bt.sample("a", D.Uniform(-1.0, 4.0))
    with bt.plate("trials", 3):
        bt.sample("k", D.Binomial(10, p), obs=k)
    bt.sample("w", D.Normal(a, 1.0), obs=torch.tensor(0.5, dtype=torch.float64))


def beta_uniform_hand(z):
    p = torch.sigmoid(z[:, 0])
    a = -1.0 + 5.0 * torch.sigmoid(z[:, 1])
    jac = (
        torch.log(p * (1 - p))
        + math.log(5.0)
        + torch.log(torch.sigmoid(z[:, 1]) * (1 - torch.sigmoid(z[:, 1])))
    )
    return (
        D.Beta(2.0, 3.0).log_prob(p)
        + D.Uniform(-1.0, 4.0).log_prob(a)
        + D.Binomial(10, p[:, None]).log_prob(SUCCESSES).sum(-1)
        + D.Normal(a, 1.0).log_prob(torch.tensor(0.5, dtype=torch.float64))
        + jac
    )


CASES = {
    "eight_schools": (eight_schools, (SIGMA,), {"y": Y}, eight_schools_hand, 10),
    "dirichlet_multinomial": (dirichlet_multinomial, (COUNTS,), {}, dirichlet_multinomial_hand, 3),
    "lkj_cholesky": (lkj_model, (X_LKJ,), {}, lkj_hand, 6),
    "beta_uniform": (beta_uniform, (SUCCESSES,), {}, beta_uniform_hand, 2),
}


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("chains", [1, 128])
def test_log_prob_equals_hand_written_density(case, chains):
    model, args, kwargs, hand, dim = CASES[case]
    density = ModelDensity(model, *args, **kwargs)
    assert density.dim == dim
    z = torch.randn(chains, dim, generator=torch.Generator().manual_seed(chains)) * 1.5
    torch.testing.assert_close(density.log_prob(z), hand(z), rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_vmapped_evaluation_equals_a_loop_over_chains(case):
    model, args, kwargs, _, dim = CASES[case]
    density = ModelDensity(model, *args, **kwargs)
    z = torch.randn(16, dim, generator=torch.Generator().manual_seed(1))
    loop = torch.cat([density.log_prob(z[i : i + 1]) for i in range(16)])
    torch.testing.assert_close(density.log_prob(z), loop, rtol=0, atol=1e-12)
    grad_batch = torch.func.grad(lambda x: density.log_prob(x).sum())(z)
    grad_loop = torch.cat(
        [torch.func.grad(lambda x: density.log_prob(x).sum())(z[i : i + 1]) for i in range(16)]
    )
    torch.testing.assert_close(grad_batch, grad_loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_constrain_unconstrain_round_trip(case):
    model, args, kwargs, _, dim = CASES[case]
    density = ModelDensity(model, *args, **kwargs)
    z = torch.randn(5, dim, generator=torch.Generator().manual_seed(2))
    values = density.constrain(z)
    latent = {n: values[n] for n in density.latent_sites}
    torch.testing.assert_close(density.unconstrain(latent), z, rtol=1e-9, atol=1e-9)
    again = density.constrain(density.unconstrain(latent))
    for name, value in latent.items():
        torch.testing.assert_close(again[name], value, rtol=1e-9, atol=1e-12)


def test_constrained_values_lie_in_their_supports():
    density = ModelDensity(lkj_model, X_LKJ)
    values = density.constrain(torch.randn(50, 6, generator=torch.Generator().manual_seed(3)) * 3)
    assert bool(D.constraints.corr_cholesky.check(values["L"]).all())
    assert bool((values["scale"] > 0).all())


def test_eight_schools_sites_shapes_and_deterministic():
    density = ModelDensity(eight_schools, SIGMA, y=Y)
    assert list(density.latent_sites) == ["mu", "tau", "theta"]
    assert density.latent_sites["theta"].plates == (("school", -1, 8),)
    assert density.deterministic_sites == ["shrinkage"]
    z = torch.randn(4, 10, generator=torch.Generator().manual_seed(4))
    values = density.constrain(z)
    assert values["theta"].shape == (4, 8)
    torch.testing.assert_close(values["tau"], z[:, 1].exp())
    torch.testing.assert_close(
        values["shrinkage"], 1 - values["tau"] / (values["tau"] + SIGMA.mean())
    )


def test_jacobian_false_drops_only_the_jacobians():
    density = ModelDensity(eight_schools, SIGMA, y=Y)
    z = torch.randn(6, 10, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(density.log_prob(z) - density.log_prob(z, jacobian=False), z[:, 1])


def test_pointwise_log_likelihood_matches_hand_computation():
    density = ModelDensity(eight_schools, SIGMA, y=Y)
    z = torch.randn(3, 10, generator=torch.Generator().manual_seed(6))
    pointwise = density.pointwise_log_likelihood(z)
    torch.testing.assert_close(pointwise["y"], D.Normal(z[:, 2:], SIGMA).log_prob(Y))


@pytest.mark.parametrize(
    "transform", [LowerCholeskyVectorTransform(), PositiveDefiniteVectorTransform()]
)
def test_matrix_transforms_jacobian_against_autograd(transform):
    u = torch.randn(6, generator=torch.Generator().manual_seed(7))
    rows, cols = torch.tril_indices(3, 3)
    jacobian = torch.autograd.functional.jacobian(lambda v: transform(v)[rows, cols], u)
    torch.testing.assert_close(
        transform.log_abs_det_jacobian(u, transform(u)), torch.linalg.slogdet(jacobian)[1]
    )
    torch.testing.assert_close(transform.inv(transform(u)), u)


# torch's Wishart.sample warns "Singular sample detected" for every valid draw (its check
# is inverted in torch 2.13): the first trace draws one, so that warning is torch's.
@pytest.mark.filterwarnings("ignore:Singular sample detected")
def test_wishart_site_is_sampled_on_its_free_entries():
    def model():
        bt.sample("S", D.Wishart(5.0, torch.eye(3)))

    density = ModelDensity(model)
    assert density.dim == 6
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(8))
    transform = PositiveDefiniteVectorTransform()
    expected = D.Wishart(5.0, torch.eye(3)).log_prob(transform(z)) + transform.log_abs_det_jacobian(
        z, transform(z)
    )
    torch.testing.assert_close(density.log_prob(z), expected)


def test_random_module_density_equals_functional_call():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(9))
    y = torch.randn(5, generator=torch.Generator().manual_seed(10))

    def bnn(x, y=None):
        forward = bt.random_module("net", net, prior=D.Normal(0.0, 1.0))
        with bt.plate("data", x.shape[0]):
            bt.sample("y", D.Normal(forward(x).squeeze(-1), 0.5), obs=y)

    density = ModelDensity(bnn, x, y=y)
    names = [n for n, _ in net.named_parameters()]
    assert list(density.latent_sites) == [f"net.{n}" for n in names]
    z = torch.randn(7, density.dim, generator=torch.Generator().manual_seed(11))
    values = density.constrain(z)

    def hand(i):
        params = {n: values[f"net.{n}"][i] for n in names}
        out = torch.func.functional_call(net, params, (x,)).squeeze(-1)
        prior = sum(D.Normal(0.0, 1.0).log_prob(p).sum() for p in params.values())
        return prior + D.Normal(out, 0.5).log_prob(y).sum()

    torch.testing.assert_close(density.log_prob(z), torch.stack([hand(i) for i in range(7)]))


def test_subsampled_plate_scales_the_likelihood_and_is_unbiased():
    data = torch.randn(20, generator=torch.Generator().manual_seed(12))

    def model(data):
        mu = bt.sample("mu", D.Normal(0.0, 1.0))
        with bt.plate("data", 20, subsample_size=5) as idx:
            bt.sample("x", D.Normal(mu, 1.0), obs=data[idx])

    density = ModelDensity(model, data)
    density.subsample_generator = torch.Generator().manual_seed(13)
    z = torch.tensor([[0.3]])
    full = D.Normal(0.0, 1.0).log_prob(z[0, 0]) + D.Normal(z[0, 0], 1.0).log_prob(data).sum()
    estimates = torch.stack([density.log_prob(z)[0] for _ in range(400)])
    # Each estimate is prior + 4 * (sum over a 5-subset); its mean is the full log density.
    terms = D.Normal(z[0, 0], 1.0).log_prob(data)
    var = 20**2 * terms.var() / 5 * (1 - 5 / 20)  # finite-population variance of N * mean
    bt.testing.assert_z(estimates.mean(), full, (var / 400).sqrt())
    assert not torch.allclose(estimates[0], estimates[1])


def test_chain_data_gives_each_chain_its_own_observations():
    def model(y):
        mu = bt.sample("mu", D.Normal(0.0, 1.0))
        bt.sample("y", D.Normal(mu, 1.0), obs=y)

    ys = torch.tensor([0.0, 1.0, -2.0])
    density = ModelDensity(model, y=ys[0])
    density.chain_data = {"y": ys}
    z = torch.tensor([[0.5], [0.5], [0.5]])
    expected = D.Normal(0.0, 1.0).log_prob(z[:, 0]) + D.Normal(z[:, 0], 1.0).log_prob(ys)
    torch.testing.assert_close(density.log_prob(z), expected)


@pytest.mark.parametrize("strategy", ["uniform", "prior", "median"])
def test_init_strategies_give_finite_points(strategy):
    density = ModelDensity(eight_schools, SIGMA, y=Y)
    z = density.init(32, torch.Generator().manual_seed(14), strategy=strategy)
    assert z.shape == (32, 10) and z.dtype == torch.float64
    assert bool(torch.isfinite(density.log_prob(z)).all())
    if strategy == "uniform":
        assert bool((z.abs() <= 2).all())
    again = density.init(32, torch.Generator().manual_seed(14), strategy=strategy)
    torch.testing.assert_close(z, again)


def test_prior_init_follows_the_prior():
    density = ModelDensity(eight_schools, SIGMA, y=Y)
    z = density.prior_unconstrained(4000, torch.Generator().manual_seed(15))
    bt.testing.assert_ks(z[:, 0], lambda x: D.Normal(0.0, 5.0).cdf(torch.as_tensor(x)).numpy())
    bt.testing.assert_ks(z[:, 1].exp(), lambda x: D.HalfCauchy(5.0).cdf(torch.as_tensor(x)).numpy())


def test_log_prob_runs_on_the_device_of_its_inputs(device):
    y, sigma = Y.to(device), SIGMA.to(device)
    density = ModelDensity(eight_schools, sigma, y=y)
    assert density.init(4).device.type == device.type  # the data's device is the run's
    z = torch.randn(8, 10, device=device, dtype=torch.float64)
    lp = density.log_prob(z)
    assert lp.device.type == device.type
    torch.testing.assert_close(lp.cpu(), ModelDensity(eight_schools, SIGMA, y=Y).log_prob(z.cpu()))
