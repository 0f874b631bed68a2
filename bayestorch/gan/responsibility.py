"""The responsibility network q(k | x): the "posterior consistency module" of GMM-GAN.

Talk section "GANs with mixture latent priors". Trained with the generator so that
``q(k | G(z))`` recovers the component ``k`` that ``z`` was drawn from (a cross-entropy, as
InfoGAN's mutual-information term); applied to real data it gives each point's
responsibilities, hence a clustering and an estimate of the mixture weights.

References:
    Huang, Xu et al. (2021). GAN-based Gaussian Mixture Model Responsibility Learning. ICPR.
    Chen et al. (2016). InfoGAN. NeurIPS (the same consistency term for discrete codes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResponsibilityNet", "responsibility_loss"]


class ResponsibilityNet(nn.Module):
    """An MLP ``x -> logits of q(k | x)`` over ``num_components`` components.

    Inputs of any shape ``(n, ...)`` are flattened to ``(n, in_features)``.

    Args:
        in_features: size of one flattened input.
        num_components: ``K``, the prior's number of components.
        hidden: hidden layer widths (LeakyReLU(0.2) between layers).

    Shape:
        ``(n, ...)`` -> ``(n, K)`` logits.

    References:
        Huang, Xu et al. (2021), ICPR.
    """

    def __init__(self, in_features: int, num_components: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        for name, value in (("in_features", in_features), ("num_components", num_components)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features, self.num_components = in_features, num_components
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, num_components))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))

    @torch.no_grad()
    def responsibilities(self, x: Tensor) -> Tensor:
        """``q(k | x)`` (no gradient).

        Shape:
            ``(n, ...)`` -> ``(n, K)``.
        """
        return torch.softmax(self(x), -1)


def responsibility_loss(logits: Tensor, component: Tensor) -> Tensor:
    """Cross-entropy ``-mean log q(k_i | G(z_i))``.

    Shape:
        ``logits``: ``(n, K)``; ``component``: ``(n,)`` int64 -> scalar.
    """
    return F.cross_entropy(logits, component)
