"""Batched Kalman filtering and smoothing for linear-Gaussian state-space models.

The model (Särkkä 2013, ch. 4) for ``t = 1 .. T``::

    x_0 ~ N(init_mean, init_cov)
    x_t = A_t x_{t-1} + B_t + w_t,     w_t ~ N(0, Q_t)
    y_t = H_t x_t + v_t,               v_t ~ N(0, R_t)

so the first step is predict-then-update and ``means[:, t]`` is ``E[x_{t+1} | y_1..y_{t+1}]``
(0-based ``t``). Every function is pure, batched over sequences and differentiable.

Two algorithms compute the same quantities:

* ``method="sequential"``: the textbook recursions, one Python step per time step, each step
  batched over sequences. Joseph-form covariance update and symmetrisation.
* ``method="parallel"``: the associative-scan formulation of Särkkä & García-Fernández (2021),
  whose sequential depth is O(log T); every time step is processed at once, so long sequences
  are fast on a GPU.

Missing data: a NaN entry of ``y`` (a whole row or single components) is unobserved. It is
handled with a fixed-shape mask: the row of ``H`` is zeroed, ``R``'s row and column become those
of the identity, and the observation is replaced by 0. The substitute is an observation of pure
noise that carries no information about the state, so the filter conditions exactly on the
observed components, and its ``log N(0; 0, 1)`` term is left out of the log-likelihood (only
observed components count in the ``2 pi`` constant). Batches stay batched whatever is missing.

References:
    Kalman (1960). A new approach to linear filtering and prediction problems.
    Rauch, Tung & Striebel (1965). Maximum likelihood estimates of linear dynamic systems.
    Bucy & Joseph (1968). Filtering for Stochastic Processes with Applications to Guidance.
    Särkkä (2013). Bayesian Filtering and Smoothing. Cambridge University Press.
    Särkkä & García-Fernández (2021). Temporal parallelization of Bayesian smoothers.
    IEEE Transactions on Automatic Control 66(1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.utils.linalg import NotPSDError, symmetrize

__all__ = [
    "KalmanFilterResult",
    "KalmanPrediction",
    "KalmanSmootherResult",
    "associative_scan",
    "kalman_filter",
    "kalman_predict",
    "rts_smoother",
]

_LOG_2PI = math.log(2.0 * math.pi)
_METHODS = ("sequential", "parallel")


class KalmanFilterResult(NamedTuple):
    """Output of :func:`kalman_filter`.

    Attributes:
        means: ``(batch, T, n)`` filtered means ``E[x_t | y_1..y_t]``.
        covs: ``(batch, T, n, n)`` filtered covariances.
        log_likelihood: ``(batch,)`` exact ``log p(y_1..y_T)`` over the observed entries.
        step_log_likelihoods: ``(batch, T)`` the terms ``log p(y_t | y_1..y_{t-1})``.
        predicted_means: ``(batch, T, n)`` one-step predictions ``E[x_t | y_1..y_{t-1}]``.
        predicted_covs: ``(batch, T, n, n)`` their covariances.
    """

    means: Tensor
    covs: Tensor
    log_likelihood: Tensor
    step_log_likelihoods: Tensor
    predicted_means: Tensor
    predicted_covs: Tensor


class KalmanSmootherResult(NamedTuple):
    """Output of :func:`rts_smoother`.

    Attributes:
        means: ``(batch, T, n)`` smoothed means ``E[x_t | y_1..y_T]``.
        covs: ``(batch, T, n, n)`` smoothed covariances.
        gains: ``(batch, T, n, n)`` smoother gains ``G_t`` (the last is zero);
            ``Cov[x_t, x_{t+1} | y_1..y_T] = G_t covs[:, t+1]``.
    """

    means: Tensor
    covs: Tensor
    gains: Tensor


class KalmanPrediction(NamedTuple):
    """Output of :func:`kalman_predict`: ``num_steps`` forecasts of states and observations.

    Attributes:
        means: ``(batch, num_steps, n)``; covs: ``(batch, num_steps, n, n)``;
        observation_means: ``(batch, num_steps, p)``;
        observation_covs: ``(batch, num_steps, p, p)``.
    """

    means: Tensor
    covs: Tensor
    observation_means: Tensor
    observation_covs: Tensor


# --------------------------------------------------------------------------- input checks


def _as_time_batch(name: str, x: Tensor, batch: int, steps: int, event: tuple[int, ...]) -> Tensor:
    """View a (possibly time-varying, per-sequence) parameter with event shape ``event`` as
    ``(batch | 1, T | 1, *event)``; it may come as ``event``, ``(T, *event)`` or
    ``(batch, T, *event)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    k = len(event)
    shapes = ", ".join(str(s) for s in event) + ("," if k == 1 else "")
    if x.dim() < k or x.dim() > k + 2 or tuple(x.shape[x.dim() - k :]) != event:
        raise ValueError(
            f"{name} must have shape ({shapes}), (T, {shapes.rstrip(',')}) or "
            f"(batch, T, {shapes.rstrip(',')}) broadcastable to batch={batch}, T={steps}; "
            f"got {tuple(x.shape)}"
        )
    while x.dim() < k + 2:
        x = x.unsqueeze(0)
    if x.shape[0] not in (1, batch) or x.shape[1] not in (1, steps):
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not broadcast to (batch={batch}, T={steps}, "
            f"{shapes.rstrip(',')})"
        )
    return x


def _as_4d(name: str, x: Tensor, batch: int, steps: int, rows: int, cols: int) -> Tensor:
    """A matrix parameter as ``(batch | 1, T | 1, rows, cols)``."""
    return _as_time_batch(name, x, batch, steps, (rows, cols))


def _vector_as_3d(name: str, x: Tensor, batch: int, steps: int, size: int) -> Tensor:
    """A vector parameter as ``(batch | 1, T | 1, size)``."""
    return _as_time_batch(name, x, batch, steps, (size,))


def _check_psd(name: str, matrix: Tensor) -> None:
    """Raise ``NotPSDError`` naming ``matrix`` unless it is symmetric positive semi-definite.

    The tolerance is round-off relative to the matrix's scale: ``n * eps * max|a_ij|``.
    """
    matrix = matrix.detach()
    n = matrix.shape[-1]
    scale = matrix.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(matrix.dtype).tiny)
    tol = 10 * n * torch.finfo(matrix.dtype).eps * scale
    asym = (matrix - matrix.transpose(-1, -2)).abs().amax(dim=(-2, -1))
    if bool((asym > tol).any()):
        raise NotPSDError(
            f"{name} of shape {tuple(matrix.shape)} must be symmetric; largest asymmetry "
            f"{float(asym.max()):.3g}"
        )
    smallest = torch.linalg.eigvalsh(symmetrize(matrix)).amin(-1)
    if bool((smallest < -tol).any()):
        raise NotPSDError(
            f"{name} of shape {tuple(matrix.shape)} must be positive semi-definite; smallest "
            f"eigenvalue {float(smallest.min()):.3g}"
        )


class _Model(NamedTuple):
    y: Tensor  # (batch, T, p), NaN replaced by 0
    mask: Tensor | None  # (batch, T, p) bool, True = observed; None when nothing is missing
    A: Tensor  # (b|1, T|1, n, n)
    H: Tensor
    Q: Tensor
    R: Tensor
    B: Tensor | None  # (b|1, T|1, n)
    init_mean: Tensor  # (b|1, n)
    init_cov: Tensor  # (b|1, n, n)


def _prepare(y, A, H, Q, R, init_mean, init_cov, B, validate_args: bool) -> _Model:
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 3:
        raise ValueError(f"y must have shape (batch, T, obs_dim), got {tuple(y.shape)}")
    if not y.is_floating_point():
        raise TypeError(f"y must be a floating-point tensor, got {y.dtype}")
    batch, steps, p = y.shape
    if steps == 0:
        raise ValueError("y must hold at least one time step, got T=0")
    if not isinstance(A, Tensor) or A.dim() < 2:
        raise ValueError(f"A must be a tensor of shape (..., n, n), got {getattr(A, 'shape', A)}")
    n = A.shape[-1]
    if isinstance(H, Tensor) and H.dim() >= 2 and H.shape[-1] == n and H.shape[-2] != p:
        # H fits the state: the observations are what disagrees with the model's obs_dim.
        raise ValueError(
            f"y must have shape (batch, T, obs_dim={H.shape[-2]}) to match H of shape "
            f"{tuple(H.shape)} (obs_dim, state_dim), got y of shape {tuple(y.shape)}"
        )
    A4 = _as_4d("A", A, batch, steps, n, n)
    H4 = _as_4d("H", H, batch, steps, p, n)
    Q4 = _as_4d("Q", Q, batch, steps, n, n)
    R4 = _as_4d("R", R, batch, steps, p, p)
    B3 = None if B is None else _vector_as_3d("B", B, batch, steps, n)
    if not isinstance(init_mean, Tensor) or init_mean.dim() not in (1, 2):
        raise ValueError(
            f"init_mean must have shape ({n},) or (batch, {n}), got "
            f"{tuple(getattr(init_mean, 'shape', ()))}"
        )
    if init_mean.shape[-1] != n or (init_mean.dim() == 2 and init_mean.shape[0] not in (1, batch)):
        raise ValueError(
            f"init_mean must have shape ({n},) or ({batch}, {n}), got {tuple(init_mean.shape)}"
        )
    if not isinstance(init_cov, Tensor) or init_cov.dim() not in (2, 3):
        raise ValueError(
            f"init_cov must have shape ({n}, {n}) or (batch, {n}, {n}), got "
            f"{tuple(getattr(init_cov, 'shape', ()))}"
        )
    if tuple(init_cov.shape[-2:]) != (n, n) or (
        init_cov.dim() == 3 and init_cov.shape[0] not in (1, batch)
    ):
        raise ValueError(
            f"init_cov must have shape ({n}, {n}) or ({batch}, {n}, {n}), got "
            f"{tuple(init_cov.shape)}"
        )
    params = {"A": A4, "H": H4, "Q": Q4, "R": R4, "init_mean": init_mean, "init_cov": init_cov}
    if B3 is not None:
        params["B"] = B3
    dtype = y.dtype
    for value in params.values():
        dtype = torch.promote_types(dtype, value.dtype)
    params = {k: v.to(dtype=dtype, device=y.device) for k, v in params.items()}
    if validate_args:
        for key, value in params.items():
            bad = ~torch.isfinite(value.detach())
            if bool(bad.any()):
                raise ValueError(
                    f"{key} of shape {tuple(value.shape)} holds {int(bad.sum())} NaN or inf "
                    f"value(s)"
                )
        for key in ("Q", "R", "init_cov"):
            _check_psd(key, params[key])
    y = y.to(dtype)
    observed = ~torch.isnan(y)
    has_missing = bool((~observed).any())
    if has_missing:
        y = torch.where(observed, y, torch.zeros((), dtype=dtype, device=y.device))
    if validate_args and bool(torch.isinf(y).any()):
        raise ValueError("y holds inf values; mark missing observations with NaN")
    init_mean = params["init_mean"]
    init_cov = params["init_cov"]
    return _Model(
        y,
        observed if has_missing else None,
        params["A"],
        params["H"],
        params["Q"],
        params["R"],
        params.get("B"),
        init_mean if init_mean.dim() == 2 else init_mean.unsqueeze(0),
        init_cov if init_cov.dim() == 3 else init_cov.unsqueeze(0),
    )


def _at(x: Tensor | None, t: int) -> Tensor | None:
    """Time slice ``t`` of a ``(b|1, T|1, ...)`` parameter."""
    if x is None:
        return None
    return x[:, t if x.shape[1] > 1 else 0]


def _from(x: Tensor | None, start: int) -> Tensor | None:
    """Time slices ``start:`` of a ``(b|1, T|1, ...)`` parameter (left as is when constant)."""
    if x is None or x.shape[1] == 1:
        return x
    return x[:, start:]


def _masked(H: Tensor, R: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """Observation model for the observed components only, at fixed shape.

    Rows of ``H`` for missing components become 0; ``R``'s rows and columns for them become
    those of the identity. ``observed``: ``(..., p)`` bool.
    """
    obs = observed.to(H.dtype)
    H = H * obs.unsqueeze(-1)
    R = R * (obs.unsqueeze(-1) * obs.unsqueeze(-2)) + torch.diag_embed(1.0 - obs)
    return H, R


def _mv(M: Tensor, v: Tensor) -> Tensor:
    """Matrix-vector products ``M v`` over broadcast batch dims.

    When ``M`` is shared by the whole batch (leading dim 1) and ``v`` is not, the products
    become one matrix-matrix product (or one per time step), instead of ``batch`` tiny ones:
    the shared-covariance fast path of the filters.
    """
    if v.shape[0] > 1 and M.dim() >= 3 and M.shape[0] == 1:
        if all(size == 1 for size in M.shape[:-2]):
            return v @ M.reshape(M.shape[-2:]).transpose(-1, -2)
        if M.dim() == 4 and v.dim() == 3 and M.shape[1] == v.shape[1]:
            return torch.einsum("tij,btj->bti", M[0], v)
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def _whiten(chol: Tensor, residual: Tensor) -> Tensor:
    """``L^-1 r``; one triangular solve for all sequences when ``L`` is shared."""
    if residual.shape[0] > 1 and chol.shape[0] == 1:
        if chol.dim() == 3:  # (1, p, p) with residuals (batch, p)
            return torch.linalg.solve_triangular(chol[0], residual.T, upper=False).T
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        return _mv(torch.linalg.solve_triangular(chol, eye, upper=False), residual)
    return torch.linalg.solve_triangular(chol, residual.unsqueeze(-1), upper=False).squeeze(-1)


def _gaussian_log_prob(residual: Tensor, chol: Tensor, num_observed: Tensor | float) -> Tensor:
    """``log N(residual; 0, L L^T)`` with the ``2 pi`` term counted over observed components."""
    white = _whiten(chol, residual)
    half_logdet = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white.square().sum(-1) - half_logdet - 0.5 * num_observed * _LOG_2PI


def _raise_if_failed(info: Tensor, what: str) -> None:
    if bool((info != 0).any()):
        raise NotPSDError(
            f"{what} was not positive definite at {int((info != 0).sum())} (batch, time) "
            f"entries; check that R (and Q, init_cov) are positive definite"
        )


# --------------------------------------------------------------------------- filtering


def kalman_filter(
    y: Tensor,
    A: Tensor,
    H: Tensor,
    Q: Tensor,
    R: Tensor,
    init_mean: Tensor,
    init_cov: Tensor,
    B: Tensor | None = None,
    *,
    method: str = "sequential",
    validate_args: bool = True,
) -> KalmanFilterResult:
    """Filtered means, covariances and the exact log-likelihood of a linear-Gaussian SSM.

    Args:
        y: observations; NaN entries (whole rows or single components) are missing.
        A: transition matrices (constant, per time step, or per sequence and time step).
        H: observation matrices.
        Q: process-noise covariances (positive semi-definite).
        R: observation-noise covariances (positive definite).
        init_mean: mean of ``x_0``.
        init_cov: covariance of ``x_0`` (positive semi-definite).
        B: optional additive transition offset (control input) ``B_t``.
        method: ``"sequential"`` (Joseph-form recursions) or ``"parallel"`` (associative scan of
            Särkkä & García-Fernández 2021, O(log T) depth); both give the same result.
        validate_args: check shapes, finiteness and PSD-ness of the covariances (one host
            synchronisation per call; turn off inside tight training loops on a GPU).

    When every matrix is shared by the batch and nothing is missing, the covariances and gains
    are computed once for the whole batch and the outputs ``covs``/``predicted_covs`` are
    expanded views (stride 0 along the batch); :func:`rts_smoother` keeps that sharing.

    Returns:
        :class:`KalmanFilterResult`.

    Raises:
        ValueError: naming the argument whose shape does not fit or that holds NaN/inf.
        NotPSDError: when ``Q``, ``R`` or ``init_cov`` is not symmetric PSD, or an innovation
            covariance is not positive definite.

    Shape:
        ``y``: ``(batch, T, p)``; ``A``, ``Q``: ``(n, n)``, ``(T, n, n)`` or ``(batch, T, n, n)``
        (size-1 dims broadcast); ``H``: the same with ``(p, n)``; ``R``: with ``(p, p)``;
        ``B``: ``(n,)``, ``(T, n)`` or ``(batch, T, n)``; ``init_mean``: ``(n,)`` or
        ``(batch, n)``; ``init_cov``: ``(n, n)`` or ``(batch, n, n)``.
        Outputs: see :class:`KalmanFilterResult`.

    References:
        Kalman (1960); Bucy & Joseph (1968) for the Joseph form; Särkkä (2013), Theorem 4.2;
        Särkkä & García-Fernández (2021), Lemmas 7-8 for the parallel form.

    Example::

        >>> A, H = torch.eye(1), torch.eye(1)
        >>> out = kalman_filter(torch.randn(3, 10, 1), A, H, 0.1 * A, A, torch.zeros(1), A)
        >>> out.means.shape, out.log_likelihood.shape
        (torch.Size([3, 10, 1]), torch.Size([3]))
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    model = _prepare(y, A, H, Q, R, init_mean, init_cov, B, validate_args)
    shared = model.mask is None and all(
        x.shape[0] == 1 for x in (model.A, model.H, model.Q, model.R, model.init_cov)
    )
    if shared:
        result, info = _shared_filter(model, method)
    elif method == "parallel":
        result, info = _parallel_filter(model)
    else:
        result, info = _sequential_filter(model)
    if validate_args:
        _raise_if_failed(info, "the innovation covariance H P H^T + R")
    return result


def _update(m_pred, P_pred, y, H, R, observed):
    """One Joseph-form measurement update; returns (mean, cov, step log-likelihood, info)."""
    if observed is not None:
        H, R = _masked(H, R, observed)
        num_observed = observed.to(y.dtype).sum(-1)
    else:
        num_observed = float(y.shape[-1])
    residual = y - _mv(H, m_pred)
    PHt = P_pred @ H.transpose(-1, -2)
    S = symmetrize(H @ PHt + R)
    chol, info = torch.linalg.cholesky_ex(S)
    gain = torch.cholesky_solve(PHt.transpose(-1, -2), chol).transpose(-1, -2)  # P H^T S^-1
    mean = m_pred + _mv(gain, residual)
    # Joseph form (I - K H) P (I - K H)^T + K R K^T: PSD by construction, unlike (I - K H) P.
    eye = torch.eye(P_pred.shape[-1], dtype=P_pred.dtype, device=P_pred.device)
    IKH = eye - gain @ H
    cov = symmetrize(IKH @ P_pred @ IKH.transpose(-1, -2) + gain @ R @ gain.transpose(-1, -2))
    return mean, cov, _gaussian_log_prob(residual, chol, num_observed), info


def _sequential_filter(model: _Model) -> tuple[KalmanFilterResult, Tensor]:
    y, mask = model.y, model.mask
    batch, steps, _ = y.shape
    n = model.A.shape[-1]
    mean = model.init_mean.expand(batch, n)
    # Covariances stay at batch size 1 while every matrix is shared and nothing is missing:
    # they do not depend on y, so one recursion serves the whole batch.
    cov = model.init_cov
    means, covs, lls, pmeans, pcovs, infos = [], [], [], [], [], []
    for t in range(steps):
        A_t = _at(model.A, t)
        m_pred = _mv(A_t, mean)
        if model.B is not None:
            m_pred = m_pred + _at(model.B, t)
        P_pred = symmetrize(A_t @ cov @ A_t.transpose(-1, -2) + _at(model.Q, t))
        observed = None if mask is None else mask[:, t]
        mean, cov, ll, info = _update(
            m_pred, P_pred, y[:, t], _at(model.H, t), _at(model.R, t), observed
        )
        means.append(mean)
        covs.append(cov)
        lls.append(ll)
        pmeans.append(m_pred)
        pcovs.append(P_pred)
        infos.append(info)
    step_ll = torch.stack(lls, 1)
    # A missing entry makes the covariances per-sequence from that step on.
    cb = max(c.shape[0] for c in covs)
    result = KalmanFilterResult(
        torch.stack(means, 1),
        torch.stack([c.expand(cb, n, n) for c in covs], 1).expand(batch, steps, n, n),
        step_ll.sum(1),
        step_ll,
        torch.stack(pmeans, 1).expand(batch, steps, n),
        torch.stack([c.expand(cb, n, n) for c in pcovs], 1).expand(batch, steps, n, n),
    )
    return result, torch.cat([info.reshape(-1) for info in infos])


# --------------------------------------------------------------------------- shared covariances


def _covariance_pass(model: _Model) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The Riccati recursion alone, for one covariance sequence (matrices shared by the batch).

    Returns predicted and filtered covariances ``(T, n, n)``, gains ``(T, n, p)``, inverse
    Cholesky factors ``L^-1`` of the innovation covariances ``(T, p, p)`` and the
    factorisation flags.
    """
    steps = model.y.shape[1]
    A, H, Q, R = model.A[0], model.H[0], model.Q[0], model.R[0]  # (T | 1, ., .)
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    eye_p = torch.eye(H.shape[-2], dtype=A.dtype, device=A.device)
    cov = model.init_cov[0]
    pcovs, covs, gains, chols, infos = [], [], [], [], []
    for t in range(steps):
        A_t, H_t, Q_t, R_t = (x[t if x.shape[0] > 1 else 0] for x in (A, H, Q, R))
        P_pred = torch.addmm(Q_t, A_t @ cov, A_t.T)
        PHt = P_pred @ H_t.T
        chol, info = torch.linalg.cholesky_ex(torch.addmm(R_t, H_t, PHt))
        # S^-1 = L^-T L^-1 from the (p x p) triangular inverse: cheaper than cholesky_solve for
        # the small p of filtering, and L^-1 whitens the innovations later.
        chol_inv = torch.linalg.solve_triangular(chol, eye_p, upper=False)
        gain = (PHt @ chol_inv.T) @ chol_inv  # P H^T S^-1
        IKH = eye - gain @ H_t
        # Joseph form, symmetrised.
        cov = symmetrize(IKH @ P_pred @ IKH.T + gain @ R_t @ gain.T)
        pcovs.append(P_pred)
        covs.append(cov)
        gains.append(gain)
        chols.append(chol_inv)
        infos.append(info)
    return (
        torch.stack(pcovs),
        torch.stack(covs),
        torch.stack(gains),
        torch.stack(chols),
        torch.stack(infos),
    )


def _shared_filter(model: _Model, method: str) -> tuple[KalmanFilterResult, Tensor]:
    """Fast path when every matrix is shared by the batch and nothing is missing.

    The covariances and gains do not depend on ``y``, so they are computed once (by the
    sequential recursion or the parallel scan, as ``method`` says). The means then follow the
    linear recurrence ``m_t = F_t m_{t-1} + c_t`` with ``F_t = (I - K_t H) A_t`` and
    ``c_t = (I - K_t H) B_t + K_t y_t``, run in a time-major, batch-last layout so that each
    step is one matrix product for the whole batch (sequential), or scanned in O(log T) depth
    (parallel). Exactly the same result as the general path.
    """
    y = model.y
    batch, steps, p = y.shape
    n = model.A.shape[-1]
    dtype, device = y.dtype, y.device
    if method == "parallel":
        dummy = model._replace(y=y.new_zeros(1, steps, p), init_mean=model.init_mean[:1], B=None)
        one, info = _parallel_filter(dummy)
        pcovs, covs = one.predicted_covs[0], one.covs[0]
        H_all = model.H[0]
        S = symmetrize(H_all @ pcovs @ H_all.transpose(-1, -2) + model.R[0])
        chols, info_s = torch.linalg.cholesky_ex(S)
        gains = torch.cholesky_solve(H_all @ pcovs, chols).transpose(-1, -2)
        eye_p = torch.eye(p, dtype=dtype, device=device)
        chol_invs = torch.linalg.solve_triangular(chols, eye_p, upper=False)
        info = torch.cat([info.reshape(-1), info_s.reshape(-1)])
    else:
        pcovs, covs, gains, chol_invs, info = _covariance_pass(model)
    A, H = model.A[0], model.H[0]  # (T | 1, n, n), (T | 1, p, n)
    eye = torch.eye(n, dtype=dtype, device=device)
    IKH = eye - gains @ H  # (T, n, n)
    F = IKH @ A
    y_tb = y.permute(1, 2, 0)  # (T, p, batch)
    c = gains @ y_tb  # (T, n, batch)
    if model.B is not None:
        offset = _mv(IKH.unsqueeze(0), model.B.expand(model.B.shape[0], steps, n))  # (b|1, T, n)
        c = c + offset.permute(1, 2, 0)
    m0 = model.init_mean.T.expand(n, batch)  # (n, batch)
    if method == "parallel":
        first = F[0] @ m0 + c[0]
        elems = (
            torch.cat([torch.zeros_like(F[:1]), F[1:]]).unsqueeze(0),
            torch.cat([first.unsqueeze(0), c[1:]]).unsqueeze(0),
        )
        means_tb = associative_scan(_linear_combine, elems)[1][0]
    else:
        mean, out = m0, []
        for t in range(steps):
            mean = torch.addmm(c[t], F[t], mean)
            out.append(mean)
        means_tb = torch.stack(out)
    prev = torch.cat([m0.unsqueeze(0), means_tb[:-1]])
    pmeans_tb = A @ prev
    if model.B is not None:
        pmeans_tb = pmeans_tb + model.B.expand(model.B.shape[0], steps, n).permute(1, 2, 0)
    residual = y_tb - H @ pmeans_tb  # (T, p, batch)
    white = chol_invs @ residual
    half_logdet = -chol_invs.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (T,)
    step_ll = -0.5 * white.square().sum(-2) - half_logdet[:, None] - 0.5 * p * _LOG_2PI
    step_ll = step_ll.T  # (batch, T)
    result = KalmanFilterResult(
        means_tb.permute(2, 0, 1).contiguous(),
        covs.expand(batch, steps, n, n),
        step_ll.sum(1),
        step_ll,
        pmeans_tb.permute(2, 0, 1).contiguous(),
        pcovs.expand(batch, steps, n, n),
    )
    return result, info


def _linear_combine(earlier, later):
    """Compose affine maps ``x -> F x + c``: first ``earlier``, then ``later``."""
    F1, c1 = earlier
    F2, c2 = later
    return F2 @ F1, F2 @ c1 + c2


# --------------------------------------------------------------------------- parallel scan


def associative_scan(
    fn: Callable[[tuple[Tensor, ...], tuple[Tensor, ...]], tuple[Tensor, ...]],
    elems: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """Inclusive prefix scan ``e_0, e_0*e_1, e_0*e_1*e_2, ...`` along dim 1 in O(log T) depth.

    The odd/even recursion of Blelloch (1990): combine neighbouring pairs, scan the half-length
    sequence recursively, then fill in the even positions. O(T) work in total.

    Args:
        fn: an associative operator on tuples of tensors, ``fn(earlier, later)``, batched over
            the leading two dims.
        elems: tensors sharing dims 0 (batch) and 1 (time).

    Shape:
        each of ``elems``: ``(batch, T, ...)``; the result has the same shapes.

    References:
        Blelloch (1990). Prefix sums and their applications. CMU-CS-90-190.
    """
    steps = elems[0].shape[1]
    if steps < 2:
        return elems
    reduced = fn(tuple(e[:, 0:-1:2] for e in elems), tuple(e[:, 1::2] for e in elems))
    odd = associative_scan(fn, reduced)  # prefixes ending at positions 1, 3, 5, ...
    if steps % 2 == 0:
        even = fn(tuple(o[:, :-1] for o in odd), tuple(e[:, 2::2] for e in elems))
    else:
        even = fn(odd, tuple(e[:, 2::2] for e in elems))
    out = []
    for first, ev, od in zip(elems, even, odd, strict=True):
        ev = torch.cat([first[:, :1], ev], 1)
        k = od.shape[1]
        pairs = torch.stack([ev[:, :k], od], 2).flatten(1, 2)
        out.append(torch.cat([pairs, ev[:, k:]], 1) if ev.shape[1] > k else pairs)
    return tuple(out)


def _filter_combine(earlier, later):
    """Särkkä & García-Fernández (2021), Lemma 8: combine two filtering elements."""
    A1, b1, C1, eta1, J1 = earlier
    A2, b2, C2, eta2, J2 = later
    eye = torch.eye(A1.shape[-1], dtype=A1.dtype, device=A1.device)
    M = eye + C1 @ J2  # (I + C_i J_j); its transpose is (I + J_j C_i) since C, J are symmetric
    A2_Minv = torch.linalg.solve(M.transpose(-1, -2), A2.transpose(-1, -2)).transpose(-1, -2)
    Minv_A1 = torch.linalg.solve(M, A1)  # transposed, A_i^T (I + J_j C_i)^-1
    A = A2_Minv @ A1
    b = _mv(A2_Minv, b1 + _mv(C1, eta2)) + b2
    C = symmetrize(A2_Minv @ C1 @ A2.transpose(-1, -2) + C2)
    A1t_Ninv = Minv_A1.transpose(-1, -2)
    eta = _mv(A1t_Ninv, eta2 - _mv(J2, b1)) + eta1
    J = symmetrize(A1t_Ninv @ J2 @ A1 + J1)
    return A, b, C, eta, J


def _parallel_filter(model: _Model) -> tuple[KalmanFilterResult, Tensor]:
    y, mask = model.y, model.mask
    batch, steps, p = y.shape
    n = model.A.shape[-1]
    dtype, device = y.dtype, y.device
    eye = torch.eye(n, dtype=dtype, device=device)
    H, R = model.H, model.R
    if mask is not None:
        H, R = _masked(H, R, mask)  # now (batch, T, ...)
        num_observed = mask.to(dtype).sum(-1)
    else:
        num_observed = float(p)
    # With shared matrices and nothing missing, the covariances (and the scan's matrix
    # elements) are the same for every sequence: keep them at batch size 1.
    shared = mask is None and all(
        x.shape[0] == 1 for x in (model.A, model.H, model.Q, model.R, model.init_cov)
    )
    mb = 1 if shared else batch

    # First element: the exact filtering distribution of x_1 (predict from x_0, update on y_1).
    A_1, Q_1 = _at(model.A, 0), _at(model.Q, 0)
    m_pred1 = _mv(A_1, model.init_mean)
    if model.B is not None:
        m_pred1 = m_pred1 + _at(model.B, 0)
    P_pred1 = symmetrize(A_1 @ model.init_cov @ A_1.transpose(-1, -2) + Q_1)
    m1, P1, _, info1 = _update(
        m_pred1.expand(batch, n),
        P_pred1,
        y[:, 0],
        _at(H, 0),
        _at(R, 0),
        None,  # H, R are already masked
    )

    # Elements for t = 2..T (Lemma 7): the conditional filter of x_t given x_{t-1} and y_t.
    F, Qk, Hk, Rk = _from(model.A, 1), _from(model.Q, 1), _from(H, 1), _from(R, 1)
    yk = y[:, 1:]
    Bk = _from(model.B, 1) if model.B is not None else None
    S = symmetrize(Hk @ Qk @ Hk.transpose(-1, -2) + Rk)
    chol, info = torch.linalg.cholesky_ex(S)
    HQ = Hk @ Qk
    gain = torch.cholesky_solve(HQ, chol).transpose(-1, -2)  # Q H^T S^-1
    IKH = eye - gain @ Hk
    residual = yk - (_mv(Hk, Bk) if Bk is not None else 0.0)
    HF = Hk @ F
    A_el = (IKH @ F).expand(mb, steps - 1, n, n)
    b_el = _mv(gain, residual)
    if Bk is not None:
        b_el = b_el + Bk
    b_el = b_el.expand(batch, steps - 1, n)
    C_el = symmetrize(IKH @ Qk @ IKH.transpose(-1, -2) + gain @ Rk @ gain.transpose(-1, -2))
    C_el = C_el.expand(mb, steps - 1, n, n)
    Sinv_HF = torch.cholesky_solve(HF, chol)
    eta_el = _mv(Sinv_HF.transpose(-1, -2), residual)  # F^T H^T S^-1 (y - H B)
    eta_el = eta_el.expand(batch, steps - 1, n)
    J_el = symmetrize(HF.transpose(-1, -2) @ Sinv_HF).expand(mb, steps - 1, n, n)

    zeros_nn = torch.zeros(mb, 1, n, n, dtype=dtype, device=device)
    zeros_n = torch.zeros(batch, 1, n, dtype=dtype, device=device)
    elems = (
        torch.cat([zeros_nn, A_el], 1),
        torch.cat([m1.unsqueeze(1), b_el], 1),
        torch.cat([P1.expand(mb, n, n).unsqueeze(1), C_el], 1),
        torch.cat([zeros_n, eta_el], 1),
        torch.cat([zeros_nn, J_el], 1),
    )
    _, means, covs, _, _ = associative_scan(_filter_combine, elems)

    # One-step predictions and the log-likelihood, all time steps at once.
    A_all = model.A
    prev_means = torch.cat([model.init_mean.expand(batch, n).unsqueeze(1), means[:, :-1]], 1)
    prev_covs = torch.cat([model.init_cov.expand(mb, n, n).unsqueeze(1), covs[:, :-1]], 1)
    pmeans = _mv(A_all, prev_means)
    if model.B is not None:
        pmeans = pmeans + model.B
    pmeans = pmeans.expand(batch, steps, n)
    pcovs = symmetrize(A_all @ prev_covs @ A_all.transpose(-1, -2) + model.Q)
    S_all = symmetrize(H @ pcovs @ H.transpose(-1, -2) + R)
    chol_all, info_all = torch.linalg.cholesky_ex(S_all)
    step_ll = _gaussian_log_prob(y - _mv(H, pmeans), chol_all, num_observed)
    result = KalmanFilterResult(
        means,
        covs.expand(batch, steps, n, n),
        step_ll.sum(1),
        step_ll,
        pmeans,
        pcovs.expand(batch, steps, n, n),
    )
    infos = torch.cat([info1.reshape(-1), info.reshape(-1), info_all.reshape(-1)])
    return result, infos


# --------------------------------------------------------------------------- smoothing


def rts_smoother(
    filtered: KalmanFilterResult,
    A: Tensor,
    *,
    method: str = "sequential",
    validate_args: bool = True,
) -> KalmanSmootherResult:
    """Rauch–Tung–Striebel smoother: ``p(x_t | y_1..y_T)`` for every ``t`` from a filter run.

    Args:
        filtered: the output of :func:`kalman_filter` on the same model.
        A: the transition matrices used by that filter run.
        method: ``"sequential"`` (backward recursion) or ``"parallel"`` (reverse associative
            scan of Särkkä & García-Fernández 2021, Lemmas 9-10).
        validate_args: raise :class:`NotPSDError` when a predicted covariance is singular.

    Returns:
        :class:`KalmanSmootherResult`.

    Shape:
        ``A``: as for :func:`kalman_filter`; outputs ``(batch, T, n)`` / ``(batch, T, n, n)``.

    References:
        Rauch, Tung & Striebel (1965); Särkkä (2013), Theorem 8.2;
        Särkkä & García-Fernández (2021), section V.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    means, covs = filtered.means, filtered.covs
    batch, steps, n = means.shape
    A4 = _as_4d("A", A, batch, steps, n, n).to(means.dtype)
    pcovs, pmeans = filtered.predicted_covs, filtered.predicted_means
    if A4.shape[0] == 1 and all(c.shape[0] == 1 or c.stride(0) == 0 for c in (covs, pcovs)):
        # Covariances shared by the batch (a view from the filter's fast path): so are the gains.
        covs, pcovs = covs[:1], pcovs[:1]
    mb = covs.shape[0]
    # Gains G_t = P_t A_{t+1}^T (P^-_{t+1})^-1 for t < T, all at once: G^T = (P^-)^-1 A P_t.
    A_next = _from(A4, 1)
    chol, info = torch.linalg.cholesky_ex(pcovs[:, 1:])
    if validate_args:
        _raise_if_failed(info, "the predicted covariance A P A^T + Q")
    gains = torch.cholesky_solve(A_next @ covs[:, :-1], chol).transpose(-1, -2)
    zeros = torch.zeros(mb, 1, n, n, dtype=means.dtype, device=means.device)
    all_gains = torch.cat([gains, zeros], 1)
    if method == "parallel":
        # Elements (E_t, g_t, L_t): x_t | x_{t+1}, y_1..y_t ~ N(E_t x_{t+1} + g_t, L_t).
        g = means[:, :-1] - _mv(gains, pmeans[:, 1:])
        L = symmetrize(covs[:, :-1] - gains @ pcovs[:, 1:] @ gains.transpose(-1, -2))
        elems = (
            all_gains.flip(1),
            torch.cat([g, means[:, -1:]], 1).flip(1),
            torch.cat([L, covs[:, -1:]], 1).flip(1),
        )
        _, sm_means, sm_covs = associative_scan(_smoother_combine, elems)
        return KalmanSmootherResult(
            sm_means.flip(1),
            sm_covs.flip(1).expand(batch, steps, n, n),
            all_gains.expand(batch, steps, n, n),
        )
    mean, cov = means[:, -1], covs[:, -1]
    out_means, out_covs = [mean], [cov]
    for t in range(steps - 2, -1, -1):
        G = gains[:, t]
        mean = means[:, t] + _mv(G, mean - pmeans[:, t + 1])
        cov = symmetrize(covs[:, t] + G @ (cov - pcovs[:, t + 1]) @ G.transpose(-1, -2))
        out_means.append(mean)
        out_covs.append(cov)
    return KalmanSmootherResult(
        torch.stack(out_means[::-1], 1),
        torch.stack(out_covs[::-1], 1).expand(batch, steps, n, n),
        all_gains.expand(batch, steps, n, n),
    )


def _smoother_combine(later, earlier):
    """Combine backward elements; in reversed time the ``later`` one comes first in the scan."""
    E_a, g_a, L_a = later
    E_b, g_b, L_b = earlier
    return (
        E_b @ E_a,
        _mv(E_b, g_a) + g_b,
        symmetrize(E_b @ L_a @ E_b.transpose(-1, -2) + L_b),
    )


# --------------------------------------------------------------------------- forecasting


def kalman_predict(
    mean: Tensor,
    cov: Tensor,
    A: Tensor,
    H: Tensor,
    Q: Tensor,
    R: Tensor,
    num_steps: int,
    B: Tensor | None = None,
) -> KalmanPrediction:
    """Forecast ``num_steps`` states and observations ahead of a filtered ``N(mean, cov)``.

    Args:
        mean: the last filtered mean.
        cov: its covariance.
        A, H, Q, R, B: the (time-invariant) model; time-varying tensors use their last slice.
        num_steps: how many steps ahead (``>= 1``).

    Shape:
        ``mean``: ``(batch, n)``; ``cov``: ``(batch, n, n)``; outputs as in
        :class:`KalmanPrediction`.

    References:
        Särkkä (2013), section 4.3 (prediction step).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")
    if not isinstance(mean, Tensor) or mean.dim() not in (1, 2):
        raise ValueError(f"mean must be a tensor of shape (batch, n), got {mean!r:.80}")
    if not isinstance(H, Tensor) or H.dim() < 2:
        raise ValueError(f"H must be a tensor of shape (..., p, n), got {H!r:.80}")
    # The filter's checks (shapes, finite values, PSD Q, R and cov) on a one-step dummy y.
    dummy_y = mean.new_zeros(mean.shape[0] if mean.dim() == 2 else 1, 1, H.shape[-2])
    try:
        _prepare(dummy_y, A, H, Q, R, mean, cov, B, validate_args=True)
    except ValueError as err:  # the filter calls them init_mean and init_cov
        message = str(err).replace("init_mean", "mean").replace("init_cov", "cov")
        raise type(err)(message) from None
    n = mean.shape[-1]
    A_, Q_ = A.reshape(-1, n, n)[-1], Q.reshape(-1, n, n)[-1]
    H_ = H.reshape(-1, H.shape[-2], n)[-1]
    R_ = R.reshape(-1, H.shape[-2], H.shape[-2])[-1]
    B_ = None if B is None else B.reshape(-1, n)[-1]
    means, covs = [], []
    for _ in range(num_steps):
        mean = _mv(A_, mean) + (B_ if B_ is not None else 0.0)
        cov = symmetrize(A_ @ cov @ A_.transpose(-1, -2) + Q_)
        means.append(mean)
        covs.append(cov)
    means_t, covs_t = torch.stack(means, -2), torch.stack(covs, -3)
    obs_means = _mv(H_, means_t)
    obs_covs = symmetrize(H_ @ covs_t @ H_.transpose(-1, -2) + R_)
    return KalmanPrediction(means_t, covs_t, obs_means, obs_covs)
