"""Gaussian processes: kernels, exact GP regression, and infinite-width networks (NNGP, NTK).

* :mod:`bayestorch.gp.kernels` — RBF, Matérn, rational quadratic, periodic, linear kernels as
  ``nn.Module``s with softplus-constrained hyperparameters; ``+``, ``*`` and scaling.
* :mod:`bayestorch.gp.regression` — :class:`GPRegression` (Cholesky with jitter), noisy and
  noiseless predictive, log marginal likelihood, :func:`fit_hyperparameters`.
* :mod:`bayestorch.gp.nngp` — :class:`NNGPKernel`, :class:`NTKKernel` (ReLU/erf closed forms,
  quadrature for any activation) and :class:`NNGPNetwork`, the finite networks they limit.
"""

from bayestorch.gp.kernels import (
    RBF,
    Kernel,
    Linear,
    Matern,
    Periodic,
    Product,
    RationalQuadratic,
    Scale,
    Sum,
)
from bayestorch.gp.nngp import (
    NNGPKernel,
    NNGPNetwork,
    NTKKernel,
    empirical_ntk,
    erf_expectations,
    gaussian_expectation,
    nngp_recursion,
    relu_expectations,
)
from bayestorch.gp.regression import (
    GPPrediction,
    GPRegression,
    fit_hyperparameters,
    gaussian_log_evidence,
    gp_posterior,
)

__all__ = [
    "RBF",
    "GPPrediction",
    "GPRegression",
    "Kernel",
    "Linear",
    "Matern",
    "NNGPKernel",
    "NNGPNetwork",
    "NTKKernel",
    "Periodic",
    "Product",
    "RationalQuadratic",
    "Scale",
    "Sum",
    "empirical_ntk",
    "erf_expectations",
    "fit_hyperparameters",
    "gaussian_expectation",
    "gaussian_log_evidence",
    "gp_posterior",
    "nngp_recursion",
    "relu_expectations",
]
