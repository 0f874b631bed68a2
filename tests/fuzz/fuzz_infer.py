"""Fuzz cases of bayestorch.infer (the model language) and its top-level primitives."""

from __future__ import annotations

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

I = bt.infer  # noqa: E741

exempt("exception", "the error naming the site of a model that has no density", "infer.ModelError")
exempt("dataclass", "a latent site's record in a ModelDensity (built by it)", "infer.LatentSite")
exempt(
    "dataclass", "an observed site's record in a ModelDensity (built by it)", "infer.ObservedSite"
)
exempt("dataclass", "the named draws of mcmc()/advi() (fuzzed through them)", "infer.Posterior")
exempt("type", "the result of advi() (fuzzed through it)", "infer.ADVIResult")


def _model(sigma, y=None):
    mu = I.sample("mu", D.Normal(0.0, 5.0))
    tau = I.sample("tau", D.HalfCauchy(2.0))
    with I.plate("school", sigma.shape[0]):
        theta = I.sample("theta", D.Normal(mu, tau))
        I.sample("y", D.Normal(theta, sigma), obs=y)
    I.deterministic("shift", mu + 1.0)
    I.factor("soft", -0.01 * mu**2)


def _data(f):
    j = f.size(1, 3)
    return j, f.rand(j, lo=0.5, hi=2.0), f.randn(j)


@case("infer.ModelDensity")
def _(f):
    j, sigma, y = _data(f)
    density = I.ModelDensity(
        f.arg("model", _model),
        # the model's data: torch's check names the parameter (scale)
        f.arg("sigma", sigma, aliases=("scale", "y")),
        y=f.arg("y", y, shape_fuzz=("last",)),
    )
    chains = f.size(1, 3)
    z = density.init(f.arg("chains", chains), generator=f.generator())
    f.expect(z, (chains, density.dim))
    lp = density.log_prob(f.arg("z", z, shape_fuzz=("last",), propagates=True))
    return f.expect(lp, (chains,)), density.constrain(z)


@case("infer.mcmc", examples=0.3)
def _(f):
    j, sigma, y = _data(f)
    chains, draws = f.size(1, 2), f.size(1, 3)
    post = I.mcmc(
        f.arg("model", _model),
        sigma,
        y=f.arg("y", y, shape_fuzz=("last",)),
        kernel=f.arg("kernel", f.draw(st.sampled_from(["nuts", "rwm"]))),
        chains=f.arg("chains", chains),
        num_warmup=f.arg("num_warmup", 2),
        num_samples=f.arg("num_samples", draws),
        generator=f.generator(),
        progress=False,
    )
    f.allow_neg_inf()
    return f.expect(post.draws["theta"], (chains, draws, j)), post.draws


@case("infer.advi", examples=0.3)
def _(f):
    j, sigma, y = _data(f)
    fit = I.advi(
        f.arg("model", _model),
        sigma,
        y=f.arg("y", y, shape_fuzz=("last",)),
        guide=f.arg("guide", f.draw(st.sampled_from(["meanfield", "fullrank"]))),
        num_steps=f.arg("num_steps", f.size(1, 5)),
        lr=f.arg("lr", 0.05),
        generator=f.generator(),
        progress=False,
    )
    n = f.size(1, 3)
    draws = fit.sample(f.arg("num_samples", n), generator=f.generator())
    return f.expect(draws["theta"], (1, n, j)), fit.elbo


@case("infer.sghmc", examples=0.3)
def _(f):
    j, sigma, y = _data(f)
    chains, draws = f.size(1, 2), f.size(1, 3)
    post = I.sghmc(
        f.arg("model", _model),
        sigma,
        y=f.arg("y", y, shape_fuzz=("last",)),
        chains=f.arg("chains", chains),
        num_burnin=f.arg("num_burnin", 2),
        num_samples=f.arg("num_samples", draws),
        lr=f.arg("lr", 1e-3),
        generator=f.generator(),
        progress=False,
    )
    return f.expect(post.draws["theta"], (chains, draws, j))


@case("infer.map", examples=0.3)
def _(f):
    j, sigma, y = _data(f)
    out = I.map(
        f.arg("model", _model),
        sigma,
        y=f.arg("y", y, shape_fuzz=("last",)),
        num_steps=f.arg("num_steps", f.size(1, 5)),
        generator=f.generator(),
    )
    return f.expect(out["theta"], (j,)), out


@case("infer.predictive", examples=0.5)
def _(f):
    j, sigma, y = _data(f)
    n = f.size(1, 3)
    out = I.predictive(
        f.arg("model", _model),
        None,
        sigma,
        num_samples=f.arg("num_samples", n),
        generator=f.generator(),
    )
    return f.expect(out["y"], (n, j)), out


@case("infer.GaussianGuide")
def _(f):
    d = f.size(1, 3)
    guide = I.GaussianGuide(
        f.arg("loc", f.randn(d)),
        f.arg("kind", f.draw(st.sampled_from(["meanfield", "fullrank"]))),
        f.arg("init_scale", 0.1),
    )
    return f.expect(guide.covariance(), (d, d)), guide.scale_tril()


@case("infer.biject_to")
def _(f):
    constraint = f.draw(
        st.sampled_from(
            [
                D.constraints.real,
                D.constraints.positive,
                D.constraints.unit_interval,
                D.constraints.simplex,
                D.constraints.interval(-1.0, 2.0),
                D.constraints.corr_cholesky,
                D.constraints.positive_definite,
            ]
        )
    )
    transform = I.biject_to(f.arg("constraint", constraint))
    return transform


# ---- the primitives, each run inside a model (arguments drawn once, outside the model)


def _primitive_model(kind, f):
    if kind == "sample":
        name, fn, obs = (
            f.arg("name", "x"),
            f.arg("fn", D.Normal(0.0, 1.0)),
            f.arg("obs", f.randn(2), aliases=("o",)),
        )

        def model():
            I.sample(name, fn)
            I.sample("o", D.Normal(torch.zeros(2, dtype=f.dtype), 1.0), obs=obs)  # errors name "o"

    elif kind == "deterministic":
        name, value = f.arg("name", "d"), f.arg("value", f.randn(2))

        def model():
            x = I.sample("x", D.Normal(0.0, 1.0))
            I.deterministic(name, x + value)

    elif kind == "factor":
        name, log_weight = f.arg("name", "fac"), f.arg("log_weight", f.randn(2), aliases=("fac",))

        def model():
            I.sample("x", D.Normal(0.0, 1.0))
            I.factor(name, log_weight)

    else:
        name, size, sub = f.arg("name", "p"), f.arg("size", 3), f.arg("subsample_size", 2)
        y = f.randn(3)

        def model():
            x = I.sample("x", D.Normal(0.0, 1.0))
            with I.plate(name, size, subsample_size=sub) as index:
                I.sample("y", D.Normal(x, 1.0), obs=y[index])

    return model


def _primitive(kind):
    def run(f):
        density = I.ModelDensity(_primitive_model(kind, f))
        chains = f.size(1, 3)
        z = density.init(chains, generator=f.generator())
        return f.expect(density.log_prob(z), (chains,))

    return run


for _kind in ("sample", "deterministic", "factor", "plate"):
    case(f"infer.{_kind}")(_primitive(_kind))


@case("infer.random_module")
def _(f):
    d = f.size(1, 3)
    net = torch.nn.Linear(d, 1)
    x = f.randn(4, d, dtype=torch.float32)

    name, module, prior = (
        f.arg("name", "net"),
        f.arg("module", net),
        f.arg("prior", D.Normal(0.0, 1.0)),
    )

    def model():
        fn = I.random_module(name, module, prior)
        I.sample("y", D.Normal(fn(x).squeeze(-1), 1.0), obs=torch.zeros(4))

    density = I.ModelDensity(model)
    z = density.init(2, generator=f.generator())
    return f.expect(density.log_prob(z), (2,))
