"""The models of ``experiments/models.py``, written in bayestorch's model language, with
the real data they are fitted to (shipped with statsmodels and scikit-learn).

Each model is a plain function of its data written for one parameter set; the observed
site is ``y`` (pass ``y=None`` to predict it). Prior parameters are built in the data's
dtype and device (``x.new_tensor``), so a model runs in float64 or float32 alike.

- ``eight_schools_noncentred`` / ``eight_schools_centred``: Rubin (1981); the centred
  form's funnel between ``tau`` and ``theta`` makes NUTS diverge, the non-centred one
  samples it cleanly (Betancourt & Girolami 2015).
- ``varying_slopes``: investment of the 11 firms of Grunfeld (1958), log investment on
  log firm value (centred within each firm) with an intercept and a slope per firm, drawn
  jointly from a bivariate normal whose correlation has an LKJ prior on its Cholesky
  factor (Lewandowski, Kurowicka & Joe 2009).
- ``poisson_regression`` / ``negative_binomial_regression``: the durations (days) of 62
  US strikes of Kennan (1985) against industrial production; the negative binomial
  adds overdispersion, which LOO should prefer.
- ``bnn``: a one-hidden-layer network with Gaussian priors on its weights
  (``bt.random_module``) on scikit-learn's diabetes regression (Efron et al. 2004).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributions as D
from torch import Tensor, nn

import bayestorch as bt

# Rubin (1981), table 2: estimated coaching effects and their standard errors.
EIGHT_SCHOOLS_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
EIGHT_SCHOOLS_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


# -- models ------------------------------------------------------------------------------


def eight_schools_noncentred(sigma: Tensor, y: Tensor | None = None) -> None:
    """``theta_j = mu + tau eta_j``, ``eta_j ~ N(0, 1)``: no funnel for NUTS."""
    mu = bt.sample("mu", D.Normal(sigma.new_tensor(0.0), 5.0))
    tau = bt.sample("tau", D.HalfCauchy(sigma.new_tensor(5.0)))
    with bt.plate("school", len(sigma)):
        eta = bt.sample("eta", D.Normal(sigma.new_tensor(0.0), 1.0))
        theta = bt.deterministic("theta", mu + tau * eta)
        bt.sample("y", D.Normal(theta, sigma), obs=y)


def eight_schools_centred(sigma: Tensor, y: Tensor | None = None) -> None:
    """``theta_j ~ N(mu, tau^2)`` directly: the same posterior, with a funnel."""
    mu = bt.sample("mu", D.Normal(sigma.new_tensor(0.0), 5.0))
    tau = bt.sample("tau", D.HalfCauchy(sigma.new_tensor(5.0)))
    with bt.plate("school", len(sigma)):
        theta = bt.sample("theta", D.Normal(mu, tau))
        bt.sample("y", D.Normal(theta, sigma), obs=y)


def varying_slopes(
    x: Tensor, group: Tensor, num_groups: int, y: Tensor | None = None, eta: float = 2.0
) -> None:
    """``y_i ~ N(a_g + b_g x_i, sigma^2)`` with ``(a_g, b_g) ~ N(loc, diag(s) R diag(s))``,
    ``R = L L^T``, ``L ~ LKJCholesky(2, eta)``.

    Written as ``a_g ~ N(loc_0, s_0^2)`` (centred: 20 years pin a firm's mean down) and
    ``b_g = loc_1 + s_1 (L_10 (a_g - loc_0) / s_0 + L_11 z_g)``, ``z_g ~ N(0, 1)``: the
    slope's conditional given the intercept, non-centred, since the slopes vary little
    between firms (``s_1`` near 0 would make a funnel of a centred slope). The joint
    prior of ``(a_g, b_g)`` is the bivariate normal above either way.
    """
    loc = bt.sample("loc", D.Independent(D.Normal(x.new_zeros(2), 1.0), 1))
    scale = bt.sample("scale", D.Independent(D.HalfNormal(x.new_ones(2)), 1))
    corr_cholesky = bt.sample("corr_cholesky", D.LKJCholesky(2, x.new_tensor(eta)))
    bt.deterministic("rho", corr_cholesky[1, 0])  # the intercept-slope correlation
    with bt.plate("firm", num_groups):
        intercept = bt.sample("intercept", D.Normal(loc[0], scale[0]))
        z = bt.sample("z_slope", D.Normal(x.new_tensor(0.0), 1.0))
        u = (intercept - loc[0]) / scale[0]
        slope = loc[1] + scale[1] * (corr_cholesky[1, 0] * u + corr_cholesky[1, 1] * z)
        bt.deterministic("slope", slope)
    sigma = bt.sample("sigma", D.HalfNormal(x.new_tensor(1.0)))
    with bt.plate("obs", len(x)):
        bt.sample("y", D.Normal(intercept[group] + slope[group] * x, sigma), obs=y)


def poisson_regression(x: Tensor, y: Tensor | None = None) -> None:
    """``y_i ~ Poisson(exp(a + b x_i))``."""
    a = bt.sample("intercept", D.Normal(x.new_tensor(0.0), 5.0))
    b = bt.sample("slope", D.Normal(x.new_tensor(0.0), 1.0))
    with bt.plate("obs", len(x)):
        bt.sample("y", D.Poisson((a + b * x).exp()), obs=y)


def negative_binomial_regression(x: Tensor, y: Tensor | None = None) -> None:
    """``y_i ~ NegBin(mean exp(a + b x_i), dispersion phi)``: variance ``m + m^2 / phi``."""
    a = bt.sample("intercept", D.Normal(x.new_tensor(0.0), 5.0))
    b = bt.sample("slope", D.Normal(x.new_tensor(0.0), 1.0))
    phi = bt.sample("phi", D.Gamma(x.new_tensor(2.0), 0.1))
    with bt.plate("obs", len(x)):
        # torch's NegativeBinomial(r, logits) has mean r e^logits: logits = log m - log r.
        bt.sample("y", D.NegativeBinomial(phi, logits=a + b * x - phi.log()), obs=y)


def bnn(x: Tensor, net: nn.Module, prior_scale: float = 1.0, y: Tensor | None = None) -> None:
    """``y_i ~ N(net(x_i), noise^2)``, every weight ``~ N(0, prior_scale^2 / fan_in)``
    (biases ``N(0, prior_scale^2)``), ``noise ~ HalfNormal(1)``."""

    def prior(name: str, param: Tensor) -> D.Distribution:
        fan_in = param.shape[-1] if param.dim() > 1 else 1
        return D.Normal(param.new_zeros(param.shape), prior_scale / math.sqrt(fan_in))

    forward = bt.random_module("net", net, prior=prior)
    mean = forward(x).squeeze(-1)
    noise = bt.sample("noise", D.HalfNormal(x.new_tensor(1.0)))
    with bt.plate("obs", len(x)):
        bt.sample("y", D.Normal(mean, noise), obs=y)


# -- problems: a model with its data ------------------------------------------------------


@dataclass
class Variant:
    """One model fitted to the data: ``model(*args, y=y)``; ``test_args`` predict held-out
    data. ``pair``: two scalar names for the divergence plot (the second on a log axis
    when ``log_y``). ``compare``: sites whose NUTS and ADVI means/sds are compared
    (``None``: every site)."""

    name: str
    model: Callable[..., None]
    args: tuple
    y: Tensor
    kwargs: dict[str, Any] = field(default_factory=dict)
    test_args: tuple | None = None
    test_y: Tensor | None = None
    pair: tuple[str, str] | None = None
    log_y: bool = False
    compare: list[str] | None = None


def eight_schools(dtype: torch.dtype, device: torch.device) -> list[Variant]:
    y = torch.tensor(EIGHT_SCHOOLS_Y, dtype=dtype, device=device)
    sigma = torch.tensor(EIGHT_SCHOOLS_SIGMA, dtype=dtype, device=device)
    pair = ("theta[0]", "tau")
    return [
        Variant("noncentred", eight_schools_noncentred, (sigma,), y, pair=pair, log_y=True),
        Variant("centred", eight_schools_centred, (sigma,), y, pair=pair, log_y=True),
    ]


def _standardise(v: np.ndarray) -> np.ndarray:
    return (v - v.mean(0)) / v.std(0)


def grunfeld(dtype: torch.dtype, device: torch.device, lkj_eta: float = 2.0) -> list[Variant]:
    from statsmodels.datasets import grunfeld as data

    frame = data.load_pandas().data
    firms = sorted(frame["firm"].unique())
    index = frame["firm"].map({f: i for i, f in enumerate(firms)}).to_numpy()
    # Log firm value centred within each firm: the intercept is a firm's mean log
    # investment, the slope its within-firm elasticity, and the two are not confounded
    # by the firm's size (which a global centring leaves in the intercept).
    log_value = np.log(frame["value"].to_numpy(dtype=float))
    x = log_value - (np.bincount(index, log_value) / np.bincount(index))[index]
    x = x / x.std()
    y = _standardise(np.log(frame["invest"].to_numpy(dtype=float)))
    group = torch.tensor(index)
    x, y = (torch.tensor(v, dtype=dtype, device=device) for v in (x, y))
    args = (x, group.to(device), len(firms))
    return [
        Variant(
            "varying_slopes",
            varying_slopes,
            args,
            y,
            kwargs={"eta": lkj_eta},
            pair=("rho", "scale[1]"),
            log_y=True,
        )
    ]


def strikes(dtype: torch.dtype, device: torch.device) -> list[Variant]:
    from statsmodels.datasets import strikes as data

    frame = data.load_pandas().data
    x = torch.tensor(_standardise(frame["iprod"].to_numpy(dtype=float)), dtype=dtype, device=device)
    y = torch.tensor(frame["duration"].to_numpy(dtype=float), dtype=dtype, device=device)
    return [
        Variant("poisson", poisson_regression, (x,), y, pair=("intercept", "slope")),
        Variant("negative_binomial", negative_binomial_regression, (x,), y, pair=("slope", "phi")),
    ]


def diabetes(
    dtype: torch.dtype,
    device: torch.device,
    hidden: int = 16,
    prior_scale: float = 1.0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> list[Variant]:
    """Standardised with the training split's means and sds (the test split unseen)."""
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    order = np.random.default_rng(split_seed).permutation(len(features))
    num_test = round(test_fraction * len(features))
    test, train = order[:num_test], order[num_test:]
    mean, sd = features[train].mean(0), features[train].std(0)
    y_mean, y_sd = target[train].mean(), target[train].std()

    def tensor(v: np.ndarray) -> Tensor:
        return torch.tensor(v, dtype=dtype, device=device)

    x_train, x_test = tensor((features[train] - mean) / sd), tensor((features[test] - mean) / sd)
    y_train, y_test = (
        tensor((target[train] - y_mean) / y_sd),
        tensor((target[test] - y_mean) / y_sd),
    )
    net = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, 1))
    net = net.to(device=device, dtype=dtype)
    return [
        Variant(
            "bnn",
            bnn,
            (x_train, net, prior_scale),
            y_train,
            test_args=(x_test, net, prior_scale),
            test_y=y_test,
            pair=("net.2.bias[0]", "noise"),
            compare=["noise"],
        )
    ]


def logistic_regression(x: Tensor, prior_scale: float = 1.0, y: Tensor | None = None) -> None:
    """``y_i ~ Bernoulli(sigmoid(x_i w + b))``, ``w_k, b ~ N(0, prior_scale^2)``."""
    w = bt.sample("w", D.Independent(D.Normal(x.new_zeros(x.shape[1]), prior_scale), 1))
    b = bt.sample("intercept", D.Normal(x.new_tensor(0.0), prior_scale))
    with bt.plate("obs", len(x)):
        bt.sample("y", D.Bernoulli(logits=x @ w + b), obs=y)


def gaussian(loc: Tensor, scale: Tensor) -> None:
    """``x ~ N(loc, diag(scale^2))``: a target whose mean and sds are known."""
    bt.sample("x", D.Independent(D.Normal(loc, scale), 1))
