"""Reference computations for the Kalman tests: exact Gaussian conditioning of the full joint."""

from __future__ import annotations

import math

import torch


def random_system(n, p, generator, dtype=torch.float64, stable=0.9):
    """A random linear-Gaussian model with PD covariances and a stable-ish transition."""

    def spd(k, scale):
        M = torch.randn(k, k, generator=generator, dtype=dtype)
        return scale * (M @ M.T / k + 0.5 * torch.eye(k, dtype=dtype))

    A = torch.randn(n, n, generator=generator, dtype=dtype)
    A = stable * A / torch.linalg.matrix_norm(A, ord=2)
    H = torch.randn(p, n, generator=generator, dtype=dtype)
    B = 0.3 * torch.randn(n, generator=generator, dtype=dtype)
    m0 = torch.randn(n, generator=generator, dtype=dtype)
    return dict(A=A, H=H, Q=spd(n, 0.3), R=spd(p, 0.5), B=B, init_mean=m0, init_cov=spd(n, 1.0))


def simulate(model, batch, steps, generator):
    A, H, Q, R, B = model["A"], model["H"], model["Q"], model["R"], model["B"]
    n, p = A.shape[-1], H.shape[-2]
    dtype = A.dtype
    x = model["init_mean"] + torch.randn(batch, n, generator=generator, dtype=dtype) @ (
        torch.linalg.cholesky(model["init_cov"]).T
    )
    ys, xs = [], []
    LQ, LR = torch.linalg.cholesky(Q), torch.linalg.cholesky(R)
    for _ in range(steps):
        x = x @ A.T + B + torch.randn(batch, n, generator=generator, dtype=dtype) @ LQ.T
        ys.append(x @ H.T + torch.randn(batch, p, generator=generator, dtype=dtype) @ LR.T)
        xs.append(x)
    return torch.stack(xs, 1), torch.stack(ys, 1)


def joint_moments(model, steps):
    """Mean and covariance of (x_1..x_T, y_1..y_T), flattened, built from the model directly."""
    A, H, Q, R, B = model["A"], model["H"], model["Q"], model["R"], model["B"]
    m0, P0 = model["init_mean"], model["init_cov"]
    n = A.shape[-1]
    dtype = A.dtype
    # x = mu + M z with z = (x_0 - m0, w_1, ..., w_T) ~ N(0, blockdiag(P0, Q, ..., Q)).
    nz = n * (steps + 1)
    M = torch.zeros(n * steps, nz, dtype=dtype)
    mu = torch.zeros(n * steps, dtype=dtype)
    prev_row = torch.zeros(n, nz, dtype=dtype)
    prev_row[:, :n] = torch.eye(n, dtype=dtype)
    prev_mu = m0
    for t in range(steps):
        row = A @ prev_row
        row[:, n * (t + 1) : n * (t + 2)] += torch.eye(n, dtype=dtype)
        mu_t = A @ prev_mu + B
        M[n * t : n * (t + 1)] = row
        mu[n * t : n * (t + 1)] = mu_t
        prev_row, prev_mu = row, mu_t
    Z = torch.block_diag(P0, *([Q] * steps))
    Sxx = M @ Z @ M.T
    Hbig = torch.block_diag(*([H] * steps))
    Rbig = torch.block_diag(*([R] * steps))
    Syy = Hbig @ Sxx @ Hbig.T + Rbig
    Sxy = Sxx @ Hbig.T
    return mu, Hbig @ mu, Sxx, Sxy, Syy


def condition(model, y, up_to):
    """Exact p(x_1..x_T | observed entries of y_1..y_up_to) and log p(those entries).

    ``y``: (T, p) with NaN for missing entries. Returns (mean (T, n), cov (T*n, T*n), loglik).
    """
    steps, p = y.shape
    n = model["A"].shape[-1]
    mu_x, mu_y, Sxx, Sxy, Syy = joint_moments(model, steps)
    yflat = y.reshape(-1)
    keep = ~torch.isnan(yflat)
    keep[p * up_to :] = False
    idx = keep.nonzero().squeeze(-1)
    if idx.numel() == 0:
        return mu_x.reshape(steps, n), Sxx, torch.zeros((), dtype=y.dtype)
    Soo = Syy[idx][:, idx]
    resid = yflat[idx] - mu_y[idx]
    K = torch.linalg.solve(Soo, Sxy[:, idx].T).T
    mean = mu_x + K @ resid
    cov = Sxx - K @ Sxy[:, idx].T
    k = idx.numel()
    ll = -0.5 * (resid @ torch.linalg.solve(Soo, resid)) - 0.5 * torch.logdet(Soo)
    ll = ll - 0.5 * k * math.log(2 * math.pi)
    return mean.reshape(steps, n), cov, ll


def block(cov, t, n):
    return cov[n * t : n * (t + 1), n * t : n * (t + 1)]
