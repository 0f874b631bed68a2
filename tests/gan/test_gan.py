"""GAN (bayestorch.gan.gan): training steps with every prior and loss, exact resume, errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from bayestorch.gan import (
    GAN,
    DirichletProcessPrior,
    GaussianMixturePrior,
    GaussianPrior,
    ResponsibilityNet,
)

LATENT, DATA = 2, 2


def _mlp(i: int, o: int, h: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h), nn.LeakyReLU(0.2), nn.Linear(h, o))


def _prior(name: str):
    if name == "gaussian":
        return GaussianPrior(LATENT)
    if name == "gmm":
        return GaussianMixturePrior(3, LATENT)
    return DirichletProcessPrior(1.0, 4, LATENT)


def _make_gan(prior_name: str, loss: str = "ns", seed: int = 0, device="cpu") -> GAN:
    torch.manual_seed(seed)
    prior = _prior(prior_name)
    responsibility = (
        ResponsibilityNet(DATA, prior.num_components, hidden=(8,))
        if prior.num_components > 1
        else None
    )
    return GAN(
        _mlp(LATENT, DATA),
        _mlp(DATA, 1),
        prior,
        loss=loss,
        lr=1e-3,
        responsibility=responsibility,
        d_steps=2 if loss == "wgan-gp" else 1,
    ).to(device)


def _data(device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return (torch.randn(64, DATA, generator=g) * 0.1 + torch.tensor([1.0, -1.0])).to(device)


def _train(model, data, g, start: int, steps: int) -> list[dict[str, float]]:
    return [
        model.training_step(data[(i % 4) * 16 : (i % 4 + 1) * 16], g)
        for i in range(start, start + steps)
    ]


@pytest.mark.parametrize("prior_name", ["gaussian", "gmm", "dp"])
@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_training_step_and_sample(prior_name, loss, device):
    gan = _make_gan(prior_name, loss, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    before = {n: p.detach().clone() for n, p in gan.named_parameters()}
    metrics = _train(gan, _data(device), g, 0, 3)[-1]
    expected = {"d_loss", "g_loss"} | (
        {"responsibility_loss"} if prior_name != "gaussian" else set()
    )
    assert set(metrics) == expected
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in metrics.values())
    # every parameter moved: the prior's (mixture weights included) through the G loss
    for name, p in gan.named_parameters():
        if loss == "wgan-gp" and name == "discriminator.2.bias":
            continue  # the critic's output bias cancels from the Wasserstein loss: no gradient
        assert not torch.equal(p.detach(), before[name]), name
    assert int(gan.num_steps) == 3
    x, k = gan.sample(10, g, return_component=True)
    assert x.shape == (10, DATA) and k.shape == (10,) and x.device.type == device.type
    assert not x.requires_grad
    if prior_name != "gaussian":
        q = gan.responsibilities(x)
        torch.testing.assert_close(q.sum(-1), torch.ones(10, device=device))


@pytest.mark.parametrize("prior_name", ["gaussian", "gmm", "dp"])
@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_checkpoint_resumes_exactly(prior_name, loss):
    data = _data()
    gan = _make_gan(prior_name, loss)
    g = torch.Generator().manual_seed(4)
    _train(gan, data, g, 0, 3)
    buffer = io.BytesIO()
    torch.save({"gan": gan.checkpoint_state(), "rng": g.get_state()}, buffer)
    reference = _train(gan, data, g, 3, 3)
    final = {n: p.detach().clone() for n, p in gan.named_parameters()}

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _make_gan(prior_name, loss, seed=99)  # a different initialisation, overwritten
    resumed.load_checkpoint_state(saved["gan"])
    g.set_state(saved["rng"])
    assert _train(resumed, data, g, 3, 3) == reference
    for n, p in resumed.named_parameters():
        torch.testing.assert_close(p.detach(), final[n], rtol=0, atol=0)


def test_same_seed_same_training():
    runs = []
    for _ in range(2):
        gan = _make_gan("gmm")
        runs.append(_train(gan, _data(), torch.Generator().manual_seed(5), 0, 2))
    assert runs[0] == runs[1]


def test_bad_arguments():
    prior = GaussianPrior(3)
    with pytest.raises(ValueError, match="latent dimensions do not match"):
        GAN(_mlp(2, 2), _mlp(2, 1), prior)
    with pytest.raises(ValueError, match="loss must be one of"):
        GAN(_mlp(3, 2), _mlp(2, 1), prior, loss="hinge")
    with pytest.raises(ValueError, match="num_components"):
        GAN(
            _mlp(3, 2),
            _mlp(2, 1),
            GaussianMixturePrior(4, 3),
            responsibility=ResponsibilityNet(2, 5),
        )
    with pytest.raises(ValueError, match="d_steps"):
        GAN(_mlp(3, 2), _mlp(2, 1), prior, d_steps=0)
    with pytest.raises(TypeError, match="latent prior Module"):
        GAN(_mlp(3, 2), _mlp(2, 1), torch.distributions.Normal(0.0, 1.0))
    gan = GAN(_mlp(3, 2), _mlp(2, 2), prior)
    with pytest.raises(ValueError, match="discriminator output"):
        gan.training_step(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no responsibility network"):
        gan.responsibilities(torch.zeros(4, 2))
