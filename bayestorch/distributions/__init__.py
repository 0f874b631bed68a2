"""torch-compatible families torch lacks, and the reparameterisation table of the talk.

Reparameterisation table: each family is a differentiable transform of parameter-free noise
(``u`` uniform on the open interval (0, 1), ``eps ~ N(0, 1)``), so gradients of ``E[f(z)]``
flow through the sample (the pathwise estimator). Every row is sampled by a function here that
takes a ``generator`` (:func:`rsample` dispatches a torch distribution object to it); torch's
own ``rsample`` implements the same law and is tested against the same CDFs.

======================  ==========================================================  ==========
family                  transform                                                   torch
======================  ==========================================================  ==========
Exponential(rate)       ``-log(u) / rate``                                          rsample
Cauchy(loc, scale)      ``loc + scale * tan(pi (u - 1/2))``                         rsample
Laplace(loc, scale)     ``loc - scale * sign(v) log(1 - |v|)``, ``v = 2u - 1``      rsample
Normal(loc, scale)      ``loc + scale * sqrt(-2 log u1) cos(2 pi u2)`` (Box–Muller)  rsample
MultivariateNormal      ``loc + L eps``, ``L L^T = covariance`` (Cholesky)           rsample
LogNormal(loc, scale)   ``exp(loc + scale * eps)``                                  rsample
InverseGamma(a, b)      ``b / Gamma(a, 1)``, implicit gradient of the Gamma         rsample
Gumbel(loc, scale)      ``loc - scale * log(-log u)``                               rsample
Kumaraswamy(a, b)       ``(1 - u^(1/b))^(1/a)`` (stick-breaking sticks; (1, a) is    added here
                        Beta(1, a), so GEM(alpha) sticks are exact)
Rademacher(probs)       ``2 * 1[u < probs] - 1``: discrete, score-function only     added here
======================  ==========================================================  ==========

References:
    Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR (section 2.4).
    Box & Muller (1958); Devroye (1986). Non-Uniform Random Variate Generation.
    Figurnov, Mohamed & Mnih (2018). Implicit Reparameterization Gradients. NeurIPS.
"""

from bayestorch.distributions.rademacher import Rademacher, plus_minus_one
from bayestorch.distributions.reparam import (
    REPARAMETERIZATION_TABLE,
    ReparameterizationEntry,
    cauchy_rsample,
    exponential_rsample,
    gumbel_rsample,
    inverse_gamma_rsample,
    laplace_rsample,
    log_normal_rsample,
    multivariate_normal_rsample,
    normal_box_muller,
    rsample,
)
from bayestorch.distributions.stick_breaking import (
    gem_expected_weights,
    kumaraswamy_log_sticks,
    kumaraswamy_mean,
    stick_breaking_log_weights,
)

__all__ = [
    "REPARAMETERIZATION_TABLE",
    "Rademacher",
    "ReparameterizationEntry",
    "cauchy_rsample",
    "exponential_rsample",
    "gem_expected_weights",
    "gumbel_rsample",
    "inverse_gamma_rsample",
    "kumaraswamy_log_sticks",
    "kumaraswamy_mean",
    "laplace_rsample",
    "log_normal_rsample",
    "multivariate_normal_rsample",
    "normal_box_muller",
    "plus_minus_one",
    "rsample",
    "stick_breaking_log_weights",
]
