"""Fuzz cases of bayestorch.testing (the helpers users test their own samplers with).

The ``assert_*`` helpers raise ``AssertionError`` when a sample fails its test: that is their
output, so the cases turn it into a value; any other exception is judged by the contract.
"""

from __future__ import annotations

import numpy as np
import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

T = bt.testing

exempt(
    "constant",
    "the default declared failure rate of a statistical test",
    "testing.DEFAULT_FAILURE_RATE",
)
exempt(
    "protocol",
    "a pytest mixin (its tests run against the library's kernels in tests/mcmc)",
    "testing.KernelTestCase",
)
exempt(
    "protocol",
    "a pytest mixin (its tests run against the library's kernels in tests/gp)",
    "testing.GPKernelTestCase",
)


def _verdict(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except AssertionError:
        return False
    return True


def _normal_cdf(x):
    from scipy.stats import norm

    return norm.cdf(x)


@case("testing.assert_ks", "testing.ks_pvalue")
def _(f):
    x = f.randn(f.size(0, 30))
    p = T.ks_pvalue(f.arg("samples", x), f.arg("cdf", _normal_cdf))
    assert 0.0 <= p <= 1.0
    return _verdict(T.assert_ks, x, _normal_cdf, failure_rate=f.arg("failure_rate", 1e-3)), p


@case("testing.assert_ks_2samp", "testing.ks_2samp_pvalue")
def _(f):
    a, b = f.randn(f.size(0, 20)), f.randn(f.size(0, 20))
    p = T.ks_2samp_pvalue(f.arg("a", a), f.arg("b", b))
    assert 0.0 <= p <= 1.0
    return _verdict(T.assert_ks_2samp, a, b, failure_rate=f.arg("failure_rate", 1e-3)), p


@case("testing.assert_counts", "testing.chisquare_pvalue", "testing.categorical_counts")
def _(f):
    k = f.size(1, 5)
    draws = torch.randint(0, k, (f.size(0, 60),), generator=f.generator())
    counts = T.categorical_counts(f.arg("samples", draws), f.arg("num_categories", k))
    assert counts.shape == (k,)
    probs = np.full(k, 1.0 / k)
    p = T.chisquare_pvalue(
        f.arg("counts", counts), f.arg("probs", probs), min_expected=f.arg("min_expected", 5.0)
    )
    return _verdict(T.assert_counts, counts, probs, failure_rate=1e-3), p


@case("testing.assert_z", "testing.z_threshold")
def _(f):
    n = f.size(1, 4)
    z = T.z_threshold(f.arg("failure_rate", 1e-3), f.arg("num_tests", n))
    assert z > 0
    est, truth, se = f.randn(n), f.randn(n), f.rand(n, lo=0.5, hi=1.0)
    # a NaN estimate fails the test (AssertionError, the helper's verdict): nan_ok
    return _verdict(
        T.assert_z,
        f.arg("estimate", est, nan_ok=True),
        f.arg("truth", truth),
        f.arg("std_error", se),
    ), z


@case("testing.assert_mcmc_mean")
def _(f):
    chains, draws, d = f.size(1, 3), f.size(4, 20), f.size(1, 2)
    x = f.randn(chains, draws, d)
    # non-finite draws fail the test (AssertionError, the helper's verdict): nan_ok
    return _verdict(
        T.assert_mcmc_mean,
        f.arg("samples", x, nan_ok=True),
        f.arg("truth", torch.zeros(d)),
        failure_rate=f.arg("failure_rate", 1e-3),
    )


def _rwm(f):
    target = bt.testing.cases.conformance_target(2, dtype=f.dtype)
    return target, bt.mcmc.RandomWalkMetropolis(target.log_prob, 0.8).to(f.dtype)


@case("testing.run_kernel", "testing.check_kernel_shapes")
def _(f):
    target, kernel = _rwm(f)
    x = f.randn(f.size(1, 3), 2)
    T.check_kernel_shapes(
        f.arg("kernel", kernel), f.arg("position", x), num_steps=f.arg("num_steps", 2)
    )
    state, info = T.run_kernel(kernel, x, f.arg("num_steps", 2), generator=f.generator())
    return f.expect(state.position, x.shape)


@case("testing.check_kernel_reproducible", "testing.check_kernel_resume", examples=0.3)
def _(f):
    target, _ = _rwm(f)

    def make():
        return bt.mcmc.RandomWalkMetropolis(target.log_prob, 0.8).to(f.dtype)

    x = f.randn(f.size(1, 3), 2)
    T.check_kernel_reproducible(f.arg("make_kernel", make), f.arg("position", x), num_steps=2)
    T.check_kernel_resume(make, x, num_steps=f.arg("num_steps", 2))


@case("testing.check_kernel_invariance", examples=0.2)
def _(f):
    target, kernel = _rwm(f)
    return _verdict(
        T.check_kernel_invariance,
        f.arg("kernel", kernel),
        f.arg("target", target),
        num_chains=f.arg("num_chains", 200),
        num_steps=f.arg("num_steps", 2),
        generator=f.generator(),
    )


@case(
    "testing.check_gp_kernel_matrix",
    "testing.check_gp_kernel_batching",
    "testing.check_gp_kernel_gradients",
    examples=0.3,
)
def _(f):
    kernel = f.draw(st.sampled_from([bt.gp.RBF(1.0), bt.gp.Matern(1.5, 1.0)]))
    g = f.generator()
    T.check_gp_kernel_matrix(f.arg("kernel", kernel), g, dim=f.arg("dim", f.size(1, 3)))
    T.check_gp_kernel_batching(kernel, g)
    T.check_gp_kernel_gradients(kernel, g)
