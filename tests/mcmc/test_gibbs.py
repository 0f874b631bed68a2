"""Gibbs kernel: invariance on a bivariate normal (both scans), broken conditional, errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from bayestorch.mcmc.gibbs import Gibbs, GibbsInfo
from bayestorch.testing import assert_ks, run_kernel

pytestmark = pytest.mark.statistical

RHO = 0.9
CONDITIONAL_SD = math.sqrt(1 - RHO**2)


def conditional(i, sd=CONDITIONAL_SD):
    """x_i | x_{1-i} ~ N(rho x_{1-i}, 1 - rho^2) for a standard bivariate normal."""

    def sample(x, generator):
        noise = torch.randn(x.shape[0], 1, generator=generator, device=x.device, dtype=x.dtype)
        return RHO * x[:, 1 - i, None] + sd * noise

    return sample


def exact(chains, generator, device=None):
    z = torch.randn(chains, 2, generator=generator, device=device, dtype=torch.float64)
    return torch.stack([z[:, 0], RHO * z[:, 0] + math.sqrt(1 - RHO**2) * z[:, 1]], 1)


def check_bivariate(x, failure_rate=1e-3):
    # Marginals N(0, 1); the difference x0 - x1 ~ N(0, 2 (1 - rho)) tests the joint.
    rate = failure_rate / 3
    assert_ks(x[:, 0], stats.norm().cdf, rate)
    assert_ks(x[:, 1], stats.norm().cdf, rate)
    assert_ks((x[:, 0] - x[:, 1]) / math.sqrt(2 * (1 - RHO)), stats.norm().cdf, rate)


@pytest.mark.parametrize("scan", ["systematic", "random"])
def test_invariance_on_bivariate_normal(scan, device):
    g = torch.Generator(device=device).manual_seed(0)
    kernel = Gibbs([[0], slice(1, 2)], [conditional(0), conditional(1)], scan=scan)
    state, info = run_kernel(kernel, exact(4000, g, device), 5, g)
    assert isinstance(info, GibbsInfo) and info.block.shape == (4000,)
    if scan == "random":
        assert set(info.block.unique().tolist()) == {0, 1}
    else:
        assert bool((info.block == -1).all())
    assert state.position.device.type == device.type
    check_bivariate(state.position)


def test_convergence_from_a_bad_start():
    g = torch.Generator().manual_seed(1)
    kernel = Gibbs([[0], [1]], [conditional(0), conditional(1)])
    state, _ = run_kernel(kernel, torch.full((4000, 2), 5.0, dtype=torch.float64), 60, g)
    check_bivariate(state.position)


def test_wrong_conditional_variance_fails():
    # The broken variant: conditionals drawn with the marginal variance 1 instead of 1 - rho^2.
    g = torch.Generator().manual_seed(2)
    kernel = Gibbs([[0], [1]], [conditional(0, 1.0), conditional(1, 1.0)])
    state, _ = run_kernel(kernel, exact(4000, g), 5, g)
    with pytest.raises(AssertionError, match="Kolmogorov"):
        check_bivariate(state.position)


def test_log_prob_is_reported_when_given():
    g = torch.Generator().manual_seed(3)
    log_prob = lambda x: -0.5 * (x**2).sum(-1)  # noqa: E731
    kernel = Gibbs([[0], [1]], [conditional(0), conditional(1)], log_prob)
    state, _ = run_kernel(kernel, torch.zeros(4, 2), 2, g)
    torch.testing.assert_close(state.log_prob, log_prob(state.position))
    assert kernel.state_dict() == {}


def test_bad_input():
    c = [conditional(0), conditional(1)]
    with pytest.raises(ValueError, match="one conditional sampler per block"):
        Gibbs([[0]], c)
    with pytest.raises(ValueError, match="scan"):
        Gibbs([[0], [1]], c, scan="sweep")
    with pytest.raises(ValueError, match="overlaps"):
        Gibbs([[0, 1], [1]], c).init(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="outside"):
        Gibbs([[0], [2]], c).init(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="callable"):
        Gibbs([[0], [1]], [c[0], 3])
    kernel = Gibbs([[0], [1]], [lambda x, g: x, c[1]])
    with pytest.raises(ValueError, match=r"conditional sampler 0 must return .* \(2, 1\)"):
        kernel.step(kernel.init(torch.zeros(2, 2)))
