from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch.distributions import Gamma, Independent, MultivariateNormal, Normal

from bayestorch.testing import assert_ks, assert_z
from bayestorch.utils import draw, make_generator, rand_open01


def test_rand_open01_never_hits_the_endpoints(device):
    for dtype in (torch.float32, torch.float64, torch.float16):
        u = rand_open01((100_000,), generator=make_generator(0, device), device=device, dtype=dtype)
        assert u.device.type == device.type and u.dtype == dtype
        assert (u > 0).all() and (u < 1).all()
        assert torch.isfinite(torch.log(-torch.log(u.float()))).all()


@pytest.mark.statistical
def test_rand_open01_is_uniform():
    assert_ks(rand_open01((20_000,), generator=make_generator(1)).double(), stats.uniform.cdf)


@pytest.mark.statistical
@pytest.mark.parametrize(
    "family",
    ["normal", "independent", "mvn", "gamma"],
)
def test_draw_targets_the_distribution(family):
    n = 20_000
    if family == "normal":
        dist, marginal = Normal(torch.tensor(1.5), torch.tensor(2.0)), stats.norm(1.5, 2.0)
    elif family == "independent":
        dist, marginal = (
            Independent(Normal(torch.zeros(3), torch.ones(3) * 0.5), 1),
            stats.norm(0, 0.5),
        )
    elif family == "mvn":
        cov = torch.tensor([[2.0, 0.6], [0.6, 1.0]])
        dist, marginal = (
            MultivariateNormal(torch.tensor([0.0, 1.0]), cov),
            stats.norm(0.0, 2.0**0.5),
        )
    else:
        dist, marginal = (
            Gamma(torch.tensor(2.0), torch.tensor(3.0)),
            stats.gamma(2.0, scale=1 / 3.0),
        )
    x = draw(dist, (n,), make_generator(2))
    assert x.shape == (n, *dist.batch_shape, *dist.event_shape)
    first = x.reshape(n, -1)[:, 0]
    assert_ks(first.double(), marginal.cdf)
    if family == "mvn":
        rho = 0.6 / 2**0.5
        assert_z(torch.corrcoef(x.T)[0, 1], torch.tensor(rho), torch.tensor((1 - rho**2) / n**0.5))


def test_draw_is_reproducible_and_leaves_global_rng_alone(device):
    loc = torch.zeros(4, device=device, requires_grad=True)
    for dist in (Normal(loc, 1.0), Gamma(torch.ones(4, device=device), 1.0)):
        before = torch.random.get_rng_state()
        a = draw(dist, (3,), make_generator(5, device))
        b = draw(dist, (3,), make_generator(5, device))
        assert torch.equal(torch.random.get_rng_state(), before)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Reparameterised: gradients reach the parameters.
    draw(Normal(loc, 1.0), (3,), make_generator(5, device)).sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 3.0))


def _splitmix64(state: int) -> int:
    mask = (1 << 64) - 1
    z = state & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_counter_uniforms_are_splitmix64_bits_and_uniform():
    from bayestorch.utils.random import counter_uniforms, rand_key

    key = rand_key(torch.Generator().manual_seed(0))
    counter = torch.arange(200_000)
    u = counter_uniforms(key, counter, torch.float64)
    # The top 52 bits of SplitMix64(key + i * golden), as (m + 1/2) 2^-52: exact reference.
    for i in (0, 1, 7, 123_456):
        bits = _splitmix64(int(key) + i * 0x9E3779B97F4A7C15) >> 12
        assert float(u[i]) == (bits + 0.5) * 2.0**-52
    assert 0.0 < float(u.min()) and float(u.max()) < 1.0
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3  # failure rate 1e-3
    u32 = counter_uniforms(key, counter[:1000], torch.float32)
    assert u32.dtype == torch.float32 and float(u32.max()) < 1.0 and float(u32.min()) > 0.0
