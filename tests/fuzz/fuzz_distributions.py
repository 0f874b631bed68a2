"""Fuzz cases of bayestorch.distributions."""

from __future__ import annotations

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

B = bt.distributions

exempt(
    "constant",
    "the table of reparameterised families (data)",
    "distributions.REPARAMETERIZATION_TABLE",
)
exempt(
    "namedtuple", "one row of the reparameterisation table", "distributions.ReparameterizationEntry"
)
exempt(
    "constant", "a torch constraint object (support of Rademacher)", "distributions.plus_minus_one"
)


@case("distributions.Rademacher")
def _(f):
    batch = f.shape(max_dims=2)
    use_logits = f.draw(st.booleans())
    param = f.randn(*batch) if use_logits else f.rand(*batch, lo=0.05, hi=0.95)
    name = "logits" if use_logits else "probs"
    dist = B.Rademacher(**{name: f.arg(name, param)}, validate_args=True)
    sample_shape = f.shape(max_dims=2)
    x = dist.sample(f.arg("sample_shape", sample_shape), generator=f.generator())
    f.expect(x, (*sample_shape, *batch))
    lp = dist.log_prob(f.arg("value", x))
    return f.expect(lp, (*sample_shape, *batch)), dist.entropy(), dist.mean, dist.variance


def _loc_scale(fn, scale_kind="positive"):
    def run(f):
        batch = f.shape(max_dims=2)
        loc = f.randn(*batch)
        scale = f.rand(*batch, lo=0.5, hi=2.0)
        sample_shape = f.shape(max_dims=2)
        out = fn(
            f.arg("loc", propagates=True, value=loc),
            f.arg("scale", propagates=True, value=scale),
            f.arg("sample_shape", sample_shape),
            generator=f.generator(),
        )
        return f.expect(out, (*sample_shape, *batch))

    return run


for _name in (
    "cauchy_rsample",
    "gumbel_rsample",
    "laplace_rsample",
    "log_normal_rsample",
    "normal_box_muller",
):
    case(f"distributions.{_name}")(_loc_scale(getattr(B, _name)))


@case("distributions.exponential_rsample")
def _(f):
    batch = f.shape(max_dims=2)
    sample_shape = f.shape(max_dims=2)
    out = B.exponential_rsample(
        f.arg("rate", propagates=True, value=f.rand(*batch, lo=0.5, hi=2.0)),
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
    )
    return f.expect(out, (*sample_shape, *batch))


@case("distributions.inverse_gamma_rsample")
def _(f):
    batch = f.shape(max_dims=2)
    sample_shape = f.shape(max_dims=2)
    out = B.inverse_gamma_rsample(
        f.arg("concentration", propagates=True, value=f.rand(*batch, lo=1.0, hi=3.0)),
        f.arg("rate", propagates=True, value=f.rand(*batch, lo=0.5, hi=2.0)),
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
    )
    return f.expect(out, (*sample_shape, *batch))


@case("distributions.multivariate_normal_rsample")
def _(f):
    n = f.size(1, 4)
    batch = f.shape(max_dims=1)
    sample_shape = f.shape(max_dims=2)
    scale_tril = torch.linalg.cholesky(f.spd(n, batch))
    out = B.multivariate_normal_rsample(
        f.arg("loc", propagates=True, value=f.randn(*batch, n), shape_fuzz=True),
        f.arg("scale_tril", scale_tril, shape_fuzz=True),
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
    )
    return f.expect(out, (*sample_shape, *batch, n))


@case("distributions.kumaraswamy_log_sticks")
def _(f):
    batch = f.shape(max_dims=2)
    sample_shape = f.shape(max_dims=2)
    log_v, log_1mv = B.kumaraswamy_log_sticks(
        f.arg("a", propagates=True, value=f.rand(*batch, lo=0.5, hi=3.0)),
        f.arg("b", propagates=True, value=f.rand(*batch, lo=0.5, hi=3.0)),
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
    )
    f.allow_neg_inf()  # log v = -inf has probability ~0 but log(1 - v) may underflow
    f.expect(log_v, (*sample_shape, *batch))
    return f.expect(log_1mv, (*sample_shape, *batch))


@case("distributions.kumaraswamy_mean")
def _(f):
    batch = f.shape(max_dims=2)
    out = B.kumaraswamy_mean(
        f.arg("a", propagates=True, value=f.rand(*batch, lo=0.5, hi=3.0)),
        f.arg("b", propagates=True, value=f.rand(*batch, lo=0.5, hi=3.0)),
    )
    return f.expect(out, batch)


@case("distributions.stick_breaking_log_weights")
def _(f):
    batch = f.shape(max_dims=2)
    t = f.size(1, 5)
    v = f.rand(*batch, t, lo=0.05, hi=0.95)
    f.allow_neg_inf()  # log v = -inf (a stick of length 0) is allowed
    log_w, log_rest = B.stick_breaking_log_weights(
        f.arg("log_v", v.log(), shape_fuzz=True, propagates=True),
        f.arg("log_1mv", (-v).log1p(), shape_fuzz=True, propagates=True),
    )
    return f.expect(log_w, (*batch, t)), log_rest


@case("distributions.gem_expected_weights")
def _(f):
    t = f.arg("truncation", f.size(1, 6))
    out = B.gem_expected_weights(
        f.arg("alpha", f.draw(st.sampled_from([0.5, 2.0]))), t, dtype=f.dtype
    )
    return f.expect(out, (t,))


_FAMILIES = [
    lambda f, b: D.Normal(f.randn(*b), f.rand(*b, lo=0.5, hi=2.0)),
    lambda f, b: D.Exponential(f.rand(*b, lo=0.5, hi=2.0)),
    lambda f, b: D.Gumbel(f.randn(*b), f.rand(*b, lo=0.5, hi=2.0)),
    lambda f, b: D.LogNormal(f.randn(*b), f.rand(*b, lo=0.5, hi=2.0)),
    lambda f, b: D.Laplace(f.randn(*b), f.rand(*b, lo=0.5, hi=2.0)),
    lambda f, b: D.Cauchy(f.randn(*b), f.rand(*b, lo=0.5, hi=2.0)),
]


@case("distributions.rsample")
def _(f):
    batch = f.shape(max_dims=2)
    dist = f.draw(st.sampled_from(_FAMILIES))(f, batch)
    sample_shape = f.shape(max_dims=2)
    out = B.rsample(
        f.arg("distribution", dist),
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
    )
    return f.expect(out, (*sample_shape, *batch))
