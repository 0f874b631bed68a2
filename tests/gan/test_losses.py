"""GAN losses (bayestorch.gan.losses) against their defining formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayestorch.gan import discriminator_loss, generator_loss, gradient_penalty
from bayestorch.gan.losses import flatten_logits


def test_non_saturating_losses_match_log_sigmoid_formulas():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(7, generator=g) * 3, torch.randn(5, generator=g) * 3
    d = discriminator_loss(real, fake, "ns")
    expected = -torch.sigmoid(real).log().mean() - (1 - torch.sigmoid(fake)).log().mean()
    torch.testing.assert_close(d, expected)
    torch.testing.assert_close(generator_loss(fake, "ns"), -torch.sigmoid(fake).log().mean())


def test_non_saturating_losses_are_finite_for_extreme_logits():
    logits = torch.tensor([-1e4, 1e4])
    assert torch.isfinite(discriminator_loss(logits, logits)) and torch.isfinite(
        generator_loss(logits)
    )


def test_wasserstein_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.5, -0.5, 2.0])
    torch.testing.assert_close(discriminator_loss(real, fake, "wgan-gp"), fake.mean() - 2.0)
    torch.testing.assert_close(generator_loss(fake, "wgan-gp"), -fake.mean())


def test_gradient_penalty_of_a_linear_critic(device):
    # critic(x) = w . x has gradient w everywhere: the penalty is (|w| - 1)^2.
    critic = nn.Linear(3, 1, bias=True).to(device)
    g = torch.Generator(device=device).manual_seed(1)
    real = torch.randn(8, 3, generator=g, device=device)
    fake = torch.randn(8, 3, generator=g, device=device)
    gp = gradient_penalty(critic, real, fake, generator=g)
    expected = (critic.weight.norm() - 1) ** 2
    torch.testing.assert_close(gp, expected)
    gp.backward()  # create_graph: the penalty trains the critic
    assert critic.weight.grad is not None and torch.all(torch.isfinite(critic.weight.grad))


def test_gradient_penalty_zero_for_unit_norm_gradient():
    critic = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8]]))
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(gradient_penalty(critic, real, fake), torch.tensor(0.0))


def test_bad_inputs():
    with pytest.raises(ValueError, match="loss must be one of"):
        generator_loss(torch.zeros(3), "hinge")
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(nn.Linear(2, 1), torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\)"):
        flatten_logits(torch.zeros(3, 2), 3)
