"""Slice sampler: invariance (KS) per coordinate and along random directions, widths, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import bayestorch.mcmc.slice as slice_module
from bayestorch.mcmc.slice import SliceInfo, SliceSampler
from bayestorch.testing import assert_ks, run_kernel
from bayestorch.testing.targets import Banana

pytestmark = pytest.mark.statistical


def gamma_log_prob(x):
    """Gamma(3, 1): NaN (log of a negative number) off the support, as user code gives."""
    return 2.0 * x[:, 0].log() - x[:, 0]


def exact_gamma(chains, generator, device=None):
    u = torch.rand(chains, 3, generator=generator, device=device, dtype=torch.float64)
    return -torch.log1p(-u).sum(1, keepdim=True)


RHO = 0.9
PRECISION = torch.linalg.inv(torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64))


def gauss_log_prob(x):
    return -0.5 * ((x @ PRECISION.to(x)) * x).sum(-1)


def exact_gauss(chains, generator, device=None):
    z = torch.randn(chains, 2, generator=generator, device=device, dtype=torch.float64)
    return torch.stack([z[:, 0], RHO * z[:, 0] + math.sqrt(1 - RHO**2) * z[:, 1]], 1)


def check_gauss(x, failure_rate=1e-3):
    rate = failure_rate / 2
    assert_ks(x[:, 0], stats.norm().cdf, rate)
    assert_ks((x[:, 0] - x[:, 1]) / math.sqrt(2 * (1 - RHO)), stats.norm().cdf, rate)


@pytest.mark.parametrize("width", [0.1, 3.0, 100.0])
def test_gamma_invariance_for_any_width(width, device):
    g = torch.Generator(device=device).manual_seed(0)
    kernel = SliceSampler(gamma_log_prob, width=width)
    state, info = run_kernel(kernel, exact_gamma(3000, g, device), 3, g)
    assert isinstance(info, SliceInfo) and info.num_evaluations.shape == (3000,)
    assert not bool(info.is_exhausted.any())
    assert state.position.device.type == device.type
    assert_ks(state.position, stats.gamma(3.0).cdf, failure_rate=3e-4)


@pytest.mark.parametrize("method", ["coordinate", "random_direction"])
def test_correlated_gaussian_invariance(method):
    g = torch.Generator().manual_seed(1)
    kernel = SliceSampler(gauss_log_prob, width=torch.tensor([1.0, 2.0]), method=method)
    state, _ = run_kernel(kernel, exact_gauss(3000, g), 3, g)
    check_gauss(state.position)


def test_random_direction_converges_from_a_bad_start():
    g = torch.Generator().manual_seed(2)
    kernel = SliceSampler(gauss_log_prob, width=2.0, method="random_direction")
    state, _ = run_kernel(kernel, torch.full((3000, 2), 4.0, dtype=torch.float64), 60, g)
    check_gauss(state.position)


def test_accepting_without_the_slice_test_fails(monkeypatch):
    # The broken variant: every point of the interval is taken as inside the slice.
    monkeypatch.setattr(
        slice_module, "_in_slice", lambda lp, level: torch.ones_like(lp, dtype=torch.bool)
    )
    g = torch.Generator().manual_seed(3)
    state, _ = run_kernel(SliceSampler(gamma_log_prob, width=1.0), exact_gamma(3000, g), 3, g)
    with pytest.raises(AssertionError, match="Kolmogorov"):
        assert_ks(state.position, stats.gamma(3.0).cdf, failure_rate=3e-4)


def test_evaluation_counts_and_exhaustion():
    g = torch.Generator().manual_seed(4)
    kernel = SliceSampler(lambda x: -0.5 * (x**2).sum(-1), width=1.0, max_steps_out=1)
    state, info = run_kernel(kernel, torch.zeros(100, 3), 1, g)
    # m = 1: no stepping out; at least one shrinkage evaluation per coordinate.
    assert bool((info.num_evaluations >= 3).all())
    nan_kernel = SliceSampler(lambda x: x.sum(-1) * 0, max_shrink=5)
    state = nan_kernel.init(torch.zeros(4, 1))
    nan_kernel.log_prob_fn = lambda x: torch.where(x.sum(-1) == 0, 0.0, math.nan)
    new, info = nan_kernel.step(state, g)
    assert bool(info.is_exhausted.all()) and torch.equal(new.position, state.position)


def test_same_generator_same_draws():
    def go():
        g = torch.Generator().manual_seed(5)
        return run_kernel(
            SliceSampler(gauss_log_prob, method="random_direction"),
            torch.zeros(4, 2, dtype=torch.float64),
            10,
            g,
        )[0].position

    assert torch.equal(go(), go())


def test_bad_input():
    with pytest.raises(ValueError, match="width"):
        SliceSampler(gauss_log_prob, width=0.0)
    with pytest.raises(ValueError, match="method"):
        SliceSampler(gauss_log_prob, method="hit_and_run")
    with pytest.raises(ValueError, match="max_steps_out"):
        SliceSampler(gauss_log_prob, max_steps_out=0)
    with pytest.raises(ValueError, match="does not match dim"):
        SliceSampler(gauss_log_prob, width=torch.ones(3)).init(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="not finite at the initial position"):
        SliceSampler(gamma_log_prob).init(-torch.ones(2, 1))


@pytest.mark.parametrize("method", ["coordinate", "random_direction"])
def test_banana_invariance(method):
    # The shared banana target; whitened draws are two independent N(0, 1).
    banana = Banana(curvature=1.0)
    g = torch.Generator().manual_seed(6)
    kernel = SliceSampler(banana.log_prob, width=1.5, method=method)
    state, _ = run_kernel(kernel, banana.sample(3000, g), 3, g)
    white = banana.whiten(state.position)
    assert_ks(white[:, 0], stats.norm().cdf, failure_rate=5e-4)
    assert_ks(white[:, 1], stats.norm().cdf, failure_rate=5e-4)


@pytest.mark.parametrize("method", ["coordinate", "random_direction"])
def test_warmup_adapts_the_width_to_the_scale(method):
    sd = torch.tensor([0.01, 100.0], dtype=torch.float64)
    kernel = SliceSampler(lambda x: -0.5 * ((x / sd) ** 2).sum(-1), width=1.0, method=method)
    g = torch.Generator().manual_seed(7)
    state = kernel.init(torch.zeros(8, 2, dtype=torch.float64))
    adapt = kernel.warmup_init(state, 150)
    for i in range(150):
        state, info = kernel.step(state, g)
        adapt = kernel.warmup_update(adapt, state, info, i)
    kernel.warmup_finalize(adapt)
    assert kernel.width.shape == (2,)
    ratio = (kernel.width / sd).log10()
    assert float(ratio.max() - ratio.min()) < 1.0  # both widths ~ their coordinate's scale
    fresh = SliceSampler(lambda x: x.sum(-1))
    fresh.load_state_dict(kernel.state_dict())
    torch.testing.assert_close(fresh.width, kernel.width, check_dtype=False)
