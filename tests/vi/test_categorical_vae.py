"""The categorical (Gumbel-softmax) VAE.

The exact ELBO and log p(x) of a tiny model are enumerated over its 3^2 latent configurations.
Checked by hand once: a KL computed against the wrong prior (``log q`` without ``+ log K``)
fails the straight-through enumeration test.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from bayestorch.testing import assert_z
from bayestorch.vi.categorical_vae import CategoricalVAE


def _data(device, n=16, d=10, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.3, device=device), generator=g)


@pytest.mark.parametrize("estimator", ["relaxed", "straight_through"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_device_and_gradients(device, estimator, likelihood):
    model = CategoricalVAE(10, 3, 4, (16,), likelihood, estimator).to(device)
    x = _data(device)
    g = torch.Generator(device=device).manual_seed(1)
    bound = model.elbo(x, num_samples=2, generator=g)
    assert bound.shape == (16,) and bound.device.type == device.type
    (-bound.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.elbo(x, discrete=True, num_samples=3, generator=g).shape == (16,)
    assert model.iwae_bound(x, 5, chunk_size=2, generator=g).shape == (16,)
    assert model.sample(4, generator=g).shape == (4, 10)
    assert model.sample(4, generator=g, mean=False).shape == (4, 10)
    assert model.reconstruct(x).shape == (16, 10)
    assert model.encode(x).event_shape == (3, 4)


def test_straight_through_decoder_reads_exact_one_hots():
    model = CategoricalVAE(10, 3, 4, (8,), estimator="straight_through")
    seen = []
    model.decoder.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    model.elbo(_data("cpu"), generator=torch.Generator().manual_seed(0))
    z = seen[0].unflatten(-1, (3, 4))
    assert torch.equal(z.sum(-1), torch.ones(16, 3)) and set(z.unique().tolist()) == {0.0, 1.0}


def test_same_generator_same_result():
    model = CategoricalVAE(10, 2, 3, (8,))
    x = _data("cpu")
    a = model.elbo(x, generator=torch.Generator().manual_seed(2))
    b = model.elbo(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_temperature_schedule_and_state_dict():
    model = CategoricalVAE(10, 2, 3, (8,), tau=1.0, anneal=0.01, min_tau=0.5)
    model.advance(30)
    assert model.tau == pytest.approx(math.exp(-0.3))
    fresh = CategoricalVAE(10, 2, 3, (8,), tau=1.0, anneal=0.01, min_tau=0.5)
    fresh.load_state_dict(model.state_dict())
    assert fresh.tau == model.tau


def _enumerate(model, x):
    """Exact ELBO and log p(x) by summing over all latent configurations."""
    log_q = model.posterior_logits(x)  # (batch, N, K)
    n, k = model.num_latents, model.num_categories
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)), device=x.device)
    z = F.one_hot(configs, k).to(x.dtype)  # (k^n, N, K)
    log_lik = model.log_likelihood(z.unsqueeze(1).expand(-1, len(x), -1, -1), x)  # (k^n, batch)
    log_q_z = (z.unsqueeze(1) * log_q).sum((-2, -1))  # (k^n, batch)
    log_prior = -n * math.log(k)
    log_px = torch.logsumexp(log_lik + log_prior, 0)
    exact_elbo = (log_q_z.exp() * (log_lik + log_prior - log_q_z)).sum(0)
    return exact_elbo, log_px


@pytest.mark.statistical
@pytest.mark.parametrize("path", ["discrete", "straight_through"])
def test_elbo_is_unbiased_for_the_enumerated_elbo(device, path):
    # Both the evaluation ELBO (one-hot draws, torch's categorical KL) and the straight-through
    # training objective (exact one-hots forward, our closed-form KL) estimate the true ELBO.
    torch.manual_seed(0)
    model = CategoricalVAE(10, 2, 3, (16,), estimator="straight_through")
    model = model.to(device=device, dtype=torch.float64)
    x = _data(device, n=4).double()
    with torch.no_grad():
        exact, log_px = _enumerate(model, x)
        assert (exact <= log_px).all()
        draws = model.elbo(
            x.expand(4000, *x.shape).reshape(-1, 10),
            discrete=path == "discrete",
            generator=torch.Generator(device=device).manual_seed(3),
        ).view(4000, 4)
    assert_z(draws.mean(0), exact, draws.std(0) / math.sqrt(4000))


@pytest.mark.statistical
def test_iwae_bound_approaches_log_px(device):
    torch.manual_seed(1)
    model = CategoricalVAE(10, 2, 3, (16,)).to(device=device, dtype=torch.float64)
    x = _data(device, n=3).double()
    with torch.no_grad():
        exact, log_px = _enumerate(model, x)
        g = torch.Generator(device=device).manual_seed(4)
        small = model.iwae_bound(x, 1, generator=g)
        large = torch.stack([model.iwae_bound(x, 2000, generator=g) for _ in range(20)])
    assert small.shape == (3,)
    # With 2000 draws over 9 configurations the bound is within Monte Carlo error of log p(x)
    # (its bias is O(1/K), far below the spread here).
    assert_z(large.mean(0), log_px, large.std(0) / math.sqrt(20) + 1e-6)
    assert (large.mean(0) > exact).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="estimator"):
        CategoricalVAE(10, estimator="reinforce")
    with pytest.raises(ValueError, match="likelihood"):
        CategoricalVAE(10, likelihood="poisson")
    with pytest.raises(ValueError, match="num_categories >= 2"):
        CategoricalVAE(10, 2, 1)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 10\)"):
        CategoricalVAE(10, 2, 3, (8,)).elbo(torch.zeros(4, 9))


def test_fixed_observation_scale_for_a_gaussian_likelihood():
    model = CategoricalVAE(10, 2, 3, hidden_sizes=(8,), likelihood="gaussian", obs_scale=0.2)
    assert "log_obs_scale" not in dict(model.named_parameters())
    z = torch.nn.functional.one_hot(torch.zeros(4, 2, dtype=torch.long), 3).float()
    torch.testing.assert_close(model.decode(z).base_dist.scale, torch.full((4, 10), 0.2))
    with pytest.raises(ValueError, match="gaussian"):
        CategoricalVAE(10, 2, 3, obs_scale=0.2)
