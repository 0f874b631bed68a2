"""BayesianGAN (bayestorch.gan.bayesian_gan): SGHMC steps over weight samples, kept posterior
samples used for generation, linear cost, exact resume, errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from bayestorch.gan import (
    BayesianGAN,
    DirichletProcessPrior,
    GaussianMixturePrior,
    GaussianPrior,
    ResponsibilityNet,
)
from bayestorch.mcmc.sghmc import SGHMC

LATENT, DATA = 2, 2


def _mlp(i: int, o: int, h: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h), nn.LeakyReLU(0.2), nn.Linear(h, o))


class _FeatureCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = _mlp(DATA, 8), nn.Linear(8, 1)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def _prior(name: str):
    return {
        "gaussian": lambda: GaussianPrior(LATENT),
        "gmm": lambda: GaussianMixturePrior(3, LATENT),
        "dp": lambda: DirichletProcessPrior(1.0, 4, LATENT),
    }[name]()


def _make(prior_name="gmm", seed=0, device="cpu", **kwargs) -> BayesianGAN:
    torch.manual_seed(seed)
    prior = _prior(prior_name)
    responsibility = (
        ResponsibilityNet(DATA, prior.num_components, hidden=(8,))
        if prior.num_components > 1
        else None
    )
    kwargs = {"num_data": 64, "lr": 1e-2, "keep_every": 2, "max_kept": 3, **kwargs}
    return BayesianGAN(
        _mlp(LATENT, DATA),
        kwargs.pop("discriminator", _mlp(DATA, 1)),
        prior,
        num_generators=2,
        num_discriminators=3,
        responsibility=responsibility,
        **kwargs,
    ).to(device)


def _data(device="cpu"):
    g = torch.Generator().manual_seed(321)
    return (torch.randn(64, DATA, generator=g) * 0.1 + 1.0).to(device)


def _train(model, data, g, start, steps):
    return [
        model.training_step(data[(i % 4) * 16 : (i % 4 + 1) * 16], g)
        for i in range(start, start + steps)
    ]


@pytest.mark.parametrize("prior_name", ["gaussian", "gmm", "dp"])
def test_training_steps_move_every_weight_sample(prior_name, device):
    bgan = _make(prior_name, device=device)
    assert isinstance(bgan.g_sampler, SGHMC) and isinstance(bgan.d_sampler, SGHMC)
    # the weight samples start apart (re-initialised copies)
    w = [g[0].weight.detach().clone() for g in bgan.generators]
    assert not torch.equal(w[0], w[1])
    before = {n: p.detach().clone() for n, p in bgan.named_parameters()}
    metrics = _train(bgan, _data(device), torch.Generator(device=device).manual_seed(0), 0, 3)
    assert {"d_loss", "g_loss"} <= set(metrics[-1])
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics[-1].values())
    for name, p in bgan.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name
    x, k = bgan.sample(9, torch.Generator(device=device).manual_seed(1), return_component=True)
    assert x.shape == (9, DATA) and k.shape == (9,) and x.device.type == device.type


def test_kept_samples_and_sampling_from_them():
    bgan = _make(burn_in=1)
    g = torch.Generator().manual_seed(0)
    _train(bgan, _data(), g, 0, 7)  # keeps after steps 3, 5, 7: 6 generator samples, last 3 kept
    assert len(bgan.kept) == 3
    current = bgan.generators[1].state_dict()
    for key, value in bgan.kept[-1].items():
        torch.testing.assert_close(value, current[key], rtol=0, atol=0)
    # sample() draws from the kept weights, not the current ones
    with torch.no_grad():
        for p in bgan.generators.parameters():
            p.fill_(float("nan"))
    x = bgan.sample(50, g)
    assert torch.isfinite(x).all()
    # and each output comes from one kept sample: with z fixed, every output equals that
    # kept generator's output for some kept sample
    z = bgan.prior.sample((50,), torch.Generator().manual_seed(8))
    outs = torch.stack([torch.func.functional_call(bgan.generators[0], s, (z,)) for s in bgan.kept])
    x = bgan.sample(50, torch.Generator().manual_seed(8))
    assert torch.all((outs - x).abs().amax(-1).amin(0) < 1e-6)


def test_cost_is_linear_in_the_number_of_samples():
    # per step: each discriminator runs on the real batch, the pooled fakes and its share of
    # the generators' fakes (3 calls); each generator runs twice. Not J_g x J_d.
    bgan = _make()
    calls = {"g": 0, "d": 0}
    for g in bgan.generators:
        g.register_forward_hook(lambda *a: calls.__setitem__("g", calls["g"] + 1))
    for d in bgan.discriminators:
        d.register_forward_hook(lambda *a: calls.__setitem__("d", calls["d"] + 1))
    _train(bgan, _data(), torch.Generator().manual_seed(0), 0, 1)
    assert calls == {"g": 2 * bgan.num_generators, "d": 3 * bgan.num_discriminators}


@pytest.mark.parametrize("prior_name", ["gaussian", "dp"])
def test_checkpoint_resumes_exactly(prior_name):
    data = _data()
    bgan = _make(prior_name)
    g = torch.Generator().manual_seed(2)
    _train(bgan, data, g, 0, 3)
    buffer = io.BytesIO()
    torch.save({"model": bgan.checkpoint_state(), "rng": g.get_state()}, buffer)
    reference = _train(bgan, data, g, 3, 4)
    final = {n: p.detach().clone() for n, p in bgan.named_parameters()}
    ref_samples = bgan.sample(20, torch.Generator().manual_seed(3))

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _make(prior_name, seed=42)
    resumed.load_checkpoint_state(saved["model"])
    g.set_state(saved["rng"])
    assert _train(resumed, data, g, 3, 4) == reference
    for n, p in resumed.named_parameters():
        torch.testing.assert_close(p.detach(), final[n], rtol=0, atol=0)
    torch.testing.assert_close(
        resumed.sample(20, torch.Generator().manual_seed(3)), ref_samples, rtol=0, atol=0
    )


def test_feature_matching_option():
    bgan = _make("gaussian", discriminator=_FeatureCritic(), feature_matching=True)
    metrics = _train(bgan, _data(), torch.Generator().manual_seed(0), 0, 2)
    assert torch.isfinite(torch.tensor(metrics[-1]["g_loss"]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss must be 'ns'"):
        _make(loss="wgan-gp")
    with pytest.raises(ValueError, match="features"):
        _make(feature_matching=True)
    with pytest.raises(ValueError, match="latent dimensions do not match"):
        BayesianGAN(_mlp(3, DATA), _mlp(DATA, 1), GaussianPrior(2), num_data=10)
    with pytest.raises(ValueError, match="num_generators"):
        BayesianGAN(_mlp(2, DATA), _mlp(DATA, 1), GaussianPrior(2), num_generators=0)
    with pytest.raises(ValueError, match="num_data"):
        BayesianGAN(_mlp(2, DATA), _mlp(DATA, 1), GaussianPrior(2), num_data=0)


def test_preconditioner_adapts_during_burn_in_then_freezes():
    bgan = _make("gaussian", lr=1e-4, preconditioner="rmsprop", burn_in=2)
    g = torch.Generator().manual_seed(0)
    _train(bgan, _data(), g, 0, 2)
    assert all(not group["adapt_preconditioner"] for group in bgan.g_sampler.param_groups)
    p = next(bgan.discriminators.parameters())
    frozen = bgan.d_sampler.state[p]["square_avg"].clone()
    _train(bgan, _data(), g, 2, 2)
    torch.testing.assert_close(bgan.d_sampler.state[p]["square_avg"], frozen, rtol=0, atol=0)
