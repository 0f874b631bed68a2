"""Kalman filter and RTS smoother: exact conditioning, pykalman, parallel scan, missing data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayestorch.ssm import associative_scan, kalman_filter, kalman_predict, rts_smoother
from bayestorch.utils.linalg import NotPSDError
from tests.ssm.helpers import block, condition, random_system, simulate

METHODS = ["sequential", "parallel"]
ARGS = ("A", "H", "Q", "R", "init_mean", "init_cov", "B")


def run_filter(model, y, method, **kwargs):
    return kalman_filter(y, *(model[k] for k in ARGS), method=method, **kwargs)


def with_missing(y):
    """Knock out a whole row, single components, and the first step of one sequence."""
    y = y.clone()
    y[0, 2, 1] = float("nan")
    y[0, 4] = float("nan")
    y[1, 0, 0] = float("nan")
    y[1, 3, 1] = float("nan")
    return y


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("missing", [False, True])
def test_filter_and_smoother_equal_exact_conditioning(method, missing):
    g = torch.Generator().manual_seed(1)
    n, p, steps = 3, 2, 7
    model = random_system(n, p, g)
    _, y = simulate(model, 2, steps, g)
    if missing:
        y = with_missing(y)
    out = run_filter(model, y, method)
    smooth = rts_smoother(out, model["A"], method=method)
    for b in range(2):
        for t in range(steps):
            # filtering: condition on the observed entries of y_1..y_{t+1}
            mean, cov, ll = condition(model, y[b], t + 1)
            torch.testing.assert_close(out.means[b, t], mean[t], atol=1e-8, rtol=0)
            torch.testing.assert_close(out.covs[b, t], block(cov, t, n), atol=1e-8, rtol=0)
            torch.testing.assert_close(
                out.step_log_likelihoods[b, : t + 1].sum(), ll, atol=1e-8, rtol=0
            )
        mean, cov, ll = condition(model, y[b], steps)
        torch.testing.assert_close(out.log_likelihood[b], ll, atol=1e-8, rtol=0)
        torch.testing.assert_close(smooth.means[b], mean, atol=1e-8, rtol=0)
        for t in range(steps):
            torch.testing.assert_close(smooth.covs[b, t], block(cov, t, n), atol=1e-8, rtol=0)
        # smoother gains give the lag-one cross-covariances of the joint posterior
        for t in range(steps - 1):
            cross = cov[n * t : n * (t + 1), n * (t + 1) : n * (t + 2)]
            torch.testing.assert_close(
                smooth.gains[b, t] @ smooth.covs[b, t + 1], cross, atol=1e-8, rtol=0
            )


@pytest.mark.parametrize("method", METHODS)
def test_missing_component_equals_model_without_it(method):
    """A NaN component filters exactly like a model whose H and R drop that component."""
    g = torch.Generator().manual_seed(2)
    model = random_system(2, 2, g)
    _, y = simulate(model, 1, 1, g)
    y_missing = y.clone()
    y_missing[0, 0, 1] = float("nan")
    out = run_filter(model, y_missing, method)
    reduced = dict(model, H=model["H"][:1], R=model["R"][:1, :1])
    ref = run_filter(reduced, y[..., :1], method)
    torch.testing.assert_close(out.means, ref.means, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.covs, ref.covs, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.log_likelihood, ref.log_likelihood, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_all_missing_gives_the_prior(method):
    g = torch.Generator().manual_seed(3)
    model = random_system(2, 1, g)
    y = torch.full((1, 5, 1), float("nan"), dtype=torch.float64)
    out = run_filter(model, y, method)
    mean, cov = model["init_mean"], model["init_cov"]
    for t in range(5):
        mean = model["A"] @ mean + model["B"]
        cov = model["A"] @ cov @ model["A"].T + model["Q"]
        torch.testing.assert_close(out.means[0, t], mean, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.covs[0, t], cov, atol=1e-12, rtol=0)
    assert torch.all(out.log_likelihood == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pykalman(seed):
    pykalman = pytest.importorskip("pykalman")
    g = torch.Generator().manual_seed(seed)
    n, p, steps = 3, 2, 30
    model = random_system(n, p, g)
    _, y = simulate(model, 1, steps, g)
    y[0, 5] = float("nan")  # pykalman masks whole time steps only
    y[0, 17] = float("nan")
    A, Q, B = model["A"], model["Q"], model["B"]
    # pykalman's initial state is x_1's prior: map ours (x_0) through one prediction.
    kf = pykalman.KalmanFilter(
        transition_matrices=A.numpy(),
        observation_matrices=model["H"].numpy(),
        transition_covariance=Q.numpy(),
        observation_covariance=model["R"].numpy(),
        transition_offsets=B.numpy(),
        observation_offsets=np.zeros(p),
        initial_state_mean=(A @ model["init_mean"] + B).numpy(),
        initial_state_covariance=(A @ model["init_cov"] @ A.T + Q).numpy(),
    )
    obs = np.ma.masked_invalid(y[0].numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_means, ref_covs = kf.filter(obs)
        ref_smooth_means, ref_smooth_covs = kf.smooth(obs)
        ref_ll = kf.loglikelihood(obs)
    for method in METHODS:
        out = run_filter(model, y, method)
        smooth = rts_smoother(out, A, method=method)
        np.testing.assert_allclose(out.means[0].numpy(), ref_means, atol=1e-7, rtol=0)
        np.testing.assert_allclose(out.covs[0].numpy(), ref_covs, atol=1e-7, rtol=0)
        np.testing.assert_allclose(out.log_likelihood[0].item(), ref_ll, atol=1e-7, rtol=0)
        np.testing.assert_allclose(smooth.means[0].numpy(), ref_smooth_means, atol=1e-7, rtol=0)
        np.testing.assert_allclose(smooth.covs[0].numpy(), ref_smooth_covs, atol=1e-7, rtol=0)


def test_parallel_equals_sequential_long():
    """T = 1000, time-varying transition, a batch with its own observation noise, gaps."""
    g = torch.Generator().manual_seed(4)
    n, p, steps, batch = 4, 2, 1000, 3
    model = random_system(n, p, g)
    _, y = simulate(model, batch, steps, g)
    y[0, 100:150] = float("nan")
    y[1, ::7, 0] = float("nan")
    angle = 0.05 * torch.arange(steps, dtype=torch.float64)
    A = model["A"].expand(steps, n, n).clone()
    A[:, 0, 0] = 0.8 * torch.cos(angle)
    R = model["R"] * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).view(batch, 1, 1, 1)
    model = dict(model, A=A, R=R)
    seq = run_filter(model, y, "sequential")
    par = run_filter(model, y, "parallel")
    for a, b in zip(seq, par, strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    sm_seq = rts_smoother(seq, A, method="sequential")
    sm_par = rts_smoother(seq, A, method="parallel")
    torch.testing.assert_close(sm_seq.means, sm_par.means, atol=1e-8, rtol=0)
    torch.testing.assert_close(sm_seq.covs, sm_par.covs, atol=1e-8, rtol=0)


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 13])
def test_associative_scan_prefix_sums(steps):
    x = torch.arange(2 * steps, dtype=torch.float64).reshape(2, steps)
    (out,) = associative_scan(lambda a, b: (a[0] + b[0],), (x,))
    torch.testing.assert_close(out, x.cumsum(1))
    # non-commutative: 2x2 matrix products, earlier @ later ordered as later @ earlier
    m = torch.randn(2, steps, 2, 2, generator=torch.Generator().manual_seed(steps))
    (prod,) = associative_scan(lambda a, b: (b[0] @ a[0],), (m,))
    ref = m[:, 0]
    for t in range(1, steps):
        ref = m[:, t] @ ref
    torch.testing.assert_close(prod[:, -1], ref)


@pytest.mark.parametrize("method", METHODS)
def test_time_and_batch_varying_parameters(method):
    """Per-time and per-sequence parameters equal separate runs with constant ones."""
    g = torch.Generator().manual_seed(5)
    m1, m2 = random_system(2, 1, g), random_system(2, 1, g)
    _, y1 = simulate(m1, 1, 6, g)
    _, y2 = simulate(m2, 1, 6, g)
    stacked = {
        k: torch.stack([m1[k], m2[k]]).unsqueeze(1) if k in ("A", "H", "Q", "R", "B") else None
        for k in ARGS
    }
    stacked["init_mean"] = torch.stack([m1["init_mean"], m2["init_mean"]])
    stacked["init_cov"] = torch.stack([m1["init_cov"], m2["init_cov"]])
    stacked["A"] = stacked["A"].expand(2, 6, 2, 2)  # explicitly time-varying shape
    out = run_filter(stacked, torch.cat([y1, y2]), method)
    for b, (m, y) in enumerate([(m1, y1), (m2, y2)]):
        ref = run_filter(m, y, method)
        torch.testing.assert_close(out.means[b], ref.means[0])
        torch.testing.assert_close(out.log_likelihood[b], ref.log_likelihood[0])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("missing", [False, True])  # shared-covariance path / general path
def test_gradients_match_finite_differences(method, missing):
    g = torch.Generator().manual_seed(6)
    model = random_system(2, 1, g)
    _, y = simulate(model, 2, 4, g)
    if missing:
        y[0, 1] = float("nan")

    def loglik(A, H, Q_factor, R_factor, B):
        Q = Q_factor @ Q_factor.T + 0.1 * torch.eye(2, dtype=torch.float64)
        R = R_factor @ R_factor.T + 0.1 * torch.eye(1, dtype=torch.float64)
        out = kalman_filter(y, A, H, Q, R, model["init_mean"], model["init_cov"], B, method=method)
        return out.log_likelihood.sum() + rts_smoother(out, A, method=method).means.sum()

    inputs = tuple(
        x.clone().requires_grad_(True)
        for x in (model["A"], model["H"], model["Q"], model["R"], model["B"])
    )
    assert torch.autograd.gradcheck(loglik, inputs)


@pytest.mark.parametrize("method", METHODS)
def test_float32_close_to_float64(method, device):
    g = torch.Generator().manual_seed(7)
    model = random_system(4, 2, g)
    _, y = simulate(model, 5, 200, g)
    ref = run_filter(model, y, method)
    model32 = {k: v.float().to(device) for k, v in model.items()}
    out = run_filter(model32, y.float().to(device), method)
    assert out.means.dtype == torch.float32 and out.means.device.type == device.type
    torch.testing.assert_close(out.means.cpu().double(), ref.means, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(
        out.log_likelihood.cpu().double(), ref.log_likelihood, atol=0, rtol=1e-4
    )


def test_kalman_predict_propagates_the_last_filtered_state():
    g = torch.Generator().manual_seed(8)
    model = random_system(2, 1, g)
    _, y = simulate(model, 3, 5, g)
    out = run_filter(model, y, "sequential")
    pred = kalman_predict(
        out.means[:, -1],
        out.covs[:, -1],
        model["A"],
        model["H"],
        model["Q"],
        model["R"],
        2,
        model["B"],
    )
    assert pred.means.shape == (3, 2, 2) and pred.observation_covs.shape == (3, 2, 1, 1)
    m1 = out.means[:, -1] @ model["A"].T + model["B"]
    m2 = m1 @ model["A"].T + model["B"]
    torch.testing.assert_close(pred.means[:, 1], m2)
    torch.testing.assert_close(pred.observation_means[:, 1], m2 @ model["H"].T)


# --------------------------------------------------------------------------- bad input


def test_rejects_non_psd_covariances():
    g = torch.Generator().manual_seed(9)
    model = random_system(2, 1, g)
    _, y = simulate(model, 1, 3, g)
    bad = dict(model, Q=torch.tensor([[1.0, 0.0], [0.0, -0.5]], dtype=torch.float64))
    with pytest.raises(NotPSDError, match="Q .*positive semi-definite"):
        run_filter(bad, y, "sequential")
    bad = dict(model, init_cov=torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(NotPSDError, match="init_cov .*symmetric"):
        run_filter(bad, y, "parallel")
    bad = dict(model, R=torch.zeros(1, 1, dtype=torch.float64))
    with pytest.raises(NotPSDError, match="innovation covariance"):
        run_filter(dict(bad, H=torch.zeros(1, 2, dtype=torch.float64)), y, "sequential")


def test_rejects_mismatched_shapes_and_nan_parameters():
    g = torch.Generator().manual_seed(10)
    model = random_system(2, 1, g)
    _, y = simulate(model, 2, 3, g)
    with pytest.raises(ValueError, match=r"H must have shape \(1, 2\)"):
        run_filter(dict(model, H=torch.ones(1, 3, dtype=torch.float64)), y, "sequential")
    with pytest.raises(ValueError, match=r"R must have shape \(1, 1\)"):
        run_filter(dict(model, R=torch.eye(2, dtype=torch.float64)), y, "sequential")
    with pytest.raises(ValueError, match="A of shape .* does not broadcast"):
        run_filter(
            dict(model, A=torch.eye(2, dtype=torch.float64).expand(5, 2, 2)), y, "sequential"
        )
    with pytest.raises(ValueError, match=r"init_mean must have shape \(2,\)"):
        run_filter(dict(model, init_mean=torch.zeros(3, dtype=torch.float64)), y, "sequential")
    with pytest.raises(ValueError, match=r"y must have shape \(batch, T, obs_dim\)"):
        run_filter(model, y[0], "sequential")
    nan_A = model["A"].clone()
    nan_A[0, 1] = float("nan")
    with pytest.raises(ValueError, match="A of shape .* NaN"):
        run_filter(dict(model, A=nan_A), y, "sequential")
    with pytest.raises(ValueError, match="method must be one of"):
        run_filter(model, y, "fast")


@pytest.mark.parametrize("method", METHODS)
def test_shared_covariance_fast_path_equals_per_sequence_path(method):
    """Shared matrices keep covariances at batch size 1; forcing per-sequence ones agrees."""
    g = torch.Generator().manual_seed(12)
    n, p, steps, batch = 3, 2, 300, 4
    model = random_system(n, p, g)
    _, y = simulate(model, batch, steps, g)
    fast = run_filter(model, y, method)
    assert fast.covs.stride(0) == 0  # one covariance sequence, viewed by every sequence
    forced = dict(model, R=model["R"].expand(batch, 1, p, p))
    slow = run_filter(forced, y, method)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    other = "parallel" if method == "sequential" else "sequential"
    for a, b in zip(fast, run_filter(model, y, other), strict=True):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    sm_fast = rts_smoother(fast, model["A"], method=method)
    sm_slow = rts_smoother(slow, model["A"], method=method)
    for a, b in zip(sm_fast, sm_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
