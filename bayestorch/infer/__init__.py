"""Models and inference: write a model once with torch.distributions, infer it many ways.

A model is a Python function written for one parameter set with the primitives
``sample``, ``deterministic``, ``factor``, ``plate`` and ``random_module`` (also at the top
level: ``bt.sample``, ...). ``ModelDensity`` turns it into a log density on an
unconstrained space (constraints through ``biject_to``, Jacobians added) that every
``bayestorch.mcmc`` kernel runs for many chains at once; ``mcmc`` (NUTS, HMC, ChEES, ...),
``sghmc`` (mini-batched through the plates), ``advi``, ``map`` and ``predictive`` are the
entry points, returning named, constrained draws.
"""

from __future__ import annotations

from bayestorch.infer.density import LatentSite, ModelDensity, ModelError, ObservedSite
from bayestorch.infer.optimize import map
from bayestorch.infer.posterior import Posterior
from bayestorch.infer.predictive import predictive
from bayestorch.infer.primitives import deterministic, factor, plate, random_module, sample
from bayestorch.infer.sampling import mcmc
from bayestorch.infer.stochastic import sghmc
from bayestorch.infer.transforms import biject_to
from bayestorch.infer.variational import ADVIResult, GaussianGuide, advi

__all__ = [
    "ADVIResult",
    "GaussianGuide",
    "LatentSite",
    "ModelDensity",
    "ModelError",
    "ObservedSite",
    "Posterior",
    "advi",
    "biject_to",
    "deterministic",
    "factor",
    "map",
    "mcmc",
    "plate",
    "predictive",
    "random_module",
    "sample",
    "sghmc",
]
