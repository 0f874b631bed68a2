"""GAN losses: non-saturating (Goodfellow et al. 2014) and Wasserstein with gradient penalty.

Talk section "GANs". The discriminator returns *logits* (any real number): for the
non-saturating loss ``D(x) = sigmoid(logit)``; for the Wasserstein loss the logit is the
critic's value. Losses are written with ``softplus`` (``-log sigmoid(t) = softplus(-t)``),
which never overflows.

References:
    Goodfellow et al. (2014). Generative Adversarial Nets. NeurIPS.
    Arjovsky, Chintala & Bottou (2017). Wasserstein GAN. ICML.
    Gulrajani et al. (2017). Improved Training of Wasserstein GANs. NeurIPS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bayestorch.utils.random import check_generator_device

__all__ = [
    "LOSSES",
    "check_loss",
    "discriminator_loss",
    "flatten_logits",
    "generator_loss",
    "gradient_penalty",
]

LOSSES = ("ns", "wgan-gp")
"""The GAN losses by name: ``"ns"`` (non-saturating) and ``"wgan-gp"`` (Wasserstein with a
gradient penalty)."""


def check_loss(loss: str) -> str:
    """Raise ``ValueError`` listing the valid names unless ``loss`` is one of :data:`LOSSES`."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def flatten_logits(logits: Tensor, batch_size: int, name: str = "discriminator output") -> Tensor:
    """``(n,)`` or ``(n, 1)`` logits as ``(n,)``; anything else is an error naming the shape.

    Shape:
        ``(n,)`` or ``(n, 1)`` -> ``(n,)``.
    """
    if logits.shape not in ((batch_size,), (batch_size, 1)):
        raise ValueError(
            f"{name} must have shape (n,) or (n, 1) with n={batch_size} (one logit per "
            f"input), got {tuple(logits.shape)}"
        )
    return logits.reshape(batch_size)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, loss: str = "ns") -> Tensor:
    """The discriminator's (critic's) loss, averaged over each batch.

    ``ns``: ``-mean log D(x) - mean log(1 - D(G(z)))`` = ``mean softplus(-real) +
    mean softplus(fake)``. ``wgan-gp``: ``mean critic(fake) - mean critic(real)`` (add
    :func:`gradient_penalty` yourself, or let :class:`~bayestorch.gan.GAN` do it).

    Shape:
        ``real_logits``: ``(n,)``; ``fake_logits``: ``(m,)`` -> scalar.

    References:
        Goodfellow et al. (2014); Arjovsky et al. (2017).
    """
    check_loss(loss)
    if loss == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def generator_loss(fake_logits: Tensor, loss: str = "ns") -> Tensor:
    """The generator's loss, averaged over the batch.

    ``ns`` (non-saturating): ``-mean log D(G(z))`` = ``mean softplus(-fake)``. ``wgan-gp``:
    ``-mean critic(G(z))``.

    Shape:
        ``(m,)`` -> scalar.

    References:
        Goodfellow et al. (2014), section 3; Arjovsky et al. (2017).
    """
    check_loss(loss)
    if loss == "ns":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def gradient_penalty(
    discriminator, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """``mean (||grad_x critic(x_hat)|| - 1)^2`` at random interpolates ``x_hat``.

    ``x_hat = e * real + (1 - e) * fake`` with ``e ~ U(0, 1)`` per example. The gradient is
    taken with ``create_graph=True`` so the penalty trains the critic.

    Args:
        discriminator: callable ``(n, ...) -> (n,)`` or ``(n, 1)``.
        real, fake: batches of the same shape.
        generator: the source of the interpolation weights.

    Shape:
        ``real``, ``fake``: ``(n, ...)`` -> scalar.

    References:
        Gulrajani et al. (2017), Algorithm 1.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    n = real.shape[0]
    check_generator_device(generator, real.device)
    e = torch.rand(
        (n,) + (1,) * (real.dim() - 1), generator=generator, device=real.device, dtype=real.dtype
    )
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    out = flatten_logits(discriminator(x_hat), n)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.reshape(n, -1).norm(dim=1) - 1).square().mean()
