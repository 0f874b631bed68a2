"""KalmanFilter module: parameterisation, agreement with the functional core, fitting, errors."""

from __future__ import annotations

import pytest
import torch

from bayestorch.ssm import KalmanFilter, kalman_filter, rts_smoother
from bayestorch.ssm.kalman import covariance_factor, relative_covariance
from bayestorch.utils.linalg import NotPSDError
from tests.ssm.helpers import random_system, simulate


def make_module(model, method="sequential"):
    return KalmanFilter(
        model["A"],
        model["H"],
        model["Q"],
        model["R"],
        model["B"],
        model["init_mean"],
        model["init_cov"],
        method=method,
    )


def test_covariance_parameterisation_is_exact_at_zero_and_psd_everywhere():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = M @ M.T + 0.1 * torch.eye(4, dtype=torch.float64)
    factor = covariance_factor(cov)
    assert torch.equal(relative_covariance(cov, factor, torch.zeros_like(cov)), cov)
    # any raw matrix gives a positive-definite covariance (F M)(F M)^T
    raw = torch.randn(10, 4, 4, generator=g, dtype=torch.float64)
    moved = relative_covariance(cov, factor, raw)
    assert torch.all(torch.linalg.cholesky_ex(moved).info == 0)
    m = torch.tril(raw, -1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    torch.testing.assert_close(moved, (factor @ m) @ (factor @ m).mT)


@pytest.mark.parametrize("scale", [1e-14, 1e-3, 1e8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_covariances_round_trip_exactly_at_any_scale(scale, dtype):
    """Issue 21: Q = 1e-14 I came back as 1e-12 I (a 1e-6 floor on the Cholesky diagonal)."""
    g = torch.Generator().manual_seed(4)
    M = torch.randn(3, 3, generator=g, dtype=dtype)
    Q = scale * (M @ M.T + 0.5 * torch.eye(3, dtype=dtype))
    Q = 0.5 * (Q + Q.T)
    R = scale * torch.eye(2, dtype=dtype)
    P0 = 1e-14 * torch.eye(3, dtype=dtype)
    kf = KalmanFilter(torch.eye(3, dtype=dtype), torch.ones(2, 3, dtype=dtype), Q, R, init_cov=P0)
    assert torch.equal(kf.Q, Q) and torch.equal(kf.R, R) and torch.equal(kf.init_cov, P0)


def test_singular_psd_q_is_accepted_and_agrees_with_the_functional():
    """Issue 21: the module rejected a PSD Q that kalman_filter accepts."""
    g = torch.Generator().manual_seed(5)
    model = random_system(3, 2, g)
    v = torch.randn(3, 1, generator=g, dtype=torch.float64)
    model["Q"] = v @ v.T  # rank one
    _, y = simulate(dict(model, Q=model["Q"] + 1e-3 * torch.eye(3, dtype=torch.float64)), 2, 8, g)
    kf = make_module(model)
    assert torch.equal(kf.Q, model["Q"])
    ref = kalman_filter(
        y,
        model["A"],
        model["H"],
        model["Q"],
        model["R"],
        model["init_mean"],
        model["init_cov"],
        model["B"],
    )
    out = kf.filter(y)
    torch.testing.assert_close(out.means, ref.means)
    torch.testing.assert_close(out.log_likelihood, ref.log_likelihood)
    # the factor spans Q's range; sampling and learning stay inside it
    factor = kf.covariance_factor("Q")
    torch.testing.assert_close(factor @ factor.T, model["Q"])
    states, _ = kf.sample(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(states).all()
    kf.log_likelihood(y).sum().backward()
    assert torch.isfinite(kf.raw_Q.grad).all()


@pytest.mark.parametrize("method", ["sequential", "parallel"])
def test_module_matches_functional(method):
    g = torch.Generator().manual_seed(1)
    model = random_system(3, 2, g)
    _, y = simulate(model, 4, 12, g)
    y[1, 3] = float("nan")
    kf = make_module(model, method)
    torch.testing.assert_close(kf.Q, model["Q"])
    torch.testing.assert_close(kf.init_cov, model["init_cov"])
    ref = kalman_filter(
        y,
        model["A"],
        model["H"],
        model["Q"],
        model["R"],
        model["init_mean"],
        model["init_cov"],
        model["B"],
    )
    out = kf.filter(y)
    torch.testing.assert_close(out.means, ref.means)
    torch.testing.assert_close(kf.log_likelihood(y), ref.log_likelihood)
    torch.testing.assert_close(kf(y).covs, ref.covs)
    torch.testing.assert_close(kf.smooth(y).means, rts_smoother(ref, model["A"]).means)
    pred = kf.predict(y, num_steps=3)
    assert pred.means.shape == (4, 3, 3) and pred.observation_means.shape == (4, 3, 2)


def test_gradients_reach_every_parameter():
    g = torch.Generator().manual_seed(2)
    model = random_system(2, 1, g)
    _, y = simulate(model, 3, 10, g)
    kf = make_module(model)
    kf.log_likelihood(y).sum().backward()
    for name, param in kf.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_maximum_likelihood_fit_moves_toward_the_truth():
    """Adam on the exact log-likelihood of a local-level model moves Q and R toward the truth.

    (The Nile experiment checks the converged MLE against statsmodels.)
    """
    truth = KalmanFilter(
        torch.eye(1),
        torch.eye(1),
        torch.tensor([[0.5]]),
        torch.tensor([[2.0]]),
        init_cov=torch.tensor([[10.0]]),
    ).double()
    _, y = truth.sample(20, 50, generator=torch.Generator().manual_seed(3))
    kf = KalmanFilter(
        torch.eye(1),
        torch.eye(1),
        torch.tensor([[0.05]]),
        torch.tensor([[0.2]]),
        init_cov=torch.tensor([[10.0]]),
        method="parallel",
    ).double()
    kf.A.requires_grad_(False)
    kf.H.requires_grad_(False)
    optimizer = torch.optim.Adam(kf.parameters(), lr=0.3)
    start = kf.log_likelihood(y).sum().item()
    for _ in range(25):
        optimizer.zero_grad()
        loss = -kf.log_likelihood(y).sum()
        loss.backward()
        optimizer.step()
    assert -loss.item() > start
    # started 10x too small: both variances have moved most of the way (log scale)
    assert abs(torch.log(kf.Q / 0.5).item()) < 0.5 * abs(torch.log(torch.tensor(0.1)).item())
    assert abs(torch.log(kf.R / 2.0).item()) < 0.5 * abs(torch.log(torch.tensor(0.1)).item())


def test_sample_is_reproducible_and_follows_dtype(device):
    kf = KalmanFilter(torch.eye(2), torch.ones(1, 2), 0.1 * torch.eye(2), torch.eye(1)).to(device)
    a = kf.sample(3, 5, generator=torch.Generator(device=device).manual_seed(0))
    b = kf.sample(3, 5, generator=torch.Generator(device=device).manual_seed(0))
    assert torch.equal(a[0], b[0]) and a[1].shape == (3, 5, 1) and a[0].device.type == device.type
    assert kf.filter(a[1]).means.dtype == torch.float32


def test_state_dict_round_trip():
    kf = KalmanFilter(
        torch.eye(2), torch.ones(1, 2), 0.1 * torch.eye(2), torch.eye(1), B=torch.ones(2)
    )
    other = KalmanFilter(
        torch.zeros(2, 2), torch.zeros(1, 2), torch.eye(2), torch.eye(1), B=torch.zeros(2)
    )
    other.load_state_dict(kf.state_dict())
    torch.testing.assert_close(other.Q, kf.Q)
    torch.testing.assert_close(other.B, kf.B)


def test_bad_input():
    eye = torch.eye(2)
    with pytest.raises(NotPSDError, match="Q of shape"):
        KalmanFilter(eye, torch.ones(1, 2), -eye, torch.eye(1))
    with pytest.raises(NotPSDError, match="R of shape .* symmetric"):
        KalmanFilter(eye, torch.ones(2, 2), eye, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"H must have shape \(\.\.\., p, 2\)"):
        KalmanFilter(eye, torch.ones(1, 3), eye, torch.eye(1))
    with pytest.raises(ValueError, match=r"R must have shape \(\.\.\., 1, 1\)"):
        KalmanFilter(eye, torch.ones(1, 2), eye, torch.eye(2))
    with pytest.raises(ValueError, match="A of shape .* NaN"):
        KalmanFilter(torch.full((2, 2), float("nan")), torch.ones(1, 2), eye, torch.eye(1))
    kf = KalmanFilter(eye, torch.ones(1, 2), eye, torch.eye(1))
    with torch.no_grad():
        kf.A[0, 0] = float("nan")
    with pytest.raises(ValueError, match="parameter A .* NaN"):
        kf.filter(torch.randn(1, 3, 1))
    with pytest.raises(NotPSDError, match="init_cov of shape"):
        KalmanFilter(eye, torch.ones(1, 2), eye, torch.eye(1), init_cov=-eye)


def test_wrong_observation_width_names_y():
    """Issue 21: y of the wrong width was reported as 'H must have shape (3, 3)'."""
    kf = KalmanFilter(torch.eye(3), torch.eye(3), torch.eye(3), torch.eye(3))
    with pytest.raises(ValueError, match=r"^y must have shape \(batch, T, obs_dim=3\)"):
        kf.filter(torch.randn(1, 4, 2))
    kf = KalmanFilter(torch.eye(2), torch.ones(1, 2), torch.eye(2), torch.eye(1))
    with pytest.raises(ValueError, match=r"^y must have shape \(batch, T, obs_dim=1\)"):
        kf.filter(torch.randn(1, 3, 2))
