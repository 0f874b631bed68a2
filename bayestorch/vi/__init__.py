"""Variational inference: the ELBO, the importance-weighted bound, and the VAE.

Talk section "variational inference"; Kingma & Welling (2014), Burda, Grosse &
Salakhutdinov (2016).
"""

from bayestorch.vi.elbo import elbo, iwae_bound, log_importance_weights
from bayestorch.vi.vae import VAE, mlp

__all__ = ["VAE", "elbo", "iwae_bound", "log_importance_weights", "mlp"]
