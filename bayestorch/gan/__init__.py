"""GANs with mixture latent priors, and the Bayesian GAN.

Talk section "GANs". Latent priors (:class:`GaussianPrior`, :class:`GaussianMixturePrior`
with Gumbel-softmax component choice, :class:`DirichletProcessPrior` by stick-breaking,
:class:`EnergyPrior` drawn by HMC from a learned energy),
losses (non-saturating, Wasserstein-GP), the responsibility network q(k | x), a :class:`GAN`
that owns its optimizers, and :class:`BayesianGAN` (SGHMC over generator and discriminator
weights). Any prior plugs into either model by constructor argument.

References:
    Goodfellow et al. (2014); Gulrajani et al. (2017); Saatchi & Wilson (2017);
    Huang, Xu et al. (2021).
"""

from bayestorch.gan import evaluation  # 11b's benchmarks and metrics
from bayestorch.gan.bayesian_gan import BayesianGAN
from bayestorch.gan.energy_prior import EnergyPrior
from bayestorch.gan.gan import GAN
from bayestorch.gan.losses import discriminator_loss, generator_loss, gradient_penalty
from bayestorch.gan.priors import (
    DirichletProcessPrior,
    GaussianMixturePrior,
    GaussianPrior,
    LatentPrior,
)
from bayestorch.gan.responsibility import ResponsibilityNet, responsibility_loss

__all__ = [
    "GAN",
    "BayesianGAN",
    "DirichletProcessPrior",
    "EnergyPrior",
    "GaussianMixturePrior",
    "GaussianPrior",
    "LatentPrior",
    "ResponsibilityNet",
    "discriminator_loss",
    "evaluation",
    "generator_loss",
    "gradient_penalty",
    "responsibility_loss",
]
