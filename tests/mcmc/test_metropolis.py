"""Random-walk and independence Metropolis–Hastings: invariance (KS), adaptation, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Normal

from bayestorch.mcmc.metropolis import (
    IMHState,
    IndependentMetropolis,
    MetropolisInfo,
    RandomWalkMetropolis,
    RWMState,
    imh_init,
    imh_step,
    rwm_step,
)
from bayestorch.mcmc.proposal import mh_accept
from bayestorch.mcmc.sample import sample
from bayestorch.testing import assert_ks, assert_mcmc_mean, run_kernel
from bayestorch.testing.targets import Banana

pytestmark = pytest.mark.statistical


def gamma_log_prob(x):
    """Gamma(3, 1) in 1-d: (chains, 1) -> (chains,), -inf off the support."""
    x = x[:, 0]
    return torch.where(x > 0, 2.0 * x.clamp(min=1e-30).log() - x, -math.inf)


def exact_gamma(chains, generator, device=None):
    # Gamma(3, 1) = sum of three Exp(1): exact draws from the generator.
    u = torch.rand(chains, 3, generator=generator, device=device, dtype=torch.float64)
    return -torch.log1p(-u).sum(1, keepdim=True)


def test_rwm_leaves_gamma_invariant(device):
    # Chains started at exact draws stay exact after any number of steps.
    g = torch.Generator(device=device).manual_seed(0)
    kernel = RandomWalkMetropolis(gamma_log_prob, scale=2.0)
    state, info = run_kernel(kernel, exact_gamma(4000, g, device), 10, g)
    assert state.position.device.type == device.type
    assert info.accept_prob.shape == (4000,) and info.is_accepted.dtype == torch.bool
    assert_ks(state.position, stats.gamma(3.0).cdf)


def test_asymmetric_random_walk_without_hastings_correction_fails():
    # The broken variant: a drifting proposal x' = x + 2 (eps + 0.5) accepted with the
    # symmetric Metropolis ratio.
    g = torch.Generator().manual_seed(1)
    state = RWMState(x := exact_gamma(4000, g), gamma_log_prob(x))
    for _ in range(10):
        proposed = state.position + 2.0 * (torch.randn(4000, 1, generator=g, dtype=x.dtype) + 0.5)
        new = RWMState(proposed, gamma_log_prob(proposed))
        state, _, _ = mh_accept(new.log_prob - state.log_prob, state, new, g)
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(state.position, stats.gamma(3.0).cdf)


def test_imh_with_asymmetric_proposal_is_exact_and_fails_without_correction(device):
    g = torch.Generator(device=device).manual_seed(2)
    kernel = IndependentMetropolis(
        gamma_log_prob,
        Normal(torch.tensor(4.0, device=device), torch.tensor(3.0, device=device)),
    )
    start = exact_gamma(4000, g, device)
    state, info = run_kernel(kernel, start, 5, g)
    assert isinstance(state, IMHState) and isinstance(info, MetropolisInfo)
    assert_ks(state.position, stats.gamma(3.0).cdf)
    # Broken: the same kernel with log q dropped from the ratio (no Hastings correction).
    zero = lambda x: x.new_zeros(x.shape[0])  # noqa: E731
    broken = imh_init(start, gamma_log_prob, zero)
    for _ in range(5):
        broken, _ = imh_step(broken, gamma_log_prob, kernel.proposal_sample_fn, zero, generator=g)
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(broken.position, stats.gamma(3.0).cdf)


def test_imh_with_a_sample_log_prob_pair():
    g = torch.Generator().manual_seed(3)
    proposal = (
        lambda n, gen: 2.0 * torch.randn(n, 2, generator=gen, dtype=torch.float64),
        lambda x: Normal(0.0, 2.0).log_prob(x).sum(-1),
    )
    kernel = IndependentMetropolis(lambda x: -0.5 * (x**2).sum(-1), proposal)
    start = torch.randn(3000, 2, generator=g, dtype=torch.float64)
    state, _ = run_kernel(kernel, start, 5, g)
    assert_ks(state.position[:, 0], stats.norm().cdf, failure_rate=5e-4)
    assert_ks(state.position.sum(1) / math.sqrt(2.0), stats.norm().cdf, failure_rate=5e-4)


def test_rwm_warmup_tunes_toward_target_and_estimates_the_mean():
    cov = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
    precision = torch.linalg.inv(cov)

    def log_prob(x):
        return -0.5 * ((x @ precision) * x).sum(-1)

    kernel = RandomWalkMetropolis(log_prob, scale=0.05)
    g = torch.Generator().manual_seed(4)
    result = sample(
        None,
        torch.zeros(8, 2, dtype=torch.float64),
        kernel,
        num_warmup=300,
        num_samples=1000,
        generator=g,
        progress=False,
    )
    assert kernel.scale.shape == () and float(kernel.scale) > 0.5  # grew from 0.05
    rate = float(result.stats["accept_prob"].mean())
    assert 0.15 < rate < 0.35, rate  # target 0.234 in 2-d
    assert_mcmc_mean(result.samples, torch.zeros(2))
    # The tuned scale is a buffer: it resumes through state_dict.
    fresh = RandomWalkMetropolis(log_prob)
    fresh.load_state_dict(kernel.state_dict())
    torch.testing.assert_close(fresh.scale, kernel.scale, check_dtype=False)


def test_rwm_per_chain_adaptation_follows_each_chain():
    sd = torch.tensor([0.01, 1.0, 100.0], dtype=torch.float64)  # chain i targets N(0, sd_i^2)
    kernel = RandomWalkMetropolis(
        lambda x: -0.5 * ((x / sd[:, None]) ** 2).sum(-1), adapt_per_chain=True
    )
    g = torch.Generator().manual_seed(5)
    state = kernel.init(torch.zeros(3, 1, dtype=torch.float64))
    adapt = kernel.warmup_init(state, 400)
    for i in range(400):
        state, info = kernel.step(state, g)
        adapt = kernel.warmup_update(adapt, state, info, i)
    kernel.warmup_finalize(adapt)
    assert kernel.scale.shape == (3, 1)
    ratios = (kernel.scale[:, 0] / sd).log10()
    assert float(ratios.max() - ratios.min()) < 1.0  # each scale ~ its chain's sd


def test_rwm_per_coordinate_scale_and_functional_core():
    g = torch.Generator().manual_seed(6)
    state = RWMState(torch.zeros(5, 3), torch.zeros(5))
    new, info = rwm_step(
        state, lambda x: x.new_zeros(x.shape[0]), scale=torch.tensor([0.0, 1, 0]), generator=g
    )
    assert bool(info.is_accepted.all())  # flat target: always accepted
    assert bool((new.position[:, [0, 2]] == 0).all()) and bool((new.position[:, 1] != 0).all())


def test_same_generator_same_draws():
    def go():
        kernel = RandomWalkMetropolis(lambda x: -0.5 * (x**2).sum(-1))
        g = torch.Generator().manual_seed(7)
        return run_kernel(kernel, torch.zeros(4, 2), 20, g)[0].position

    assert torch.equal(go(), go())


def test_bad_input():
    log_prob = lambda x: -0.5 * (x**2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="scale"):
        RandomWalkMetropolis(log_prob, scale=-1.0)
    with pytest.raises(ValueError, match="target_accept"):
        RandomWalkMetropolis(log_prob, target_accept=1.5)
    with pytest.raises(ValueError, match=r"\(chains, dim\)"):
        RandomWalkMetropolis(log_prob).init(torch.zeros(3))
    with pytest.raises(ValueError, match="does not broadcast"):
        RandomWalkMetropolis(log_prob, scale=torch.ones(3)).init(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="shape \\(chains,\\)"):
        RandomWalkMetropolis(lambda x: x).init(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="not finite at the initial position"):
        RandomWalkMetropolis(gamma_log_prob).init(-torch.ones(4, 1))
    with pytest.raises(TypeError, match="proposal must be"):
        IndependentMetropolis(log_prob, proposal=3)
    with pytest.raises(ValueError, match="proposal must draw positions"):
        kernel = IndependentMetropolis(log_prob, Normal(0.0, 1.0))
        kernel.step(kernel.init(torch.zeros(4, 2)))


def test_rwm_and_imh_on_the_banana():
    banana = Banana(curvature=1.0)
    g = torch.Generator().manual_seed(8)
    proposal = (
        lambda n, gen: (
            torch.randn(n, 2, generator=gen, dtype=torch.float64)
            * torch.tensor([1.5, 3.0], dtype=torch.float64)
        ),
        lambda x: Normal(0.0, torch.tensor([1.5, 3.0], dtype=torch.float64)).log_prob(x).sum(-1),
    )
    for kernel in [
        RandomWalkMetropolis(banana.log_prob, scale=1.0),
        IndependentMetropolis(banana.log_prob, proposal),
    ]:
        state, _ = run_kernel(kernel, banana.sample(3000, g), 5, g)
        white = banana.whiten(state.position)
        assert_ks(white[:, 0], stats.norm().cdf, failure_rate=2.5e-4)
        assert_ks(white[:, 1], stats.norm().cdf, failure_rate=2.5e-4)


def test_state_dict_state_and_generator_resume_identically():
    def log_prob(x):
        return -0.5 * (x**2).sum(-1)

    kernel = RandomWalkMetropolis(log_prob, adapt_per_chain=True)
    g = torch.Generator().manual_seed(9)
    state = kernel.init(torch.zeros(4, 3))
    adapt = kernel.warmup_init(state, 20)
    for i in range(20):
        state, info = kernel.step(state, g)
        adapt = kernel.warmup_update(adapt, state, info, i)
    kernel.warmup_finalize(adapt)
    saved, rng = kernel.state_dict(), g.get_state()
    first, _ = run_from(kernel, state, 10, g)
    fresh = RandomWalkMetropolis(log_prob)
    fresh.load_state_dict(saved)
    assert fresh.scale.shape == (4, 1)
    second, _ = run_from(fresh, state, 10, torch.Generator().set_state(rng))
    assert torch.equal(first.position, second.position)


def run_from(kernel, state, num_steps, generator):
    for _ in range(num_steps):
        state, info = kernel.step(state, generator)
    return state, info
