"""Fuzz cases of bayestorch.utils."""

from __future__ import annotations

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

U = bt.utils

exempt("type", "a typing alias (Callable[[Tensor], Tensor])", "utils.LogProbFn")
exempt("exception", "an error class (a ValueError)", "utils.NotPSDError")


def _log_p(x):
    return -0.5 * (x**2).sum(-1)


@case("utils.CompiledLogProb")
def _(f):
    # Construction and the eager call; the compiled value_and_grad is covered by tests/utils
    # (compiling takes seconds, too slow for a fuzz example).
    chains, dim = f.size(0, 3), f.size(1, 3)
    fn = U.CompiledLogProb(f.arg("log_prob_fn", _log_p))
    return f.expect(fn(f.randn(chains, dim)), (chains,))


@case("utils.log_prob_and_grad")
def _(f):
    chains, dim = f.size(0, 3), f.size(1, 3)
    lp, grad = U.log_prob_and_grad(
        f.arg("log_prob_fn", _log_p),
        # a NaN position gives a NaN log-density, which the kernels reject (a divergence)
        f.arg(
            "position",
            f.randn(chains, dim),
            shape_fuzz=True,
            propagates=True,
            aliases=("positions",),
        ),
    )
    f.expect(lp, (chains,))
    return f.expect(grad, (chains, dim))


@case("utils.check_finite")
def _(f):
    x = f.randn(*f.shape())
    return U.check_finite(f.arg("name", "x"), f.arg("tensor", x, aliases=("x",)))


@case("utils.check_last_dim")
def _(f):
    shape = f.shape(min_dims=1)
    return U.check_last_dim(
        f.arg("name", "x"),
        f.arg("tensor", f.randn(*shape), aliases=("x",)),
        f.arg("size", shape[-1], aliases=("x",)),
        min_ndim=f.arg("min_ndim", 1, aliases=("x",)),
    )


@case("utils.draw")
def _(f):
    batch = f.shape(max_dims=2)
    family = f.draw(st.sampled_from(["normal", "gamma", "mvn"]))
    if family == "normal":
        dist, event = D.Normal(f.randn(*batch), f.rand(*batch, lo=0.5, hi=2.0)), ()
    elif family == "gamma":
        dist, event = D.Gamma(f.rand(*batch, lo=0.5, hi=2.0), 1.0), ()
    else:
        n = f.size(1, 3)
        # torch's own positive-definite check cannot reshape an empty batch (its bug,
        # not draw's): build the family unvalidated; f.spd is positive definite.
        mvn = D.MultivariateNormal(f.randn(*batch, n), f.spd(n, batch), validate_args=False)
        dist, event = mvn, (n,)
    sample_shape = f.shape(max_dims=2)
    out = U.draw(
        f.arg("distribution", dist), f.arg("sample_shape", sample_shape), generator=f.generator()
    )
    return f.expect(out, (*sample_shape, *batch, *event))


@case("utils.make_generator")
def _(f):
    g = U.make_generator(f.arg("seed", f.draw(st.integers(0, 2**31))), f.device)
    return torch.rand(2, generator=g, device=f.device)


@case("utils.rand_open01")
def _(f):
    shape = f.shape()
    out = U.rand_open01(f.arg("shape", shape), generator=f.generator(), dtype=f.dtype)
    assert bool(((out > 0) & (out < 1)).all())
    return f.expect(out, shape)


@case("utils.safe_cholesky")
def _(f):
    n = f.size(0, 4)
    batch = f.shape(max_dims=1)
    a = f.spd(n, batch, ridge=f.draw(st.sampled_from([0.5, 0.0])))
    # an infinite entry gives an infinite factor (like torch.linalg.cholesky); NaN raises
    out = U.safe_cholesky(f.arg("matrix", a, shape_fuzz=True, propagates=True), name="matrix")
    return f.expect(out, (*batch, n, n))


@case("utils.symmetrize")
def _(f):
    n = f.size(0, 4)
    batch = f.shape(max_dims=1)
    out = U.symmetrize(f.arg("matrix", f.randn(*batch, n, n), shape_fuzz=True, propagates=True))
    return f.expect(out, (*batch, n, n))
