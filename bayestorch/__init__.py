"""bayestorch: differentiable probabilistic modelling on PyTorch.

Subpackages, by section of the talk (imported on first attribute access, so
``import bayestorch as bt`` stays cheap and ``bt.gp`` just works):

* ``bayestorch.infer`` — the model language (``bt.sample``, ``bt.plate``, ``bt.deterministic``,
  ``bt.factor``, ``bt.random_module``) and its inference: ``mcmc``, ``advi``, ``map``,
  ``predictive``, arviz export.
* ``bayestorch.vi`` — variational inference: ELBO, IWAE bound, VAE.
* ``bayestorch.mc`` — Monte Carlo: rejection, adaptive rejection, importance sampling, resampling.
* ``bayestorch.mcmc`` — MCMC kernels, warm-up adaptation, diagnostics and the ``sample`` runner.
* ``bayestorch.segmentation`` — image segmentation: Potts and partition-prior (DP, Pitman–Yor,
  finite) models sampled by (generalised) Swendsen–Wang; partition estimates.
* ``bayestorch.gumbel`` — Gumbel-max, Gumbel-softmax, Gumbel-top-k, stochastic beam search.
* ``bayestorch.distributions`` — families torch lacks (Rademacher); the reparameterisation table.
* ``bayestorch.gp`` — kernels (RBF, Matérn, NNGP, NTK) and exact GP regression.
* ``bayestorch.dpp`` — determinantal point processes and DPP mini-batch samplers.
* ``bayestorch.ssm`` — Kalman filter/smoother, particle filter, LSTM-Kalman filter.
* ``bayestorch.gan`` — latent priors, GAN losses, Bayesian GAN.
* ``bayestorch.testing`` — goodness-of-fit and MCSE assertions for users' own samplers.
* ``bayestorch.utils`` — explicit randomness, input checks, safe Cholesky.
* ``bayestorch.experiment`` — the experiment shell (configs, run directories, checkpoints);
  the only part that reads files or prints.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "distributions",
    "dpp",
    "experiment",
    "gan",
    "gp",
    "gumbel",
    "infer",
    "mc",
    "mcmc",
    "segmentation",
    "ssm",
    "testing",
    "utils",
    "vi",
)

# The model language's primitives, at the top level as users write them (``bt.sample``).
_PRIMITIVES = ("deterministic", "factor", "plate", "random_module", "sample")

__all__ = ["__version__", *_SUBPACKAGES, *_PRIMITIVES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _PRIMITIVES:
        value = getattr(importlib.import_module(f"{__name__}.infer.primitives"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayestorch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_PRIMITIVES))
