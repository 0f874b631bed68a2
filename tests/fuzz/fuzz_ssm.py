"""Fuzz cases of bayestorch.ssm."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

S = bt.ssm

exempt("namedtuple", "the result of kalman_filter", "ssm.KalmanFilterResult")
exempt("namedtuple", "the result of kalman_predict", "ssm.KalmanPrediction")
exempt("namedtuple", "the result of rts_smoother", "ssm.KalmanSmootherResult")
exempt("namedtuple", "the result of particle_filter", "ssm.ParticleFilterResult")


def _model(f):
    n, p = f.size(1, 3), f.size(1, 3)
    A = 0.5 * torch.linalg.qr(f.randn(n, n))[0]
    return n, p, A, f.randn(p, n), f.spd(n, ridge=0.2), f.spd(p, ridge=0.2)


def _y(f, p):
    batch, steps = f.size(0, 3), f.size(1, 4)
    y = f.randn(batch, steps, p)
    if batch and f.draw(st.booleans()):
        y[0, 0] = float("nan")  # a missing observation
    return batch, steps, y


@case("ssm.KalmanFilter")
def _(f):
    n, p, A, H, Q, R = _model(f)
    kf = S.KalmanFilter(
        f.arg("A", A, shape_fuzz=True),
        f.arg("H", H, shape_fuzz=True),
        f.arg("Q", Q, shape_fuzz=True),
        f.arg("R", R, shape_fuzz=True),
        method=f.arg("method", f.draw(st.sampled_from(["sequential", "parallel"]))),
    ).to(dtype=f.dtype)
    batch, steps, y = _y(f, p)
    out = kf.filter(f.arg("y", y, nan_ok=True, shape_fuzz=True))
    f.expect(out.means, (batch, steps, n))
    sm = kf.smooth(y)
    pred = kf.predict(y, num_steps=f.arg("num_steps", f.size(1, 3)))
    return out, sm, pred


@case("ssm.kalman_filter", "ssm.rts_smoother")
def _(f):
    n, p, A, H, Q, R = _model(f)
    batch, steps, y = _y(f, p)
    method = f.arg("method", f.draw(st.sampled_from(["sequential", "parallel"])))
    out = S.kalman_filter(
        f.arg("y", y, nan_ok=True, shape_fuzz=True),
        f.arg("A", A, shape_fuzz=True),
        f.arg("H", H, shape_fuzz=True),
        f.arg("Q", Q, shape_fuzz=True),
        f.arg("R", R, shape_fuzz=True),
        f.arg("init_mean", f.randn(n), shape_fuzz=True),
        f.arg("init_cov", f.spd(n), shape_fuzz=True),
        method=method,
    )
    f.expect(out.means, (batch, steps, n))
    f.expect(out.log_likelihood, (batch,))
    sm = S.rts_smoother(out, f.arg("A", A, shape_fuzz=True), method=method)
    return out, f.expect(sm.means, (batch, steps, n))


@case("ssm.kalman_predict")
def _(f):
    n, p, A, H, Q, R = _model(f)
    k = f.size(1, 3)
    batch = f.size(1, 2)
    out = S.kalman_predict(
        f.arg("mean", f.randn(batch, n), shape_fuzz=True, aliases=("cov",)),  # share a batch
        f.arg("cov", f.spd(n, (batch,)), shape_fuzz=True),
        f.arg("A", A, shape_fuzz=True),
        f.arg("H", H, shape_fuzz=True),
        f.arg("Q", Q, shape_fuzz=True),
        f.arg("R", R, shape_fuzz=True),
        f.arg("num_steps", k),
    )
    return f.expect(out.means, (batch, k, n)), out


@case("ssm.associative_scan")
def _(f):
    batch, steps, d = f.size(0, 3), f.size(0, 5), f.size(1, 2)
    x = f.randn(batch, steps, d)
    (out,) = S.associative_scan(
        f.arg("fn", lambda a, b: (a[0] + b[0],)), f.arg("elems", (x,), wrong_types=True)
    )
    assert torch.allclose(out, x.cumsum(1), atol=1e-4)
    return f.expect(out, (batch, steps, d))


@case("ssm.LSTMKalmanFilter")
def _(f):
    n, p = f.size(1, 3), f.size(1, 3)
    lkf = S.LSTMKalmanFilter(
        f.arg("state_dim", n),
        f.arg("obs_dim", p),
        f.arg("hidden_size", f.size(1, 4)),
        min_variance=f.arg("min_variance", 1e-4),
    ).to(dtype=f.dtype)
    batch, steps, y = _y(f, p)
    out = lkf(f.arg("y", y, nan_ok=True, shape_fuzz=True))
    return f.expect(out.means, (batch, steps, n))


def _pf_model(d):
    def init(shape, generator):
        return torch.randn(*shape, d, generator=generator, dtype=torch.float64)

    def transition(x, t, generator):
        return 0.9 * x + 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def observe(y_t, x_t, t):
        return -0.5 * ((y_t[:, None, :] - x_t[..., : y_t.shape[-1]]) ** 2).sum(-1)

    return init, transition, observe


def _pf(f, module):
    d = f.size(1, 2)
    batch, steps = f.size(0, 2), f.size(1, 3)
    y = f.randn(batch, steps, d, dtype=torch.float64)
    init, transition, observe = _pf_model(d)
    n = f.size(1, 8)
    kwargs = dict(
        resampling=f.arg("resampling", f.draw(st.sampled_from(["systematic", "multinomial"]))),
        ess_threshold=f.arg("ess_threshold", 0.5),
    )
    fns = (
        f.arg("init_sample_fn", init),
        f.arg("transition_sample_fn", transition),
        f.arg("observation_log_prob_fn", observe),
    )
    y = f.arg("y", y, nan_ok=True, shape_fuzz=("fewer",))
    if module:
        pf = S.ParticleFilter(*fns, f.arg("num_particles", n), **kwargs)
        out = pf(y, generator=f.generator())
    else:
        out = S.particle_filter(
            y, *fns, f.arg("num_particles", n), generator=f.generator(), **kwargs
        )
    f.expect(out.log_evidence, (batch,))
    return f.expect(out.means, (batch, steps, d)), out


case("ssm.ParticleFilter")(lambda f: _pf(f, True))
case("ssm.particle_filter")(lambda f: _pf(f, False))
