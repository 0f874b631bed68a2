"""bt.infer entry points against exact answers: conjugate posteriors, SBC, ADVI, MAP,
predictive laws, arviz export, resumable runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.distributions as D

import bayestorch as bt
from bayestorch.testing import assert_counts, assert_ks, assert_mcmc_mean, assert_z


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _cdf(dist):
    return lambda x: dist.cdf(torch.as_tensor(x)).numpy()


# -- conjugate posteriors through bt.infer.mcmc ------------------------------------------
Y_NORMAL = torch.tensor([1.2, 0.4, 2.1, 1.7, 0.9, 1.4, 2.5, 0.3, 1.1, 1.9], dtype=torch.float64)


def normal_normal(y):
    mu = bt.sample("mu", D.Normal(0.0, 2.0))
    with bt.plate("data", y.shape[0]):
        bt.sample("y", D.Normal(mu, 1.0), obs=y)


def beta_binomial(k):
    p = bt.sample("p", D.Beta(2.0, 3.0))
    bt.sample("k", D.Binomial(20, p), obs=k)


Y_COUNTS = torch.tensor([3.0, 5.0, 2.0, 4.0, 6.0, 3.0, 1.0, 4.0], dtype=torch.float64)


def gamma_poisson(y):
    lam = bt.sample("lam", D.Gamma(2.0, 1.0))
    with bt.plate("data", y.shape[0]):
        bt.sample("y", D.Poisson(lam), obs=y)


X_CAT = torch.tensor([0, 2, 2, 1, 2, 0, 2, 1, 2, 2])
ALPHA = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)


def dirichlet_categorical(x):
    p = bt.sample("p", D.Dirichlet(ALPHA))
    with bt.plate("data", x.shape[0]):
        bt.sample("x", D.Categorical(p), obs=x)


def _normal_posterior():
    precision = 1 / 4 + len(Y_NORMAL)
    return D.Normal(Y_NORMAL.sum() / precision, precision**-0.5)


CONJUGATE = {
    "normal_normal": (normal_normal, Y_NORMAL, "mu", _normal_posterior()),
    "beta_binomial": (beta_binomial, torch.tensor(7.0), "p", D.Beta(9.0, 16.0)),
    "gamma_poisson": (
        gamma_poisson,
        Y_COUNTS,
        "lam",
        D.Gamma(2.0 + Y_COUNTS.sum(), 1.0 + len(Y_COUNTS)),
    ),
    "dirichlet_categorical": (
        dirichlet_categorical,
        X_CAT,
        "p",
        D.Dirichlet(ALPHA + torch.bincount(X_CAT, minlength=3)),
    ),
}


@pytest.mark.statistical
@pytest.mark.parametrize("case", sorted(CONJUGATE))
def test_conjugate_posterior_mean_and_variance(case, hmc_compile):
    model, data, site, exact = CONJUGATE[case]
    post = bt.infer.mcmc(
        model,
        data,
        chains=16,
        num_warmup=300,
        num_samples=300,
        generator=torch.Generator().manual_seed(1),
        progress=False,
        kernel_kwargs={"compile": hmc_compile},
    )
    draws = post.draws[site]
    assert draws.shape == (16, 300) + exact.event_shape
    # failure rate 1e-3 for each of the two moments
    assert_mcmc_mean(draws, exact.mean)
    assert_mcmc_mean((draws - exact.mean) ** 2, exact.variance)


# -- simulation-based calibration --------------------------------------------------------
def normal_scale(y=None):
    mu = bt.sample("mu", D.Normal(0.0, 1.0))
    sigma = bt.sample("sigma", D.HalfNormal(1.0))
    with bt.plate("data", 4):
        bt.sample("y", D.Normal(mu, sigma), obs=y)


def beta_binomial_hierarchy(k=None):
    phi = bt.sample("phi", D.Beta(2.0, 2.0))
    kappa = bt.sample("kappa", D.Gamma(4.0, 0.5))
    with bt.plate("group", 3):
        p = bt.sample("p", D.Beta(phi * kappa, (1 - phi) * kappa))
        bt.sample("k", D.Binomial(10, p), obs=k)


SBC = {
    "normal_scale": (normal_scale, "y", "sigma"),
    "beta_binomial": (beta_binomial_hierarchy, "k", "kappa"),
}
REPLICATIONS, DRAWS, THIN = 160, 100, 10  # ranks in 0..10 from 10 thinned draws


def _sbc_ranks(model, data_site, broken_site=None, compile=False):
    """Ranks of each true latent scalar among thinned posterior draws, one replication
    per chain (its own data set through chain_data)."""
    g = torch.Generator().manual_seed(2026)
    prior = bt.infer.predictive(model, None, num_samples=REPLICATIONS, generator=g)
    data = prior.pop(data_site)
    kwargs = dict(
        chains=REPLICATIONS,
        num_warmup=100,
        num_samples=DRAWS,
        thin=THIN,
        generator=g,
        progress=False,
    )
    if broken_site is None:
        post = bt.infer.mcmc(
            model, chain_data={data_site: data}, kernel_kwargs={"compile": compile}, **kwargs
        )
        draws = post.draws
    else:  # the same density with one constraint's log-Jacobian left out
        density = bt.infer.ModelDensity(model, **{data_site: data[0]})
        density.chain_data = {data_site: data}
        offset = density.latent_sites[broken_site].offset

        def broken(z):
            return density.log_prob(z) - z[:, offset]  # log|d exp(u)/du| = u

        init = density.init(REPLICATIONS, g)
        result = bt.mcmc.sample(
            broken,
            init,
            kernel="nuts",
            compile=compile,
            **{k: v for k, v in kwargs.items() if k != "chains"},
        )
        draws = bt.infer.posterior.constrain_draws(density, result.samples)
    ranks = []
    for name, truth in prior.items():
        if name not in draws:
            continue
        below = (draws[name] < truth.unsqueeze(1)).sum(1)  # (replications, *shape)
        ranks.append(below.reshape(REPLICATIONS, -1))
    return torch.cat(ranks, dim=1)  # (replications, scalars)


def _assert_uniform_ranks(ranks):
    scalars = ranks.shape[1]
    counts = torch.stack(
        [torch.bincount(ranks[:, j], minlength=DRAWS // THIN + 1) for j in range(scalars)]
    )
    probs = torch.full_like(counts, 1.0, dtype=torch.float64) / (DRAWS // THIN + 1)
    assert_counts(counts, probs)


@pytest.mark.slow
@pytest.mark.statistical
@pytest.mark.parametrize("case", sorted(SBC))
def test_simulation_based_calibration(case, hmc_compile):
    model, data_site, _ = SBC[case]
    _assert_uniform_ranks(_sbc_ranks(model, data_site, compile=hmc_compile))


# Eager only: a test of the SBC check's power (a wrong density), which does not depend on
# how the kernel runs its trajectory.
@pytest.mark.slow
@pytest.mark.statistical
def test_simulation_based_calibration_rejects_a_missing_jacobian():
    model, data_site, site = SBC["normal_scale"]
    with pytest.raises(AssertionError):
        _assert_uniform_ranks(_sbc_ranks(model, data_site, broken_site=site))


# -- ADVI --------------------------------------------------------------------------------
# Correlated posterior (coordinates 0 and 1: correlation -0.91), so the mean-field
# variances 1 / precision_ii are 6x below the marginal ones.
A = torch.tensor(
    [[1.0, 0.9, 0.2], [0.9, 1.0, 0.1], [0.2, 0.1, 1.0], [1.0, 1.1, 0.0]], dtype=torch.float64
)
Y_LIN = torch.tensor([0.7, -0.3, 1.1, 0.2], dtype=torch.float64)


def gaussian_linear(a, y):
    x = bt.sample("x", D.Independent(D.Normal(torch.zeros(3), 1.0), 1))
    with bt.plate("obs", a.shape[0]):
        bt.sample("y", D.Normal(a @ x, 0.5), obs=y)


def _gaussian_posterior():
    precision = torch.eye(3) + A.T @ A / 0.25
    cov = torch.linalg.inv(precision)
    return cov @ A.T @ Y_LIN / 0.25, cov, precision


@pytest.mark.parametrize("guide", ["fullrank", "meanfield"])
def test_advi_recovers_the_gaussian_posterior(guide):
    mean, cov, precision = _gaussian_posterior()
    fit = bt.infer.advi(
        gaussian_linear,
        A,
        Y_LIN,
        guide=guide,
        num_steps=1000,
        num_samples=32,
        lr=0.05,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    target = cov if guide == "fullrank" else torch.diag(1 / precision.diagonal())
    # Stochastic optimisation leaves an error of a few % of the posterior scale; the
    # tolerance is 5 % of the largest target variance (and 5 % of its sd for the mean).
    # The wrong variants are far outside it: a mean-field guide fitting the marginal
    # variances (6x too large here), a full-rank guide without correlations, a guide
    # without its entropy term (covariance -> 0).
    scale = float(target.diagonal().max())
    torch.testing.assert_close(fit.guide.loc.detach(), mean, atol=0.05 * scale**0.5, rtol=0)
    torch.testing.assert_close(fit.guide.covariance().detach(), target, atol=0.05 * scale, rtol=0)
    wrong = torch.diag(cov.diagonal())  # marginal variances, no correlation
    assert float((wrong - target).abs().max()) > 0.5 * scale
    draws = fit.sample(500, torch.Generator().manual_seed(4), chains=2)
    assert draws["x"].shape == (2, 500, 3)
    assert fit.elbo.shape == (1000,) and bool(torch.isfinite(fit.elbo).all())


def test_advi_checkpoint_resume_equals_an_uninterrupted_fit():
    snapshots = []
    kwargs = dict(num_steps=40, lr=0.05, progress=False, checkpoint_every=20)
    full = bt.infer.advi(
        gaussian_linear,
        A,
        Y_LIN,
        generator=torch.Generator().manual_seed(5),
        checkpoint_fn=snapshots.append,
        **kwargs,
    )
    resumed = bt.infer.advi(
        gaussian_linear,
        A,
        Y_LIN,
        generator=torch.Generator().manual_seed(99),
        resume=snapshots[0],
        **kwargs,
    )
    torch.testing.assert_close(resumed.guide.loc, full.guide.loc, rtol=0, atol=0)
    torch.testing.assert_close(resumed.elbo, full.elbo, rtol=0, atol=0)


# -- MAP ---------------------------------------------------------------------------------
def test_map_finds_the_posterior_mode():
    mean, _, _ = _gaussian_posterior()
    # L-BFGS stops at a gradient tolerance: the mode to 1e-6 (the posterior sd is 0.2-0.7)
    torch.testing.assert_close(
        bt.infer.map(gaussian_linear, A, Y_LIN)["x"], mean, atol=1e-6, rtol=1e-6
    )
    # Beta(9, 16) posterior: mode 8/23 in p; with the logit Jacobian, 9/25.
    k = torch.tensor(7.0)
    torch.testing.assert_close(bt.infer.map(beta_binomial, k)["p"], torch.tensor(8 / 23))
    torch.testing.assert_close(
        bt.infer.map(beta_binomial, k, jacobian=True)["p"], torch.tensor(9 / 25)
    )


# -- predictive --------------------------------------------------------------------------
def normal_predict(y=None):
    mu = bt.sample("mu", D.Normal(0.0, 2.0))
    with bt.plate("data", 3):
        bt.sample("y", D.Normal(mu, 1.0), obs=y)


@pytest.mark.statistical
def test_prior_predictive_law():
    draws = bt.infer.predictive(
        normal_predict, None, num_samples=3000, generator=torch.Generator().manual_seed(6)
    )
    assert draws["mu"].shape == (3000,) and draws["y"].shape == (3000, 3)
    assert_ks(draws["y"][:, 0], _cdf(D.Normal(0.0, 5**0.5)))
    # y_0 - mu ~ N(0, 1), independent of mu
    assert_ks(draws["y"][:, 1] - draws["mu"], _cdf(D.Normal(0.0, 1.0)))


@pytest.mark.statistical
def test_posterior_predictive_law_from_exact_posterior_draws():
    exact = _normal_posterior()
    g = torch.Generator().manual_seed(7)
    mu = (
        exact.sample((2, 1500))
        if False
        else exact.loc + exact.scale * torch.randn(2, 1500, generator=g)
    )
    predicted = bt.infer.predictive(normal_predict, {"mu": mu}, generator=g)
    assert set(predicted) == {"y"} and predicted["y"].shape == (2, 1500, 3)
    marginal = D.Normal(exact.loc, (exact.scale**2 + 1) ** 0.5)
    assert_ks(predicted["y"][..., 2].reshape(-1), _cdf(marginal))


def test_predictive_is_reproducible_with_a_generator_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = bt.infer.predictive(
        normal_predict, None, num_samples=5, generator=torch.Generator().manual_seed(8)
    )
    b = bt.infer.predictive(
        normal_predict, None, num_samples=5, generator=torch.Generator().manual_seed(8)
    )
    torch.testing.assert_close(a["y"], b["y"])
    assert torch.equal(torch.get_rng_state(), state)


def test_predictive_of_families_vmap_cannot_draw_in_place():
    def model():
        rate = bt.sample("rate", D.HalfCauchy(1.0))
        bt.sample("t", D.Exponential(rate))

    draws = bt.infer.predictive(
        model, None, num_samples=200, generator=torch.Generator().manual_seed(9)
    )
    assert draws["t"].shape == (200,) and bool((draws["t"] > 0).all())
    assert draws["t"].unique().numel() == 200


# -- posterior object, arviz, resume -----------------------------------------------------
Y8 = torch.tensor([28.0, 8, -3, 7, -1, 1, 18, 12], dtype=torch.float64)
SIGMA8 = torch.tensor([15.0, 10, 16, 11, 9, 11, 10, 18], dtype=torch.float64)


def eight_schools(sigma, y=None):
    mu = bt.sample("mu", D.Normal(0.0, 5.0))
    tau = bt.sample("tau", D.HalfCauchy(5.0))
    with bt.plate("school", 8):
        eta = bt.sample("eta", D.Normal(0.0, 1.0))
        theta = bt.deterministic("theta", mu + tau * eta)
        bt.sample("y", D.Normal(theta, sigma), obs=y)


@pytest.fixture(scope="module")
def eight_schools_posterior(hmc_compile_module):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return bt.infer.mcmc(
            eight_schools,
            SIGMA8,
            y=Y8,
            chains=4,
            num_warmup=150,
            num_samples=100,
            generator=torch.Generator().manual_seed(10),
            progress=False,
            kernel_kwargs={"compile": hmc_compile_module},
        )
    finally:
        torch.set_default_dtype(previous)


def test_posterior_draws_summary_and_log_likelihood(eight_schools_posterior):
    post = eight_schools_posterior
    assert post.draws["tau"].shape == (4, 100) and post.draws["theta"].shape == (4, 100, 8)
    assert bool((post.draws["tau"] > 0).all())
    table = post.summary_table()
    for row in ("mu", "tau", "eta[0]", "theta[7]"):
        assert row in table
    assert "divergent transitions" in table
    assert set(post.summary()) >= {"mu", "tau", "theta[3]"}
    log_lik = post.log_likelihood()["y"]
    torch.testing.assert_close(log_lik, D.Normal(post.draws["theta"], SIGMA8).log_prob(Y8))


def test_to_arviz_supports_loo(eight_schools_posterior):
    post = eight_schools_posterior
    g = torch.Generator().manual_seed(11)
    pp = bt.infer.predictive(eight_schools, post, SIGMA8, generator=g)
    prior = bt.infer.predictive(eight_schools, None, SIGMA8, num_samples=50, generator=g)
    idata = post.to_arviz(posterior_predictive=pp, prior=prior)
    for group in (
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "posterior_predictive",
        "prior",
    ):
        assert hasattr(idata, group), group
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert "diverging" in idata.sample_stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's own FutureWarning / Pareto-k notes
        import arviz as az

        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    # elpd_loo is a sum over schools of log predictive densities: below the in-sample one
    in_sample = torch.logsumexp(post.log_likelihood()["y"].reshape(-1, 8), 0) - np.log(400)
    assert loo.elpd_loo <= float(in_sample.sum()) + 1e-9


def test_mcmc_resume_gives_the_draws_of_an_uninterrupted_run(hmc_compile):
    snapshots = []
    kwargs = dict(
        chains=3,
        num_warmup=30,
        num_samples=30,
        progress=False,
        checkpoint_every=20,
        kernel_kwargs={"compile": hmc_compile},
    )
    full = bt.infer.mcmc(
        normal_normal,
        Y_NORMAL,
        generator=torch.Generator().manual_seed(12),
        checkpoint_fn=snapshots.append,
        **kwargs,
    )
    resumed = bt.infer.mcmc(
        normal_normal,
        Y_NORMAL,
        generator=torch.Generator().manual_seed(12),
        resume=snapshots[1],
        **kwargs,
    )
    torch.testing.assert_close(resumed.draws["mu"], full.draws["mu"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kernel, hmc_compile",
    [
        pytest.param("hmc", False, id="hmc-eager"),
        pytest.param("hmc", True, id="hmc-compiled", marks=pytest.mark.compiled),
        pytest.param("chees", False, id="chees-eager"),
        pytest.param("chees", True, id="chees-compiled", marks=pytest.mark.compiled),
        pytest.param("slice", False, id="slice"),
        pytest.param("rwm", False, id="rwm"),
    ],
    indirect=["hmc_compile"],
)
def test_every_kernel_runs_on_a_model(kernel, hmc_compile):
    options = {"hmc": {"num_steps": 5, "compile": hmc_compile}, "chees": {"compile": hmc_compile}}
    post = bt.infer.mcmc(
        beta_binomial,
        torch.tensor(7.0),
        kernel=kernel,
        chains=4,
        num_warmup=60,
        num_samples=40,
        generator=torch.Generator().manual_seed(13),
        progress=False,
        kernel_kwargs=options.get(kernel),
    )
    assert post.draws["p"].shape == (4, 40)
    assert bool(((post.draws["p"] > 0) & (post.draws["p"] < 1)).all())


def test_init_from_constrained_values(hmc_compile):
    post = bt.infer.mcmc(
        beta_binomial,
        torch.tensor(7.0),
        chains=2,
        num_warmup=0,
        num_samples=5,
        init={"p": torch.tensor(0.3)},
        generator=torch.Generator().manual_seed(14),
        progress=False,
        kernel_kwargs={"compile": hmc_compile},
    )
    assert post.samples.shape == (2, 5, 1)


@pytest.mark.statistical
def test_prior_draws_of_a_discrete_observed_site_follow_their_law():
    draws = bt.infer.predictive(
        beta_binomial, None, None, num_samples=4000, generator=torch.Generator().manual_seed(15)
    )
    # k ~ Beta-Binomial(20, 2, 3)
    counts = torch.bincount(draws["k"].long(), minlength=21)
    ks = torch.arange(21.0)
    log_pmf = (
        torch.lgamma(torch.tensor(21.0))
        - torch.lgamma(ks + 1)
        - torch.lgamma(21 - ks)
        + torch.lgamma(ks + 2)
        + torch.lgamma(23 - ks)
        - torch.lgamma(torch.tensor(25.0))
        - (
            torch.lgamma(torch.tensor(2.0))
            + torch.lgamma(torch.tensor(3.0))
            - torch.lgamma(torch.tensor(5.0))
        )
    )
    assert_counts(counts, log_pmf.exp())
    assert_z(draws["p"].mean(), 0.4, draws["p"].std() / 4000**0.5)


# -- SGHMC on mini-batches ---------------------------------------------------------------
X_BIG = torch.randn(500, generator=torch.Generator().manual_seed(16), dtype=torch.float64) + 2


def normal_mean_minibatch(x):
    mu = bt.sample("mu", D.Normal(0.0, 10.0))
    with bt.plate("data", 500, subsample_size=50) as idx:
        bt.sample("x", D.Normal(mu, 1.0), obs=x[idx])


@pytest.mark.statistical
def test_sghmc_on_a_subsampled_model_targets_the_conjugate_posterior():
    post = bt.infer.sghmc(
        normal_mean_minibatch,
        X_BIG,
        chains=16,
        num_burnin=300,
        num_samples=600,
        lr=2e-3,
        friction=0.1,
        generator=torch.Generator().manual_seed(17),
        progress=False,
    )
    precision = 1 / 100 + 500
    mean, var = X_BIG.sum() / precision, 1 / precision
    assert post.draws["mu"].shape == (16, 600)
    assert_mcmc_mean(post.draws["mu"], mean)
    # No Metropolis correction: the spread carries a bias of order lr (documented); at this
    # step it is within 25 % of the exact variance, while a run that ignored the N / B
    # scale of the plate would have a variance 10x too large.
    ratio = float(post.draws["mu"].var() / var)
    assert 0.75 < ratio < 1.25, ratio


def test_predictive_with_a_gamma_prior_under_warnings_as_errors():
    def model(y=None):
        rate = bt.sample("rate", D.Gamma(2.0, 1.0))
        with bt.plate("data", 3):
            bt.sample("y", D.Poisson(rate), obs=y)

    draws = bt.infer.predictive(
        model, None, num_samples=50, generator=torch.Generator().manual_seed(18)
    )
    assert draws["rate"].shape == (50,) and bool((draws["rate"] > 0).all())
    assert draws["y"].shape == (50, 3)


def test_to_arviz_with_more_chains_than_draws(hmc_compile):
    post = bt.infer.mcmc(
        beta_binomial,
        torch.tensor(7.0),
        chains=8,
        num_warmup=10,
        num_samples=4,
        generator=torch.Generator().manual_seed(19),
        progress=False,
        kernel_kwargs={"compile": hmc_compile},
    )
    assert post.to_arviz().posterior["p"].shape == (8, 4)
