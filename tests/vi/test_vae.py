from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bayestorch.testing import assert_z
from bayestorch.vi import VAE


def _data(device, n=16, d=10, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.3, device=device), generator=g)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_device_and_gradients(device, likelihood):
    model = VAE(10, 3, hidden_sizes=(16,), likelihood=likelihood).to(device)
    x = _data(device)
    g = torch.Generator(device=device).manual_seed(1)
    bound = model.elbo(x, num_samples=2, generator=g)
    assert bound.shape == (16,) and bound.device.type == device.type
    assert model.iwae_bound(x, 5, chunk_size=2, generator=g).shape == (16,)
    (-bound.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert model.sample(4, generator=g).shape == (4, 10)
    assert model.sample(4, generator=g, mean=False).shape == (4, 10)
    assert model.reconstruct(x).shape == (16, 10)


def test_same_generator_same_result(device):
    model = VAE(10, 2, hidden_sizes=(8,)).to(device)
    x = _data(device)
    first = model.iwae_bound(x, 7, generator=torch.Generator(device=device).manual_seed(3))
    second = model.iwae_bound(x, 7, generator=torch.Generator(device=device).manual_seed(3))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_float64(device):
    model = VAE(10, 2, hidden_sizes=(8,)).to(device=device, dtype=torch.float64)
    x = _data(device).double()
    assert model.elbo(x).dtype == torch.float64


@pytest.mark.statistical
def test_analytic_and_monte_carlo_kl_agree(device):
    torch.manual_seed(0)
    model = VAE(10, 3, hidden_sizes=(16,)).to(device)
    x = _data(device, n=1).expand(3000, 10)
    with torch.no_grad():
        exact_kl = model.elbo(
            x, num_samples=1, generator=torch.Generator(device=device).manual_seed(1)
        )
        mc = model.elbo(
            x, analytic_kl=False, generator=torch.Generator(device=device).manual_seed(2)
        )
        # Same noise for the likelihood term, so analytic minus MC is the KL estimation error.
        model_kl = model.elbo(
            x, analytic_kl=False, generator=torch.Generator(device=device).manual_seed(1)
        )
    diff = (model_kl - exact_kl).double()
    assert_z(
        diff.mean(),
        torch.zeros((), dtype=torch.float64, device=device),
        diff.std() / math.sqrt(len(diff)),
    )
    assert_z(mc.double().mean(), exact_kl.double().mean(), mc.double().std() / math.sqrt(len(mc)))


def test_custom_encoder_decoder():
    encoder = nn.Sequential(nn.Linear(10, 6))
    decoder = nn.Sequential(nn.Linear(3, 10))
    model = VAE(10, 3, encoder=encoder, decoder=decoder)
    assert model.elbo(_data("cpu")).shape == (16,)


def test_clear_errors():
    model = VAE(10, 3, hidden_sizes=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 10\)"):
        model.elbo(torch.zeros(4, 9))
    bad = VAE(10, 3, encoder=nn.Linear(10, 5))
    with pytest.raises(ValueError, match="encoder must output"):
        bad.elbo(torch.zeros(4, 10))
    with pytest.raises(ValueError, match="likelihood must be"):
        VAE(10, 3, likelihood="poisson")


def test_generator_on_wrong_device_is_named():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to put the generator on another device")
    model = VAE(10, 3, hidden_sizes=(8,)).to("cuda")
    with pytest.raises(ValueError, match="generator is on cpu"):
        model.elbo(_data("cuda"), generator=torch.Generator())


def test_state_dict_round_trip():
    model = VAE(10, 2, hidden_sizes=(8,), likelihood="gaussian")
    clone = VAE(10, 2, hidden_sizes=(8,), likelihood="gaussian")
    clone.load_state_dict(model.state_dict())
    x = torch.rand(5, 10)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(model.elbo(x, generator=g()), clone.elbo(x, generator=g()))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("num_samples", [1, 3])
def test_fast_elbo_equals_the_generic_estimator(device, likelihood, num_samples):
    """VAE.elbo's written-out path is bt.vi.elbo with the same draws, values and gradients."""
    from bayestorch.vi import elbo

    model = VAE(10, 3, hidden_sizes=(8,), likelihood=likelihood).to(
        device=device, dtype=torch.float64
    )
    x = _data(device).double()
    g = lambda: torch.Generator(device=device).manual_seed(4)  # noqa: E731
    fast = model.elbo(x, num_samples=num_samples, generator=g())
    generic = elbo(
        lambda z: model.decode(z).log_prob(x),
        model.encode(x),
        model.prior(),
        num_samples=num_samples,
        analytic_kl=True,
        generator=g(),
    )
    torch.testing.assert_close(fast, generic)
    grads_fast = torch.autograd.grad(fast.sum(), list(model.parameters()))
    grads_generic = torch.autograd.grad(generic.sum(), list(model.parameters()))
    for a, b in zip(grads_fast, grads_generic):
        torch.testing.assert_close(a, b)


class _PairEncoder(nn.Module):
    """Returns ``(loc, scale)`` with the scale used exactly as given."""

    def __init__(self, data_dim, latent_dim, scale):
        super().__init__()
        self.linear = nn.Linear(data_dim, latent_dim)
        self.scale = scale

    def forward(self, x):
        loc = self.linear(x)
        return loc, torch.full_like(loc, self.scale)


class _DistributionEncoder(_PairEncoder):
    def forward(self, x):
        from torch.distributions import Independent, Normal

        return Independent(Normal(*super().forward(x)), 1)


def test_encoder_may_return_loc_and_scale_used_exactly():
    # Before: the encoder had to output cat(loc, raw_scale), and a private 1e-5 was added.
    torch.manual_seed(0)
    model = VAE(10, 3, encoder=_PairEncoder(10, 3, scale=1e-7), decoder=nn.Linear(3, 10))
    x = _data("cpu")
    q = model.encode(x)
    assert bool((q.base_dist.scale == 1e-7).all())
    bound = model.elbo(x, generator=torch.Generator().manual_seed(0))
    loc = model.encoder.linear(x)
    kl = 0.5 * (loc.square() + 1e-14 - 1.0).sum(-1) - 3 * math.log(1e-7)
    z = loc + 1e-7 * torch.randn(loc.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bound, model.log_likelihood(z, x) - kl)


def test_encoder_may_return_a_distribution():
    torch.manual_seed(0)
    pair = VAE(10, 3, encoder=_PairEncoder(10, 3, scale=0.5), decoder=nn.Linear(3, 10))
    dist = VAE(10, 3, encoder=_DistributionEncoder(10, 3, scale=0.5), decoder=nn.Linear(3, 10))
    dist.load_state_dict(pair.state_dict())
    x = _data("cpu")
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    torch.testing.assert_close(dist.elbo(x, generator=g()), pair.elbo(x, generator=g()))
    torch.testing.assert_close(
        dist.iwae_bound(x, 4, generator=g()), pair.iwae_bound(x, 4, generator=g())
    )


def test_min_scale_is_explicit_and_can_be_switched_off():
    torch.manual_seed(0)
    default = VAE(10, 2, hidden_sizes=(8,))
    exact = VAE(10, 2, hidden_sizes=(8,), min_scale=0.0)
    exact.load_state_dict(default.state_dict())
    x = _data("cpu")
    raw = default.encoder(x)[..., 2:]
    torch.testing.assert_close(default.encode(x).base_dist.scale, F.softplus(raw) + 1e-5)
    torch.testing.assert_close(exact.encode(x).base_dist.scale, F.softplus(raw), rtol=0, atol=0)
    with pytest.raises(ValueError, match="min_scale"):
        VAE(10, 2, min_scale=-1.0)


def test_fixed_observation_scale_for_a_gaussian_likelihood():
    model = VAE(10, 2, hidden_sizes=(8,), likelihood="gaussian", obs_scale=0.1)
    assert "log_obs_scale" not in dict(model.named_parameters())
    z = torch.randn(4, 2)
    torch.testing.assert_close(model.decode(z).base_dist.scale, torch.full((4, 10), 0.1))
    per_dim = torch.linspace(0.1, 1.0, 10)
    model = VAE(10, 2, likelihood="gaussian", obs_scale=per_dim)
    torch.testing.assert_close(model.decode(z).base_dist.scale[0], per_dim)
    learned = VAE(10, 2, likelihood="gaussian")
    assert "log_obs_scale" in dict(learned.named_parameters())
    for bad, message in [
        (dict(likelihood="bernoulli", obs_scale=0.1), "gaussian"),
        (dict(likelihood="gaussian", obs_scale=0.0), "positive"),
        (dict(likelihood="gaussian", obs_scale=torch.ones(3)), r"\(10,\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            VAE(10, 2, **bad)


def test_bad_encoder_outputs_are_named():
    for encoder, message in [
        (_PairEncoder(10, 2, scale=1.0), "loc must have shape"),
        (lambda x: "loc", "encoder must return"),
    ]:

        class Wrap(nn.Module):
            def forward(self, x, encoder=encoder):
                return encoder(x)

        model = VAE(10, 3, encoder=Wrap(), decoder=nn.Linear(3, 10))
        with pytest.raises((ValueError, TypeError), match=message):
            model.elbo(_data("cpu"))
