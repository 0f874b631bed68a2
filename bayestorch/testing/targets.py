"""Standard target densities for testing and benchmarking samplers.

Each target maps positions ``(chains, dim)`` to unnormalised log densities ``(chains,)``
and, where one exists, has an exact sampler and known moments, so a kernel can be checked
for invariance (start at exact draws, step, test the marginals) and accuracy (means within
MCSE). ``log_prob`` is differentiable for HMC/NUTS.

Targets: ``GaussianTarget`` (any mean and covariance; ``ill_conditioned_gaussian``),
``BimodalMixture`` (1-d), ``Banana`` (2-d twisted Gaussian), ``Funnel`` (Neal's, centred or
not), ``EightSchools`` (centred or not) and ``LogisticRegression`` (any design matrix).

References:
    Neal, "Slice sampling", Annals of Statistics 2003 (the funnel);
    Haario, Saksman & Tamminen, "Adaptive proposal distribution for random walk Metropolis",
    1999 (the banana); Rubin, "Estimation in parallel randomized experiments", 1981 (eight
    schools).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "Banana",
    "BimodalMixture",
    "EightSchools",
    "Funnel",
    "GaussianTarget",
    "LogisticRegression",
    "ill_conditioned_gaussian",
]


class GaussianTarget:
    """``N(mean, covariance)`` in ``dim`` dimensions.

    Shape: ``mean (dim,)``, ``covariance (dim, dim)``.
    """

    def __init__(self, mean: Tensor, covariance: Tensor) -> None:
        self.mean = mean
        self.covariance = covariance
        self.dim = mean.shape[0]
        self.scale_tril = torch.linalg.cholesky(covariance)
        self.precision = torch.cholesky_inverse(self.scale_tril)

    @property
    def variance(self) -> Tensor:
        return self.covariance.diagonal()

    def to(self, *args, **kwargs) -> GaussianTarget:
        return GaussianTarget(self.mean.to(*args, **kwargs), self.covariance.to(*args, **kwargs))

    def log_prob(self, x: Tensor) -> Tensor:
        d = x - self.mean
        return -0.5 * ((d @ self.precision) * d).sum(-1)

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(
            (num, self.dim), generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        return self.mean + z @ self.scale_tril.T


def ill_conditioned_gaussian(
    dim: int = 100,
    condition_number: float = 1e4,
    rotate: bool = False,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> GaussianTarget:
    """Zero-mean Gaussian whose variances are log-spaced over ``condition_number``
    (largest variance 1); ``rotate`` applies a fixed random rotation (needs a dense metric)."""
    variances = torch.logspace(-math.log10(condition_number), 0.0, dim, dtype=dtype)
    cov = torch.diag(variances)
    if rotate:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
        cov = q @ cov @ q.T
        cov = 0.5 * (cov + cov.T)
    return GaussianTarget(torch.zeros(dim, dtype=dtype), cov)


class BimodalMixture:
    """1-d mixture ``w N(-loc, scale²) + (1 - w) N(loc, scale²)``."""

    dim = 1

    def __init__(self, loc: float = 2.0, scale: float = 1.0, weight: float = 0.3) -> None:
        self.loc, self.scale, self.weight = loc, scale, weight
        self.mean = torch.tensor([(1 - 2 * weight) * loc])

    def log_prob(self, x: Tensor) -> Tensor:
        z = x[..., 0]
        left = math.log(self.weight) - 0.5 * ((z + self.loc) / self.scale) ** 2
        right = math.log1p(-self.weight) - 0.5 * ((z - self.loc) / self.scale) ** 2
        return torch.logaddexp(left, right)

    def cdf(self, z):
        """Mixture CDF (numpy or torch input)."""
        from scipy.stats import norm

        w, m, s = self.weight, self.loc, self.scale
        return w * norm.cdf(z, -m, s) + (1 - w) * norm.cdf(z, m, s)

    def sample(self, num: int, generator: torch.Generator | None = None, dtype=torch.float64):
        left = torch.rand(num, generator=generator, dtype=dtype) < self.weight
        z = torch.randn(num, generator=generator, dtype=dtype) * self.scale
        return (z + torch.where(left, -self.loc, self.loc)).unsqueeze(-1)


class Banana:
    """2-d banana: ``x0 ~ N(0, 1)``, ``x1 | x0 ~ N(curvature (x0² - 1), 1)``."""

    dim = 2

    def __init__(self, curvature: float = 1.0) -> None:
        self.curvature = curvature

    def log_prob(self, x: Tensor) -> Tensor:
        x0, x1 = x[..., 0], x[..., 1]
        return -0.5 * x0**2 - 0.5 * (x1 - self.curvature * (x0**2 - 1)) ** 2

    def whiten(self, x: Tensor) -> Tensor:
        """Map draws to two independent N(0, 1) coordinates (for goodness-of-fit tests)."""
        x0, x1 = x[..., 0], x[..., 1]
        return torch.stack([x0, x1 - self.curvature * (x0**2 - 1)], -1)

    def sample(self, num: int, generator: torch.Generator | None = None, dtype=torch.float64):
        z = torch.randn(num, 2, generator=generator, dtype=dtype)
        return torch.stack([z[:, 0], z[:, 1] + self.curvature * (z[:, 0] ** 2 - 1)], -1)


class Funnel:
    """Neal's funnel: ``v ~ N(0, 3²)``, ``x_i | v ~ N(0, e^v)`` for ``i < dim - 1``.

    ``centred=True`` samples ``(v, x)`` directly (a geometry that makes HMC diverge in the
    neck); ``centred=False`` samples ``(v, z)`` with ``x = e^{v/2} z``: a standard-normal-like
    geometry without divergences.
    """

    def __init__(self, dim: int = 10, centred: bool = True) -> None:
        self.dim, self.centred = dim, centred

    def log_prob(self, x: Tensor) -> Tensor:
        v, rest = x[..., 0], x[..., 1:]
        lp = -0.5 * (v / 3.0) ** 2
        if self.centred:
            return lp - 0.5 * (rest**2).sum(-1) * torch.exp(-v) - 0.5 * (self.dim - 1) * v
        return lp - 0.5 * (rest**2).sum(-1)


class EightSchools:
    """Rubin's eight schools: ``theta_j ~ N(mu, tau²)``, ``y_j ~ N(theta_j, sigma_j²)``.

    Unconstrained parameters ``(mu, log tau, theta or eta (8))``: ``dim = 10``. Priors
    ``mu ~ N(0, 5²)``, ``tau ~ HalfCauchy(5)`` (with the log-Jacobian of ``tau = e^s``).
    ``centred=False`` uses ``theta = mu + tau eta``, ``eta ~ N(0, 1)``.
    """

    y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
    sigma = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)
    dim = 10

    def __init__(self, centred: bool = False) -> None:
        self.centred = centred
        self._data: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _observations(self, like: Tensor) -> tuple[Tensor, Tensor]:
        # Built once per dtype and device: a new tensor per call costs more than the model.
        # Not while torch.compile traces: the tensors made there are the trace's, not real.
        key = (like.dtype, like.device)
        data = self._data.get(key)
        if data is None:
            data = (
                torch.tensor(self.y, dtype=like.dtype, device=like.device),
                torch.tensor(self.sigma, dtype=like.dtype, device=like.device),
            )
            if not torch.compiler.is_compiling():
                self._data[key] = data
        return data

    def log_prob(self, x: Tensor) -> Tensor:
        y, sigma = self._observations(x)
        mu, log_tau, rest = x[..., 0], x[..., 1], x[..., 2:]
        tau = log_tau.exp()
        lp = -0.5 * (mu / 5.0) ** 2
        lp = lp - torch.log1p((tau / 5.0) ** 2) + log_tau  # half-Cauchy(5) + Jacobian
        if self.centred:
            theta = rest
            lp = lp - 0.5 * (((theta - mu[..., None]) / tau[..., None]) ** 2).sum(-1) - 8 * log_tau
        else:
            theta = mu[..., None] + tau[..., None] * rest
            lp = lp - 0.5 * (rest**2).sum(-1)
        return lp - 0.5 * (((y - theta) / sigma) ** 2).sum(-1)


class LogisticRegression:
    """Bayesian logistic regression ``y ~ Bernoulli(sigmoid(X w + b))``, ``(w, b) ~ N(0, s² I)``.

    Shape: ``features (n, p)``, ``labels (n,)`` in {0, 1}; positions ``(chains, p + 1)`` with
    the intercept last.
    """

    def __init__(self, features: Tensor, labels: Tensor, prior_scale: float = 1.0) -> None:
        if features.dim() != 2 or labels.shape != features.shape[:1]:
            raise ValueError(
                f"features must be (n, p) and labels (n,), got {tuple(features.shape)} and "
                f"{tuple(labels.shape)}"
            )
        self.features = features
        self.labels = labels.to(features.dtype)
        self.prior_scale = prior_scale
        self.dim = features.shape[1] + 1

    def log_prob(self, x: Tensor) -> Tensor:
        w, b = x[..., :-1], x[..., -1:]
        logits = w @ self.features.T + b  # (chains, n)
        # log sigmoid(l) y + log sigmoid(-l) (1 - y) = y l - softplus(l)
        log_lik = (self.labels * logits - torch.nn.functional.softplus(logits)).sum(-1)
        return log_lik - 0.5 * (x**2).sum(-1) / self.prior_scale**2
