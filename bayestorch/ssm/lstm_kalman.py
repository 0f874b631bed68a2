"""LSTM-Kalman filter (Coskun et al., ICCV 2017): a Kalman filter whose model is learned.

Three LSTMs replace the hand-written model of an extended Kalman filter:

* ``lstm_A`` maps the previous state estimate to the predicted mean (as a residual,
  ``x_t^- = x_{t-1} + lstm_A(x_{t-1})``);
* ``lstm_Q`` maps the previous state estimate to the (diagonal) process-noise covariance;
* ``lstm_R`` maps the measurement ``y_t`` to the (diagonal) measurement-noise covariance.

The predicted covariance is ``F P F^T + Q`` with ``F`` the Jacobian of the transition mean at
the previous estimate, computed by autograd for the whole batch at once (one vector-Jacobian
product per state dimension, ``create_graph`` while training, so the loss backpropagates through
the Jacobian too). The update is the Joseph-form Kalman update of
:mod:`bayestorch.ssm.functional` (NaN entries of ``y`` are missing, as there). The whole filter
is differentiable and is trained end to end, by state MSE (the paper) or by the observation
log-likelihood.

References:
    Coskun, Achilles, DiPietro, Navab & Tombari (2017). Long short-term memory Kalman
    filters: recurrent neural estimators for pose regularization. ICCV.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayestorch.ssm.functional import KalmanFilterResult, _update
from bayestorch.ssm.kalman import covariance_factor, relative_covariance

__all__ = ["LSTMKalmanFilter"]


class _LSTMHead(nn.Module):
    """An ``LSTMCell`` followed by a linear read-out."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None):
        h, c = self.cell(x, state)
        return self.readout(h), (h, c)


def _batched_jacobian(output: Tensor, inputs: Tensor, create_graph: bool) -> Tensor:
    """``d output_b / d inputs_b`` for every batch element ``b`` (rows are independent).

    One vector-Jacobian product per output dimension: the sum over the batch of output
    component ``i`` has gradient row ``i`` of each element's Jacobian, because element ``b``'s
    output depends on element ``b``'s input only.
    """
    rows = [
        torch.autograd.grad(
            output[:, i].sum(), inputs, create_graph=create_graph, retain_graph=True
        )[0]
        for i in range(output.shape[-1])
    ]
    return torch.stack(rows, -2)


class LSTMKalmanFilter(nn.Module):
    """Kalman filter with LSTM transition mean, process noise and measurement noise.

    Args:
        state_dim: ``n``.
        obs_dim: ``p``.
        hidden_size: width of each of the three LSTMs.
        H: observation matrix ``(p, n)``; fixed when given, learned (initialised to
            ``[I 0]``) when ``None``.
        min_variance: floor added to the softplus variances of ``Q`` and ``R``.

    Shape:
        ``forward(y)``: ``y`` ``(batch, T, p)`` (NaN = missing) -> :class:`KalmanFilterResult`
        with means ``(batch, T, n)``.

    References:
        Coskun et al. (2017), section 3 (Eqs. 6-11).

    Example::

        >>> lkf = LSTMKalmanFilter(state_dim=2, obs_dim=1, hidden_size=16)
        >>> out = lkf(torch.randn(4, 20, 1))
        >>> out.means.shape
        torch.Size([4, 20, 2])
    """

    def __init__(
        self,
        state_dim: int,
        obs_dim: int,
        hidden_size: int = 32,
        *,
        H: Tensor | None = None,
        min_variance: float = 1e-4,
    ) -> None:
        super().__init__()
        if state_dim < 1 or obs_dim < 1 or hidden_size < 1:
            raise ValueError(
                f"state_dim, obs_dim and hidden_size must be >= 1, got {state_dim}, {obs_dim}, "
                f"{hidden_size}"
            )
        self.state_dim, self.obs_dim, self.min_variance = state_dim, obs_dim, float(min_variance)
        self.lstm_A = _LSTMHead(state_dim, hidden_size, state_dim)
        self.lstm_Q = _LSTMHead(state_dim, hidden_size, state_dim)
        self.lstm_R = _LSTMHead(obs_dim, hidden_size, obs_dim)
        # Small initial transition residual: the filter starts close to a random walk (not
        # exactly zero, which would block the gradient to lstm_A's cell on the first step).
        with torch.no_grad():
            self.lstm_A.readout.weight.mul_(0.1)
            self.lstm_A.readout.bias.zero_()
        if H is None:
            self.H = nn.Parameter(torch.eye(obs_dim, state_dim))
        else:
            H = torch.as_tensor(H, dtype=torch.get_default_dtype())
            if tuple(H.shape) != (obs_dim, state_dim):
                raise ValueError(
                    f"H must have shape (obs_dim={obs_dim}, state_dim={state_dim}), got "
                    f"{tuple(H.shape)}"
                )
            self.register_buffer("H", H.clone())
        self.init_mean = nn.Parameter(torch.zeros(state_dim))
        eye = torch.eye(state_dim)
        self.register_buffer("base_init_cov", eye)
        self.register_buffer("base_init_cov_factor", covariance_factor(eye, "init_cov"))
        self.raw_init_cov = nn.Parameter(torch.zeros(state_dim, state_dim))

    @property
    def init_cov(self) -> Tensor:
        """Covariance of ``x_0``: the identity, relative to which ``raw_init_cov`` learns."""
        return relative_covariance(self.base_init_cov, self.base_init_cov_factor, self.raw_init_cov)

    def _variances(self, raw: Tensor) -> Tensor:
        return torch.diag_embed(F.softplus(raw) + self.min_variance)

    def forward(self, y: Tensor) -> KalmanFilterResult:
        """Filter ``y``: means, covariances and the observation log-likelihood.

        Shape:
            ``y``: ``(batch, T, p)`` -> :class:`KalmanFilterResult`.
        """
        if not isinstance(y, Tensor) or y.dim() != 3 or y.shape[-1] != self.obs_dim:
            raise ValueError(
                f"y must have shape (batch, T, obs_dim={self.obs_dim}), got "
                f"{tuple(getattr(y, 'shape', ()))}"
            )
        batch, steps, _ = y.shape
        n = self.state_dim
        observed = ~torch.isnan(y)
        has_missing = bool((~observed).any())
        y = torch.nan_to_num(y, nan=0.0)
        training = torch.is_grad_enabled()
        mean = self.init_mean.expand(batch, n)
        cov = self.init_cov.expand(batch, n, n)
        state_a = state_q = state_r = None
        means, covs, lls, pmeans, pcovs = [], [], [], [], []
        for t in range(steps):
            with torch.enable_grad():
                keep = training and mean.requires_grad
                x_prev = mean if keep else mean.detach().requires_grad_(True)
                delta, state_a = self.lstm_A(x_prev, state_a)
                m_pred = x_prev + delta
                jac = _batched_jacobian(m_pred, x_prev, create_graph=training)
            if not training:  # evaluation: keep no graph from step to step
                m_pred, jac = m_pred.detach(), jac.detach()
                state_a = (state_a[0].detach(), state_a[1].detach())
            raw_q, state_q = self.lstm_Q(x_prev if training else x_prev.detach(), state_q)
            raw_r, state_r = self.lstm_R(y[:, t], state_r)
            P_pred = jac @ cov @ jac.transpose(-1, -2) + self._variances(raw_q)
            P_pred = 0.5 * (P_pred + P_pred.transpose(-1, -2))
            mean, cov, ll, _ = _update(
                m_pred,
                P_pred,
                y[:, t],
                self.H,
                self._variances(raw_r),
                observed[:, t] if has_missing else None,
            )
            means.append(mean)
            covs.append(cov)
            lls.append(ll)
            pmeans.append(m_pred)
            pcovs.append(P_pred)
        step_ll = torch.stack(lls, 1)
        return KalmanFilterResult(
            torch.stack(means, 1),
            torch.stack(covs, 1),
            step_ll.sum(1),
            step_ll,
            torch.stack(pmeans, 1),
            torch.stack(pcovs, 1),
        )

    def filter(self, y: Tensor) -> KalmanFilterResult:
        """Same as ``forward``."""
        return self(y)

    def extra_repr(self) -> str:
        return f"state_dim={self.state_dim}, obs_dim={self.obs_dim}"
