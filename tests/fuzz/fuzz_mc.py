"""Fuzz cases of bayestorch.mc."""

from __future__ import annotations

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

M = bt.mc

exempt("constant", "the name -> function table of resampling schemes", "mc.RESAMPLING_SCHEMES")
exempt("exception", "a warning category", "mc.EnvelopeViolationWarning")
exempt("exception", "an error class (a ValueError)", "mc.NotLogConcaveError")
exempt("namedtuple", "the result of importance_sample", "mc.ImportanceResult")
exempt("namedtuple", "the result of rejection_sample", "mc.RejectionResult")


def _weights(f):
    batch = f.shape(max_dims=2)
    n = f.size(0, 6)
    return batch, n, f.rand(*batch, n, lo=0.0, hi=1.0) + f.draw(st.sampled_from([0.0, 0.1]))


def _resampler(fn, method=False):
    def run(f):
        batch, n, weights = _weights(f)
        m = f.draw(st.sampled_from([None, 1, 5]))
        kwargs = {
            "method": f.arg(
                "method",
                f.draw(st.sampled_from(["systematic", "stratified", "multinomial", "residual"])),
            )
        }
        out = fn(
            f.arg("weights", weights),
            f.arg("num_samples", m) if m is not None else None,
            generator=f.generator(),
            **(kwargs if method else {}),
        )
        return f.expect(out, (*batch, n if m is None else m), dtype=torch.int64)

    return run


for _name in ("multinomial", "stratified", "systematic", "residual"):
    case(f"mc.{_name}")(_resampler(getattr(M, _name)))
case("mc.resample")(_resampler(M.resample, method=True))


@case("mc.importance_ess")
def _(f):
    batch = f.shape(max_dims=2)
    n = f.size(0, 6)
    lw = f.randn(*batch, n, scale=3.0)
    return f.expect(M.importance_ess(f.arg("log_weights", lw, neg_inf_ok=True), dim=-1), batch)


@case("mc.log_normalizer_estimate")
def _(f):
    batch = f.shape(max_dims=2)
    n = f.size(0, 6)
    lw = f.randn(*batch, n, scale=3.0)
    log_z, se = M.log_normalizer_estimate(f.arg("log_weights", lw, neg_inf_ok=True), dim=-1)
    f.expect(log_z, batch)
    return f.expect(se, batch)


def _proposal(f, dim):
    loc = torch.zeros(dim, dtype=f.dtype, device=f.device)
    return D.Independent(D.Normal(loc, 2.0 * torch.ones_like(loc)), 1)


def _log_p(x):
    return -0.5 * (x**2).sum(-1)


@case("mc.as_proposal")
def _(f):
    dim = f.size(1, 3)
    sample_fn, log_prob_fn = M.as_proposal(f.arg("proposal", _proposal(f, dim)))
    x = sample_fn(f.size(0, 4), generator=f.generator())
    return f.expect(log_prob_fn(x), x.shape[:1])


@case("mc.importance_sample")
def _(f):
    dim = f.size(1, 3)
    n = f.size(1, 8)
    out = M.importance_sample(
        f.arg("log_p", _log_p),
        f.arg("proposal", _proposal(f, dim)),
        f.arg("num_samples", n),
        generator=f.generator(),
    )
    f.expect(out.samples, (n, dim))
    return f.expect(out.log_weights, (n,)), out.ess, out.log_normalizer


@case("mc.rejection_sample", examples=0.5)
def _(f):
    dim = f.size(1, 2)
    n = f.size(1, 8)
    log_m = dim * float(torch.log(torch.tensor(2.0))) + 0.01  # N(0, 1) under 2^d N(0, 4)
    out = M.rejection_sample(
        f.arg("log_p", lambda x: _log_p(x) - 0.5 * dim * float(torch.log(torch.tensor(6.2832)))),
        f.arg("proposal", _proposal(f, dim)),
        f.arg("log_M", log_m),
        f.arg("num_samples", n),
        generator=f.generator(),
        batch_size=f.arg("batch_size", 64),
        max_proposals=f.arg("max_proposals", 100_000),
    )
    return f.expect(out.samples, (n, dim)), out.acceptance_rate


@case("mc.AdaptiveRejectionSampler", examples=0.5)
def _(f):
    lo = f.draw(st.sampled_from([-float("inf"), -1.0]))
    hi = f.draw(st.sampled_from([float("inf"), 2.0]))
    points = f.draw(st.sampled_from([None, [-0.5, 0.5], [0.0]]))
    sampler = M.AdaptiveRejectionSampler(
        f.arg("log_p", lambda x: -0.5 * x**2),
        f.arg("domain", (lo, hi)),
        f.arg("initial_points", torch.tensor(points, dtype=f.dtype)) if points else None,
        dtype=f.dtype,
    )
    n = f.arg("num_samples", f.size(0, 6))
    out = sampler.sample(n, generator=f.generator())
    return f.expect(out, (n,))
