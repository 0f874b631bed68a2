"""LSTM-Kalman filter: Jacobians, gradients to every LSTM, training, missing data, errors."""

from __future__ import annotations

import pytest
import torch

from bayestorch.ssm import LSTMKalmanFilter
from bayestorch.ssm.lstm_kalman import _batched_jacobian


def toy_data(batch=16, steps=20, seed=0):
    """A rotating 2-D state observed through its first coordinate with noise."""
    g = torch.Generator().manual_seed(seed)
    phase = 2 * torch.pi * torch.rand(batch, 1, generator=g)
    t = 0.3 * torch.arange(1, steps + 1)
    x = torch.stack([torch.sin(t + phase), torch.cos(t + phase)], -1)
    y = x[..., :1] + 0.2 * torch.randn(batch, steps, 1, generator=g)
    return x, y


def test_batched_jacobian_matches_per_sample_autograd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(5, 3, requires_grad=True)
    jac = _batched_jacobian(net(x), x, create_graph=False)
    for b in range(5):
        xb = x[b].detach().requires_grad_(True)
        out = net(xb)
        ref = torch.stack([torch.autograd.grad(out[i], xb, retain_graph=True)[0] for i in range(3)])
        torch.testing.assert_close(jac[b], ref)


def test_shapes_and_eval_mode_agree(device):
    torch.manual_seed(1)
    lkf = LSTMKalmanFilter(2, 1, 8).to(device)
    _, y = toy_data(4, 6)
    y = y.to(device)
    out = lkf(y)
    assert out.means.shape == (4, 6, 2) and out.covs.shape == (4, 6, 2, 2)
    assert out.log_likelihood.shape == (4,) and out.means.device.type == device.type
    with torch.no_grad():
        again = lkf.filter(y)
    torch.testing.assert_close(again.means, out.means.detach())
    torch.testing.assert_close(again.covs, out.covs.detach())
    assert torch.all(torch.linalg.eigvalsh(out.covs.detach().double()) > 0)


@pytest.mark.parametrize("loss", ["mse", "nll"])
def test_gradients_reach_all_lstm_parameters(loss):
    torch.manual_seed(2)
    lkf = LSTMKalmanFilter(2, 1, 8)
    x, y = toy_data(4, 5)
    out = lkf(y)
    value = (out.means - x).square().mean() if loss == "mse" else -out.log_likelihood.mean()
    value.backward()
    for name, param in lkf.named_parameters():
        if loss == "nll" and name == "H":
            continue  # the state MSE and the NLL both reach H; checked with mse
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_jacobian_enters_the_predicted_covariance():
    """P^- = F P F^T + Q with F the Jacobian of the transition mean at the previous estimate."""
    torch.manual_seed(3)
    lkf = LSTMKalmanFilter(2, 1, 8)
    _, y = toy_data(3, 1)
    out = lkf(y)
    x0 = lkf.init_mean.expand(3, 2).detach().requires_grad_(True)
    delta, _ = lkf.lstm_A(x0, None)
    jac = _batched_jacobian(x0 + delta, x0, create_graph=False)
    raw_q, _ = lkf.lstm_Q(x0, None)
    Q = torch.diag_embed(torch.nn.functional.softplus(raw_q) + lkf.min_variance)
    expected = jac @ lkf.init_cov @ jac.transpose(-1, -2) + Q
    torch.testing.assert_close(out.predicted_covs[:, 0], expected.detach())


def test_short_training_reduces_the_loss():
    torch.manual_seed(4)
    lkf = LSTMKalmanFilter(2, 1, 8, H=torch.tensor([[1.0, 0.0]]))
    x, y = toy_data(8, 10)
    optimizer = torch.optim.Adam(lkf.parameters(), lr=3e-2)
    losses = []
    for _ in range(8):
        loss = (lkf(y).means - x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_missing_observations():
    torch.manual_seed(5)
    lkf = LSTMKalmanFilter(2, 2, 8)
    y = torch.randn(2, 4, 2)
    y[0, 1] = float("nan")  # whole row: the update leaves the prediction unchanged
    y[1, 2, 0] = float("nan")  # one component
    with torch.no_grad():
        out = lkf(y)
    assert torch.isfinite(out.means).all() and torch.isfinite(out.log_likelihood).all()
    torch.testing.assert_close(out.means[0, 1], out.predicted_means[0, 1])
    torch.testing.assert_close(out.covs[0, 1], out.predicted_covs[0, 1])
    assert out.step_log_likelihoods[0, 1] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="must be >= 1"):
        LSTMKalmanFilter(0, 1)
    with pytest.raises(ValueError, match=r"H must have shape \(obs_dim=1, state_dim=2\)"):
        LSTMKalmanFilter(2, 1, H=torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(batch, T, obs_dim=1\)"):
        LSTMKalmanFilter(2, 1)(torch.randn(3, 4, 2))
