"""Fuzz cases of bayestorch.dpp."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

P = bt.dpp

exempt("namedtuple", "eigenvalues and eigenvectors of an L-ensemble", "dpp.Spectrum")


def _kernel(f, n, batch=()):
    """``(name, value)``: an L-ensemble, a marginal kernel or features of ``n`` items."""
    kind = f.draw(st.sampled_from(["L", "K", "features"]))
    if kind == "L":
        return kind, f.spd(n, batch, ridge=0.1)
    if kind == "K":
        L = f.spd(n, batch, ridge=0.1)
        eye = torch.eye(n, dtype=f.dtype, device=f.device)
        return kind, L @ torch.linalg.inv(L + eye)
    return kind, f.randn(*batch, n, f.size(1, 3))


@case("dpp.DPP")
def _(f):
    n = f.size(0, 5)
    batch = f.shape(max_dims=1, hi=2)
    kind, value = _kernel(f, n, batch)
    dpp = P.DPP(**{kind: f.arg(kind, value, shape_fuzz=kind != "features")})
    sample_shape = f.shape(max_dims=2, hi=3)
    method = f.draw(st.sampled_from([None, "spectral", "cholesky"]))
    mask = dpp.sample(
        f.arg("sample_shape", sample_shape),
        generator=f.generator(),
        method=f.arg("method", method) if method else None,
    )
    f.expect(mask, (*sample_shape, *batch, n), dtype=torch.bool)
    lp = dpp.log_prob(f.arg("value", mask, aliases=("mask",)))
    f.allow_neg_inf()
    return f.expect(lp, (*sample_shape, *batch)), dpp.marginal_kernel, dpp.expected_size


@case("dpp.KDPP")
def _(f):
    n = f.size(1, 5)
    k = f.size(0, n)
    L = f.spd(n, ridge=0.1)
    dpp = P.KDPP(f.arg("L", L, shape_fuzz=True), f.arg("k", k))
    sample_shape = f.shape(max_dims=2, hi=3)
    mask = dpp.sample(f.arg("sample_shape", sample_shape), generator=f.generator())
    f.expect(mask, (*sample_shape, n), dtype=torch.bool)
    assert bool((mask.sum(-1) == k).all())
    lp = dpp.log_prob(f.arg("value", mask, aliases=("mask",)))
    f.allow_neg_inf()
    return f.expect(lp, sample_shape), dpp.inclusion_probs


@case("dpp.DPPBatchSampler", examples=0.5)
def _(f):
    n = f.size(1, 8)
    d = f.size(1, 3)
    batch_size = f.size(1, min(n, d))  # a k-DPP needs rank >= k
    sampler = P.DPPBatchSampler(
        f.arg("features", f.randn(n, d)),
        f.arg("batch_size", batch_size),
        num_batches=f.arg("num_batches", f.size(1, 3)),
        seed=f.arg("seed", 0),
    )
    batches = list(sampler)
    for batch in batches:
        assert len(batch) == batch_size and all(0 <= i < n for i in batch)
    return sampler.inclusion_probs


@case("dpp.all_subsets")
def _(f):
    n = f.arg("n", f.size(0, 6))
    return f.expect(P.all_subsets(n), (2**n, n), dtype=torch.bool)


@case("dpp.eigenvector_marginals")
def _(f):
    r = f.size(0, 5)
    k = f.size(0, r)
    lam = f.rand(r, lo=0.1, hi=3.0)
    out = P.eigenvector_marginals(f.arg("eigenvalues", lam), f.arg("k", k))
    return f.expect(out, (r,))


@case("dpp.log_elementary_symmetric")
def _(f):
    r = f.size(0, 5)
    k = f.size(0, r)
    lam = f.rand(r, lo=0.0, hi=3.0)
    k = f.arg("k", k)
    out = P.log_elementary_symmetric(f.arg("eigenvalues", lam), k)
    f.allow_neg_inf()  # log e_l = -inf for l > n
    return f.expect(out, (k + 1, r + 1))


@case("dpp.greedy_map")
def _(f):
    n = f.size(1, 5)
    k = f.size(0, n)
    L = f.spd(n, ridge=0.1)
    out = P.greedy_map(f.arg("L", L, shape_fuzz=True), f.arg("k", k))
    return f.expect(out, None)


@case("dpp.l_ensemble_spectrum")
def _(f):
    n = f.size(0, 5)
    use_features = f.draw(st.booleans())
    if use_features:
        d = f.size(1, 3)
        spec = P.l_ensemble_spectrum(features=f.arg("features", f.randn(n, d)))
        r = min(n, d)
    else:
        spec = P.l_ensemble_spectrum(f.arg("L", f.spd(n, ridge=0.1), shape_fuzz=True))
        r = n
    f.expect(spec.eigenvalues, (r,))
    return f.expect(spec.eigenvectors, (n, r))


@case("dpp.log_det_subsets")
def _(f):
    n = f.size(0, 5)
    sample = f.shape(max_dims=2, hi=3)
    mask = torch.rand(*sample, n, generator=f.generator(), device=f.device) < 0.5
    out = P.log_det_subsets(f.arg("mask", mask), L=f.arg("L", f.spd(n, ridge=0.1), shape_fuzz=True))
    return f.expect(out, sample)


@case("dpp.random_fourier_features")
def _(f):
    n, d, m = f.size(0, 5), f.size(1, 3), f.size(1, 6)
    out = P.random_fourier_features(
        f.arg("x", f.randn(n, d)),
        f.arg("num_features", m),
        f.arg("lengthscale", 1.0),
        generator=f.generator(),
    )
    return f.expect(out, (n, m))


@case("dpp.sample_cholesky")
def _(f):
    n = f.size(0, 5)
    b = f.size(1, 2)
    L = f.spd(n, (b,), ridge=0.1)
    K = L @ torch.linalg.inv(L + torch.eye(n, dtype=f.dtype, device=f.device))
    s = f.size(0, 4)
    out = P.sample_cholesky(
        f.arg("marginal_kernel", K, shape_fuzz=True),
        f.arg("num_samples", s),
        generator=f.generator(),
    )
    return f.expect(out, (s, b, n), dtype=torch.bool)


@case("dpp.sample_projection_dpp")
def _(f):
    n = f.size(1, 5)
    r = f.size(1, n)
    q = torch.linalg.qr(f.randn(n, r))[0]
    s = f.size(0, 4)
    selected = torch.rand(s, r, generator=f.generator(), device=f.device) < 0.5
    out = P.sample_projection_dpp(
        f.arg("eigenvectors", q), f.arg("selected", selected), generator=f.generator()
    )
    f.expect(out, (s, n), dtype=torch.bool)
    assert bool((out.sum(-1) == selected.sum(-1)).all())
    return out
