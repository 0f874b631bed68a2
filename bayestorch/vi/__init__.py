"""Variational inference: the ELBO, the importance-weighted bound, the VAE and its
categorical (Gumbel-softmax) variant.

Talk section "variational inference"; Kingma & Welling (2014), Burda, Grosse &
Salakhutdinov (2016).
"""

from bayestorch.vi.categorical_vae import CategoricalVAE
from bayestorch.vi.elbo import elbo, iwae_bound, log_importance_weights
from bayestorch.vi.vae import VAE, LatentVariableModel, mlp

__all__ = [
    "VAE",
    "CategoricalVAE",
    "LatentVariableModel",
    "elbo",
    "iwae_bound",
    "log_importance_weights",
    "mlp",
]
