"""bayestorch: differentiable probabilistic modelling on PyTorch.

Subpackages, by section of the talk:

* ``bayestorch.vi`` — variational inference: ELBO, IWAE bound, VAE.
* ``bayestorch.mcmc`` — MCMC kernels and diagnostics (ESS, MCSE).
* ``bayestorch.testing`` — goodness-of-fit and MCSE assertions for users' own samplers.
* ``bayestorch.utils`` — explicit randomness (generators, open-interval uniforms), checks.
* ``bayestorch.experiment`` — the experiment shell (configs, run directories, checkpoints);
  the only part that reads files or prints, imported on demand.
"""

from bayestorch import mcmc, testing, utils, vi

__version__ = "0.1.0"

__all__ = ["__version__", "mcmc", "testing", "utils", "vi"]
