"""The reparameterisation table: every family's samples fit its CDF (ours and torch's rsample),
and the pathwise gradient of E[f(z)] matches the score-function estimate within Monte Carlo error.

Registry: CASES must list every row of REPARAMETERIZATION_TABLE (a test fails otherwise).
Checked by hand once: a Box–Muller using ``sqrt(-log u1)`` (no factor 2) fails its KS test; an
exponential drawn as ``-log(u) * rate`` fails its KS test; a Laplace with ``log(1 - v)`` in place
of ``sign(v) log(1 - |v|)`` fails its KS test; a pathwise gradient with the InverseGamma's
gradient cut (``gamma.detach()``) fails the gradient test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats
from torch import distributions as D

from bayestorch.distributions import REPARAMETERIZATION_TABLE, Rademacher, rsample
from bayestorch.testing import assert_counts, assert_ks, assert_z, categorical_counts

N_KS = 20000
N_GRAD = 40000


@dataclass
class Case:
    params: dict[str, float]
    scipy: Callable[..., object] | None  # params -> frozen scipy distribution (continuous only)
    grad_param: str  # the parameter the gradient test differentiates
    f: Callable[[torch.Tensor], torch.Tensor]  # a smooth, bounded test function


def _mvn_params():
    loc = torch.tensor([0.5, -1.0], dtype=torch.float64)
    scale_tril = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    return loc, scale_tril


CASES: dict[str, Case] = {
    "Exponential": Case(
        {"rate": 1.7}, lambda p: stats.expon(scale=1 / p["rate"]), "rate", torch.sin
    ),
    "Cauchy": Case(
        {"loc": 0.3, "scale": 1.5},
        lambda p: stats.cauchy(p["loc"], p["scale"]),
        "scale",
        lambda z: torch.cos(z),
    ),
    "Laplace": Case(
        {"loc": -0.5, "scale": 0.8},
        lambda p: stats.laplace(p["loc"], p["scale"]),
        "scale",
        lambda z: torch.cos(z),
    ),
    "Normal": Case(
        {"loc": 0.4, "scale": 1.3},
        lambda p: stats.norm(p["loc"], p["scale"]),
        "scale",
        lambda z: torch.cos(z),
    ),
    "MultivariateNormal": Case({}, None, "scale_tril", lambda z: torch.cos(z[..., 0] + z[..., 1])),
    "LogNormal": Case(
        {"loc": 0.2, "scale": 0.6},
        lambda p: stats.lognorm(s=p["scale"], scale=math.exp(p["loc"])),
        "scale",
        lambda z: torch.sin(z),
    ),
    "InverseGamma": Case(
        {"concentration": 2.5, "rate": 1.5},
        lambda p: stats.invgamma(p["concentration"], scale=p["rate"]),
        "concentration",
        lambda z: torch.sin(z),
    ),
    "Gumbel": Case(
        {"loc": 1.0, "scale": 2.0},
        lambda p: stats.gumbel_r(p["loc"], p["scale"]),
        "scale",
        lambda z: torch.cos(z),
    ),
    "Rademacher": Case({"probs": 0.3}, None, "probs", lambda z: torch.exp(z)),
}


def test_registry_covers_the_table():
    assert set(CASES) == set(REPARAMETERIZATION_TABLE)


def _make(name: str, device, dtype=torch.float64, **overrides) -> D.Distribution:
    if name == "MultivariateNormal":
        loc, scale_tril = _mvn_params()
        return D.MultivariateNormal(
            overrides.get("loc", loc.to(device)),
            scale_tril=overrides.get("scale_tril", scale_tril.to(device)),
        )
    params = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in CASES[name].params.items()}
    params.update(overrides)
    family = REPARAMETERIZATION_TABLE[name].family
    return family(**params)


def _assert_fits(name: str, x: torch.Tensor) -> None:
    case = CASES[name]
    if name == "Rademacher":
        counts = categorical_counts(((x + 1) / 2).long(), 2)
        assert_counts(counts, [1 - case.params["probs"], case.params["probs"]])
    elif name == "MultivariateNormal":
        loc, scale_tril = _mvn_params()
        cov = scale_tril @ scale_tril.T
        a = torch.tensor([1.0, -2.0], dtype=torch.float64)
        # Both marginals and one projection (so the correlation is tested too); Bonferroni.
        for i in range(2):
            assert_ks(x[:, i], stats.norm(loc[i], math.sqrt(cov[i, i])), failure_rate=1e-3 / 3)
        sd = math.sqrt(float(a @ cov @ a))
        assert_ks(x @ a.to(x), stats.norm(float(a @ loc), sd), failure_rate=1e-3 / 3)
    else:
        assert_ks(x, case.scipy(case.params))


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(CASES))
def test_our_transform_fits_the_family(device, name):
    dist = _make(name, device)
    x = rsample(dist, (N_KS,), generator=torch.Generator(device=device).manual_seed(0))
    assert x.shape == (N_KS, *dist.batch_shape, *dist.event_shape)
    assert x.device.type == device.type and x.dtype == torch.float64
    _assert_fits(name, x.cpu())


@pytest.mark.statistical
@pytest.mark.parametrize("name", [n for n in CASES if n != "Rademacher"])
def test_torch_rsample_fits_the_family(device, name):
    dist = _make(name, device)
    assert dist.has_rsample
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        x = dist.rsample((N_KS,))
    _assert_fits(name, x.cpu())


def test_same_generator_same_draws(device):
    for name in CASES:
        dist = _make(name, device)
        a = rsample(dist, (5,), generator=torch.Generator(device=device).manual_seed(3))
        b = rsample(dist, (5,), generator=torch.Generator(device=device).manual_seed(3))
        assert torch.equal(a, b), name


def _per_sample_param(name: str, device, n: int) -> torch.Tensor:
    """A leaf holding one copy of the differentiated parameter per draw."""
    if name == "MultivariateNormal":
        return _mvn_params()[1].to(device).expand(n, 2, 2).clone().requires_grad_()
    value = CASES[name].params[CASES[name].grad_param]
    return torch.full((n,), value, dtype=torch.float64, device=device, requires_grad=True)


def _grad_component(name: str, grad: torch.Tensor) -> torch.Tensor:
    return grad[:, 1, 0] if name == "MultivariateNormal" else grad  # d/d L[1, 0]


@pytest.mark.statistical
@pytest.mark.parametrize("source", ["bayestorch", "torch"])
@pytest.mark.parametrize("name", [n for n in CASES if n != "Rademacher"])
def test_pathwise_gradient_matches_score_function(device, name, source):
    case = CASES[name]
    # Pathwise: d f(z(theta, noise)) / d theta, one parameter copy per draw.
    theta = _per_sample_param(name, device, N_GRAD)
    dist = _make(name, device, **{case.grad_param: theta})
    if source == "bayestorch":
        z = rsample(dist, generator=torch.Generator(device=device).manual_seed(4))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            z = dist.rsample()
    case.f(z).sum().backward()
    pathwise = _grad_component(name, theta.grad)
    # Score function: f(z) d log p(z; theta) / d theta, on independent draws.
    theta_sf = _per_sample_param(name, device, N_GRAD)
    dist_sf = _make(name, device, **{case.grad_param: theta_sf})
    z_sf = rsample(dist_sf, generator=torch.Generator(device=device).manual_seed(5)).detach()
    (case.f(z_sf) * dist_sf.log_prob(z_sf)).sum().backward()
    score = _grad_component(name, theta_sf.grad)
    assert torch.isfinite(pathwise).all() and torch.isfinite(score).all()
    diff = pathwise.mean() - score.mean()
    se = torch.sqrt(pathwise.var() / N_GRAD + score.var() / N_GRAD)
    assert_z(diff, 0.0, se)


@pytest.mark.statistical
def test_rademacher_score_function_matches_closed_form(device):
    case = CASES["Rademacher"]
    theta = _per_sample_param("Rademacher", device, N_GRAD)
    dist = Rademacher(probs=theta)
    z = dist.sample(generator=torch.Generator(device=device).manual_seed(6))
    (case.f(z) * dist.log_prob(z)).sum().backward()
    score = theta.grad
    closed = math.exp(1.0) - math.exp(-1.0)  # d/dp [p f(1) + (1 - p) f(-1)]
    assert_z(score.mean(), closed, score.std() / math.sqrt(N_GRAD))


def test_unknown_family_is_rejected():
    with pytest.raises(NotImplementedError, match="the table has Exponential"):
        rsample(D.Beta(1.0, 2.0))


def test_float32_and_broadcast_shapes():
    x = rsample(D.Normal(torch.zeros(3), torch.ones(2, 1)), (4,), generator=torch.Generator())
    assert x.shape == (4, 2, 3) and x.dtype == torch.float32
    odd = rsample(D.Normal(0.0, 1.0), (7,), generator=torch.Generator())  # odd count: Box-Muller
    assert odd.shape == (7,) and np.isfinite(odd.numpy()).all()
