"""HMC and NUTS target the right distribution: invariance, accuracy, conjugacy, funnels.

Statistical tests follow the contract of tests/conftest.py: KS p-values and MCSE z-scores
against declared failure rates, fixed seeds. Each invariance test has a sibling that shows a
broken kernel (no Metropolis correction; a non-reversible integrator) fails it.
"""

import math

import pytest
import torch
from scipy import stats

import bayestorch.mcmc.hmc as hmc_module
import bayestorch.mcmc.integrators as integrators
import bayestorch.mcmc.nuts as nuts_module
from bayestorch.mcmc import HMC, NUTS, sample
from bayestorch.testing import assert_ks, assert_mcmc_mean, ks_pvalue, run_kernel
from bayestorch.testing.targets import (
    Banana,
    BimodalMixture,
    Funnel,
    GaussianTarget,
    ill_conditioned_gaussian,
)
from bayestorch.utils.autograd import log_prob_and_grad

pytestmark = pytest.mark.statistical

F64 = torch.float64


def correlated_2d() -> GaussianTarget:
    scale = torch.tensor([1.0, 2.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.95], [0.95, 1.0]], dtype=F64) * torch.outer(scale, scale)
    return GaussianTarget(torch.tensor([1.0, -2.0], dtype=F64), cov)


KERNELS = {
    "hmc": lambda lp, eps, compile=False: HMC(
        lp, num_steps=6, step_size=eps, step_size_jitter=0.2, compile=compile
    ),
    "nuts": lambda lp, eps, compile=False: NUTS(
        lp, step_size=eps, max_tree_depth=6, compile=compile
    ),
}


def _invariance_pvalues(kind, target_name, num_chains=3000, steps=3, seed=0, compile=False):
    g = torch.Generator().manual_seed(seed)
    if target_name == "gaussian":
        target = correlated_2d()
        x0, eps = target.sample(num_chains, g), 0.6
        whiten = lambda x: (x - target.mean) @ torch.linalg.inv(target.scale_tril).T  # noqa: E731
        cdfs = [stats.norm.cdf, stats.norm.cdf]
    elif target_name == "bimodal":
        target = BimodalMixture()
        x0, eps = target.sample(num_chains, g), 0.8
        whiten, cdfs = (lambda x: x), [target.cdf]
    else:
        target = Banana()
        x0, eps = target.sample(num_chains, g), 0.5
        whiten, cdfs = target.whiten, [stats.norm.cdf, stats.norm.cdf]
    kernel = KERNELS[kind](target.log_prob, eps, compile)
    state, _ = run_kernel(kernel, x0, steps, g)
    z = whiten(state.position)
    return [ks_pvalue(z[:, i], cdf) for i, cdf in enumerate(cdfs)], z, cdfs


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
@pytest.mark.parametrize("target_name", ["gaussian", "bimodal", "banana"])
def test_invariance_from_exact_draws(kind, target_name, hmc_compile):
    _, z, cdfs = _invariance_pvalues(kind, target_name, compile=hmc_compile)
    for i, cdf in enumerate(cdfs):
        assert_ks(z[:, i], cdf, failure_rate=1e-3 / len(cdfs))


def _always_accept(log_accept_ratio, current, proposed, generator=None):
    ones = torch.ones_like(log_accept_ratio)
    return proposed, ones.bool(), ones


def _symplectic_euler(
    state, log_prob_fn, step_size, inverse_mass_matrix, dense, value_and_grad=None
):
    # Volume preserving but not time-reversible: Metropolis cannot correct it.
    eps = step_size.unsqueeze(-1) if step_size.dim() > 0 else step_size
    momentum = state.momentum + eps * state.log_prob_grad
    position = state.position + eps * integrators.velocity(momentum, inverse_mass_matrix, dense)
    log_prob, grad = log_prob_and_grad(log_prob_fn, position)
    return integrators.IntegratorState(position, momentum, log_prob, grad)


# Eager only: the power of the invariance test does not depend on the path, and the broken
# variants are made by patching module internals (mh_accept, leapfrog) that the compiled
# path need not call.
@pytest.mark.parametrize("kind, broken", [("hmc", "no_metropolis"), ("nuts", "irreversible")])
def test_invariance_rejects_broken_kernels(kind, broken, monkeypatch):
    if broken == "no_metropolis":
        monkeypatch.setattr(hmc_module, "mh_accept", _always_accept)
    else:
        monkeypatch.setattr(integrators, "leapfrog", _symplectic_euler)
        monkeypatch.setattr(nuts_module, "leapfrog", _symplectic_euler)
    pvalues, _, _ = _invariance_pvalues(kind, "gaussian")
    assert min(pvalues) < 1e-3 / 2, pvalues


def _draws(kind, target, chains, warmup, draws, seed, **kw):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(chains, target.dim, generator=g, dtype=F64)
    kernel = "hmc" if kind == "hmc" else "nuts"
    if kind == "hmc":
        kw.setdefault("num_steps", 12)
        kw.setdefault("step_size_jitter", 0.3)
    result = sample(
        target.log_prob,
        x0,
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        generator=g,
        progress=False,
        **kw,
    )
    return result


def _assert_moments(result, target):
    x = result.samples
    assert_mcmc_mean(x, target.mean, failure_rate=5e-4)
    # Variance: the mean of (x - mu)^2, with its own MCSE.
    assert_mcmc_mean((x - target.mean) ** 2, target.variance, failure_rate=5e-4)


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
@pytest.mark.parametrize("chains", [1, 16])
def test_correlated_gaussian_moments(kind, chains, hmc_compile):
    target = correlated_2d()
    draws = 1000 if chains == 1 else 200
    result = _draws(
        kind, target, chains, 200, draws, seed=3, mass_matrix="dense", compile=hmc_compile
    )
    assert int(result.num_divergent.sum()) == 0
    _assert_moments(result, target)


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
@pytest.mark.parametrize("chains", [1, 8])
def test_ill_conditioned_gaussian_moments(kind, chains, hmc_compile):
    target = ill_conditioned_gaussian(dim=100, condition_number=1e4)
    # One chain needs the longer run: fixed-length HMC on a whitened Gaussian is close to
    # periodic, and the MCSE of the second moment is only trustworthy with enough draws.
    draws = 1000 if chains == 1 else 150
    warmup = 400 if chains == 1 else 300
    result = _draws(kind, target, chains, warmup, draws, seed=4, compile=hmc_compile)
    assert int(result.num_divergent.sum()) == 0
    _assert_moments(result, target)
    # Windowed adaptation found the scales: adapted variances track the true ones.
    ratio = result.kernel.inverse_mass_matrix / target.variance
    assert float(ratio.log().abs().max()) < math.log(2.0)


def test_normal_normal_conjugate_posterior(hmc_compile):
    g = torch.Generator().manual_seed(5)
    sigma, mu0, tau0 = 2.0, 1.0, 3.0
    y = torch.randn(20, generator=g, dtype=F64) * sigma + 0.7
    post_var = 1.0 / (1.0 / tau0**2 + len(y) / sigma**2)
    post_mean = post_var * (mu0 / tau0**2 + y.sum() / sigma**2)

    def log_prob(theta):
        t = theta[:, :1]
        return -0.5 * ((t - mu0) / tau0).squeeze(-1) ** 2 - 0.5 * (((y - t) / sigma) ** 2).sum(-1)

    result = sample(
        log_prob,
        torch.zeros(8, 1, dtype=F64),
        "nuts",
        num_warmup=300,
        num_samples=500,
        generator=g,
        progress=False,
        compile=hmc_compile,
    )
    assert_mcmc_mean(result.samples, post_mean.reshape(1), failure_rate=5e-4)
    assert_mcmc_mean((result.samples - post_mean) ** 2, torch.tensor([post_var]), failure_rate=5e-4)


def test_centred_funnel_diverges_non_centred_does_not(hmc_compile):
    def divergences(centred):
        g = torch.Generator().manual_seed(6)
        target = Funnel(dim=10, centred=centred)
        x0 = torch.randn(4, 10, generator=g, dtype=F64) * 0.5
        result = sample(
            target.log_prob,
            x0,
            "nuts",
            num_warmup=150,
            num_samples=150,
            generator=g,
            progress=False,
            max_tree_depth=6,
            compile=hmc_compile,
        )
        warmup = int(result.warmup_stats["is_divergent"].sum())
        return warmup + int(result.num_divergent.sum()), int(result.num_divergent.sum())

    # Whole runs (the centred funnel's divergences come mostly while the step size adapts:
    # 27 vs 8 here, all of the non-centred ones in the first iterations); none after warm-up
    # for the non-centred one.
    centred_total, _ = divergences(True)
    non_centred_total, non_centred_sampling = divergences(False)
    assert centred_total > 2 * non_centred_total
    assert non_centred_sampling == 0
