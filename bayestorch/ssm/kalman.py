"""``KalmanFilter``: a linear-Gaussian state-space model as an ``nn.Module`` (learnable matrices).

A thin shell over :mod:`bayestorch.ssm.functional`: the transition and observation matrices
and the initial mean are plain parameters; the covariances ``Q``, ``R`` and ``init_cov`` are
stored as unconstrained lower-triangular factors whose diagonal passes through a softplus, so
``L L^T`` stays positive definite whatever an optimiser does to them.

References:
    Kalman (1960); Särkkä (2013). Bayesian Filtering and Smoothing, ch. 4 and 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayestorch.ssm.functional import (
    KalmanFilterResult,
    KalmanPrediction,
    KalmanSmootherResult,
    kalman_filter,
    kalman_predict,
    rts_smoother,
)
from bayestorch.utils.linalg import NotPSDError

__all__ = ["KalmanFilter", "covariance_to_raw", "raw_to_covariance"]

# Smallest diagonal of a Cholesky factor: keeps covariances positive definite in float32.
_MIN_DIAG = 1e-6


def raw_to_covariance(raw: Tensor) -> Tensor:
    """``L L^T`` with ``L = tril(raw, -1) + diag(softplus(diag(raw)) + 1e-6)``.

    Shape:
        ``raw``: ``(..., n, n)`` (only its lower triangle is used) -> ``(..., n, n)``.

    References:
        Pinheiro & Bates (1996). Unconstrained parametrizations for variance-covariance
        matrices. Statistics and Computing 6.
    """
    diag = F.softplus(raw.diagonal(dim1=-2, dim2=-1)) + _MIN_DIAG
    factor = torch.tril(raw, -1) + torch.diag_embed(diag)
    return factor @ factor.transpose(-1, -2)


def covariance_to_raw(cov: Tensor, name: str = "covariance") -> Tensor:
    """Inverse of :func:`raw_to_covariance` for a positive-definite ``cov``.

    Raises:
        NotPSDError: naming ``name`` when ``cov`` is not symmetric positive definite.

    Shape:
        ``cov``: ``(..., n, n)`` -> ``(..., n, n)``.

    References:
        Pinheiro & Bates (1996).
    """
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be square (..., n, n), got shape {tuple(cov.shape)}")
    if not bool(torch.isfinite(cov).all()):
        raise ValueError(f"{name} of shape {tuple(cov.shape)} holds NaN or inf")
    tol = 10 * cov.shape[-1] * torch.finfo(cov.dtype).eps * cov.abs().amax().clamp_min(1e-30)
    if bool(((cov - cov.transpose(-1, -2)).abs() > tol).any()):
        raise NotPSDError(f"{name} of shape {tuple(cov.shape)} must be symmetric")
    factor, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        smallest = float(torch.linalg.eigvalsh(cov).min())
        raise NotPSDError(
            f"{name} of shape {tuple(cov.shape)} must be positive definite (it is stored as a "
            f"Cholesky factor); smallest eigenvalue {smallest:.3g}"
        )
    diag = (factor.diagonal(dim1=-2, dim2=-1) - _MIN_DIAG).clamp_min(1e-12)
    # softplus^-1(d) = d + log(-expm1(-d)), stable for large and small d.
    raw_diag = diag + torch.log(-torch.expm1(-diag))
    return torch.tril(factor, -1) + torch.diag_embed(raw_diag)


def _tensor(name: str, value, dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().clone().to(dtype if not value.is_floating_point() else value.dtype)
    return torch.as_tensor(value, dtype=dtype)


class KalmanFilter(nn.Module):
    """Linear-Gaussian state-space model with learnable matrices, filtered exactly.

    ``x_0 ~ N(init_mean, init_cov)``, ``x_t = A x_{t-1} + B + w_t``, ``w_t ~ N(0, Q)``,
    ``y_t = H x_t + v_t``, ``v_t ~ N(0, R)``. Every argument becomes a parameter
    (covariances through a softplus-Cholesky factor, so they stay positive definite);
    freeze one with ``kf.A.requires_grad_(False)``. Matrices may carry leading time / batch
    dims (time-varying models), as in :func:`~bayestorch.ssm.functional.kalman_filter`.

    Args:
        A: transition matrix.
        H: observation matrix.
        Q: process-noise covariance (positive definite).
        R: observation-noise covariance (positive definite).
        B: optional transition offset; ``None`` means no offset (not learnable).
        init_mean: mean of ``x_0`` (default zeros).
        init_cov: covariance of ``x_0`` (default identity).
        method: default algorithm, ``"sequential"`` or ``"parallel"``.

    Shape:
        ``A``, ``Q``: ``(..., n, n)``; ``H``: ``(..., p, n)``; ``R``: ``(..., p, p)``;
        ``B``: ``(..., n)``; ``init_mean``: ``(n,)``; ``init_cov``: ``(n, n)``.
        ``filter(y)``/``smooth(y)``: ``y`` is ``(batch, T, p)``, NaN = missing.

    References:
        Kalman (1960); Rauch, Tung & Striebel (1965); Särkkä & García-Fernández (2021).

    Example::

        >>> kf = KalmanFilter(torch.eye(2), torch.ones(1, 2), 0.1 * torch.eye(2), torch.eye(1))
        >>> out = kf.filter(torch.randn(8, 50, 1))
        >>> (-out.log_likelihood.mean()).backward()
    """

    def __init__(
        self,
        A: Tensor,
        H: Tensor,
        Q: Tensor,
        R: Tensor,
        B: Tensor | None = None,
        init_mean: Tensor | None = None,
        init_cov: Tensor | None = None,
        *,
        method: str = "sequential",
    ) -> None:
        super().__init__()
        dtype = torch.get_default_dtype()
        A = _tensor("A", A, dtype)
        H = _tensor("H", H, dtype)
        if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
            raise ValueError(f"A must have shape (..., n, n), got {tuple(A.shape)}")
        n = A.shape[-1]
        if H.dim() < 2 or H.shape[-1] != n:
            raise ValueError(f"H must have shape (..., p, {n}) to match A, got {tuple(H.shape)}")
        p = H.shape[-2]
        Q, R = _tensor("Q", Q, dtype), _tensor("R", R, dtype)
        if Q.dim() < 2 or tuple(Q.shape[-2:]) != (n, n):
            raise ValueError(f"Q must have shape (..., {n}, {n}), got {tuple(Q.shape)}")
        if R.dim() < 2 or tuple(R.shape[-2:]) != (p, p):
            raise ValueError(f"R must have shape (..., {p}, {p}), got {tuple(R.shape)}")
        init_mean = (
            torch.zeros(n, dtype=A.dtype) if init_mean is None else _tensor("m", init_mean, dtype)
        )
        init_cov = (
            torch.eye(n, dtype=A.dtype) if init_cov is None else _tensor("P", init_cov, dtype)
        )
        if tuple(init_mean.shape) != (n,):
            raise ValueError(f"init_mean must have shape ({n},), got {tuple(init_mean.shape)}")
        if tuple(init_cov.shape) != (n, n):
            raise ValueError(f"init_cov must have shape ({n}, {n}), got {tuple(init_cov.shape)}")
        for name, value in (("A", A), ("H", H), ("init_mean", init_mean)):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} of shape {tuple(value.shape)} holds NaN or inf")
        if method not in ("sequential", "parallel"):
            raise ValueError(f"method must be 'sequential' or 'parallel', got {method!r}")
        self.method = method
        self.A = nn.Parameter(A)
        self.H = nn.Parameter(H)
        self.raw_Q = nn.Parameter(covariance_to_raw(Q, "Q"))
        self.raw_R = nn.Parameter(covariance_to_raw(R, "R"))
        self.init_mean = nn.Parameter(init_mean)
        self.raw_init_cov = nn.Parameter(covariance_to_raw(init_cov, "init_cov"))
        if B is None:
            self.B = None
        else:
            B = _tensor("B", B, dtype)
            if B.dim() < 1 or B.shape[-1] != n:
                raise ValueError(f"B must have shape (..., {n}), got {tuple(B.shape)}")
            self.B = nn.Parameter(B)

    @property
    def state_dim(self) -> int:
        return self.A.shape[-1]

    @property
    def obs_dim(self) -> int:
        return self.H.shape[-2]

    @property
    def Q(self) -> Tensor:
        """Process-noise covariance ``L_Q L_Q^T``."""
        return raw_to_covariance(self.raw_Q)

    @property
    def R(self) -> Tensor:
        """Observation-noise covariance ``L_R L_R^T``."""
        return raw_to_covariance(self.raw_R)

    @property
    def init_cov(self) -> Tensor:
        """Covariance of ``x_0``."""
        return raw_to_covariance(self.raw_init_cov)

    def _check_params(self) -> None:
        for name, value in self.named_parameters():
            if not bool(torch.isfinite(value.detach()).all()):
                raise ValueError(
                    f"parameter {name} of shape {tuple(value.shape)} holds NaN or inf "
                    f"(diverged optimisation? lower the learning rate)"
                )

    def filter(self, y: Tensor, *, method: str | None = None) -> KalmanFilterResult:
        """Filtered means/covariances and the exact log-likelihood (see ``kalman_filter``).

        Shape:
            ``y``: ``(batch, T, p)`` -> :class:`KalmanFilterResult`.
        """
        self._check_params()
        return kalman_filter(
            y,
            self.A,
            self.H,
            self.Q,
            self.R,
            self.init_mean,
            self.init_cov,
            self.B,
            method=method or self.method,
            validate_args=False,  # the parameterisation keeps Q, R, init_cov PD
        )

    def forward(self, y: Tensor) -> KalmanFilterResult:
        """Same as :meth:`filter`."""
        return self.filter(y)

    def log_likelihood(self, y: Tensor, *, method: str | None = None) -> Tensor:
        """Exact ``log p(y_1..y_T)`` per sequence, differentiable in every parameter.

        Shape:
            ``y``: ``(batch, T, p)`` -> ``(batch,)``.
        """
        return self.filter(y, method=method).log_likelihood

    def smooth(self, y: Tensor, *, method: str | None = None) -> KalmanSmootherResult:
        """Rauch–Tung–Striebel smoothed means/covariances ``p(x_t | y_1..y_T)``.

        Shape:
            ``y``: ``(batch, T, p)`` -> :class:`KalmanSmootherResult`.
        """
        method = method or self.method
        filtered = self.filter(y, method=method)
        return rts_smoother(filtered, self.A, method=method)

    def predict(self, y: Tensor, num_steps: int = 1) -> KalmanPrediction:
        """Forecast states and observations ``num_steps`` ahead of the filtered ``y``.

        Shape:
            ``y``: ``(batch, T, p)`` -> :class:`KalmanPrediction` with ``num_steps`` steps.
        """
        out = self.filter(y)
        return kalman_predict(
            out.means[:, -1],
            out.covs[:, -1],
            self.A,
            self.H,
            self.Q,
            self.R,
            num_steps,
            self.B,
        )

    @torch.no_grad()
    def sample(
        self, batch: int, num_steps: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Simulate ``(states, observations)`` from the (time-invariant) model.

        Shape:
            returns ``(batch, num_steps, n)`` and ``(batch, num_steps, p)``.
        """
        n, p = self.state_dim, self.obs_dim
        like = self.A
        A, H = self.A.reshape(-1, n, n)[-1], self.H.reshape(-1, p, n)[-1]
        LQ = torch.linalg.cholesky(self.Q.reshape(-1, n, n)[-1])
        LR = torch.linalg.cholesky(self.R.reshape(-1, p, p)[-1])
        B = 0.0 if self.B is None else self.B.reshape(-1, n)[-1]

        def noise(k):
            return torch.randn(batch, k, generator=generator, device=like.device, dtype=like.dtype)

        x = self.init_mean + noise(n) @ torch.linalg.cholesky(self.init_cov).T
        xs, ys = [], []
        for _ in range(num_steps):
            x = x @ A.T + B + noise(n) @ LQ.T
            xs.append(x)
            ys.append(x @ H.T + noise(p) @ LR.T)
        return torch.stack(xs, 1), torch.stack(ys, 1)

    def extra_repr(self) -> str:
        return f"state_dim={self.state_dim}, obs_dim={self.obs_dim}, method={self.method!r}"
