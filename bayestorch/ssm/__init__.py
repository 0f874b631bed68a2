"""State-space models: Kalman filtering and smoothing, particle filtering, the LSTM-Kalman filter.

* :func:`kalman_filter`, :func:`rts_smoother` (sequential or parallel-scan), :func:`kalman_predict`
  — pure, batched, differentiable; NaN entries of ``y`` are missing observations.
* :class:`KalmanFilter` — the same as an ``nn.Module`` with learnable matrices.
* :class:`ParticleFilter` / :func:`particle_filter` — bootstrap SMC for any model.
* :class:`LSTMKalmanFilter` — Coskun et al. (2017).

Convention (Särkkä; filterpy): ``init_mean``/``init_cov`` describe ``x_0``; ``y_1`` observes
``x_1 = A x_0 + B + w_1``, so the first step is predict-then-update, and ``means[:, t]`` is
``E[x_{t+1} | y_1..y_{t+1}]`` (0-based ``t``).
"""

from bayestorch.ssm.functional import (
    KalmanFilterResult,
    KalmanPrediction,
    KalmanSmootherResult,
    associative_scan,
    kalman_filter,
    kalman_predict,
    rts_smoother,
)
from bayestorch.ssm.kalman import KalmanFilter
from bayestorch.ssm.lstm_kalman import LSTMKalmanFilter
from bayestorch.ssm.particle import ParticleFilter, ParticleFilterResult, particle_filter

__all__ = [
    "KalmanFilter",
    "KalmanFilterResult",
    "KalmanPrediction",
    "KalmanSmootherResult",
    "LSTMKalmanFilter",
    "ParticleFilter",
    "ParticleFilterResult",
    "associative_scan",
    "kalman_filter",
    "kalman_predict",
    "particle_filter",
    "rts_smoother",
]
