"""``KalmanFilter``: a linear-Gaussian state-space model as an ``nn.Module`` (learnable matrices).

A thin shell over :mod:`bayestorch.ssm.functional`: the transition and observation matrices
and the initial mean are plain parameters. Each covariance ``C`` (``Q``, ``R``, ``init_cov``) is
stored relative to the value it was given, ``C_0 = L_0 L_0^T`` (kept as buffers):

    C = C_0 + L_0 (M M^T - I) L_0^T,     M = tril(raw, -1) + diag(exp(diag(raw))),

with ``raw`` the parameter, zero at construction. So ``C`` is exactly the value given (bit for
bit: ``M = I`` there) whatever its scale, it equals ``(L_0 M)(L_0 M)^T`` (positive definite for
any ``raw`` when ``C_0`` is), and an optimiser moves it on a log scale relative to ``C_0``.
A singular (positive semi-definite) ``C_0`` is accepted, as :func:`~bayestorch.ssm.kalman_filter`
accepts it; ``L_0`` then spans its range, which stays fixed while the covariance learns
within it.

References:
    Kalman (1960); Särkkä (2013). Bayesian Filtering and Smoothing, ch. 4 and 8.
    Pinheiro & Bates (1996). Unconstrained parametrizations for variance-covariance
    matrices. Statistics and Computing 6.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayestorch.ssm.functional import (
    KalmanFilterResult,
    KalmanPrediction,
    KalmanSmootherResult,
    _check_psd,
    kalman_filter,
    kalman_predict,
    rts_smoother,
)
from bayestorch.utils.linalg import symmetrize

__all__ = ["KalmanFilter", "covariance_factor", "relative_covariance"]


def covariance_factor(cov: Tensor, name: str = "covariance") -> Tensor:
    """A factor ``F`` with ``F F^T = cov`` (to round-off) of a symmetric PSD ``cov``.

    The Cholesky factor when ``cov`` is positive definite; otherwise ``V diag(sqrt(lam))``
    from its eigendecomposition (eigenvalues within round-off of 0 count as 0), so a singular
    covariance keeps its range.

    Raises:
        ValueError: ``cov`` is not square or holds NaN/inf.
        NotPSDError: naming ``name`` when ``cov`` is not symmetric positive semi-definite
            (same tolerance as :func:`~bayestorch.ssm.kalman_filter`).

    Shape:
        ``cov``: ``(..., n, n)`` -> ``(..., n, n)``.
    """
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be square (..., n, n), got shape {tuple(cov.shape)}")
    if not bool(torch.isfinite(cov).all()):
        raise ValueError(f"{name} of shape {tuple(cov.shape)} holds NaN or inf")
    _check_psd(name, cov)
    factor, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        eigenvalues, vectors = torch.linalg.eigh(symmetrize(cov))
        # negative eigenvalues here are round-off (_check_psd passed): the factor spans the
        # range; the covariance itself is kept exactly as given (see relative_covariance).
        eigen_factor = vectors * eigenvalues.clamp_min(0.0).sqrt().unsqueeze(-2)
        failed = (info != 0)[..., None, None]
        factor = torch.where(failed, eigen_factor, factor)
    return factor


def relative_covariance(base: Tensor, factor: Tensor, raw: Tensor) -> Tensor:
    """``base + F (M M^T - I) F^T`` with ``M = tril(raw, -1) + diag(exp(diag(raw)))``.

    Equals ``base`` exactly at ``raw = 0`` and ``(F M)(F M)^T`` (with ``F F^T = base``)
    for every ``raw``.

    Shape:
        ``base``, ``factor``, ``raw``: ``(..., n, n)`` -> ``(..., n, n)``.
    """
    m = torch.tril(raw, -1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    eye = torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    change = m @ m.transpose(-1, -2) - eye
    return base + symmetrize(factor @ change @ factor.transpose(-1, -2))


def _tensor(name: str, value, dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().clone().to(dtype if not value.is_floating_point() else value.dtype)
    return torch.as_tensor(value, dtype=dtype)


class KalmanFilter(nn.Module):
    """Linear-Gaussian state-space model with learnable matrices, filtered exactly.

    ``x_0 ~ N(init_mean, init_cov)``, ``x_t = A x_{t-1} + B + w_t``, ``w_t ~ N(0, Q)``,
    ``y_t = H x_t + v_t``, ``v_t ~ N(0, R)``. Every argument becomes a parameter; a
    covariance ``C`` is stored relative to its given value ``C_0 = L_0 L_0^T`` as
    ``C_0 + L_0 (M M^T - I) L_0^T`` with ``M = tril(raw_C, -1) + diag(exp(diag(raw_C)))``
    (see the module docstring), so ``kf.Q`` is exactly the ``Q`` given, however small, and
    stays positive (semi-)definite whatever an optimiser does to ``raw_Q``. Positive
    semi-definite covariances are accepted as by :func:`~bayestorch.ssm.kalman_filter`.
    Freeze a parameter with ``kf.A.requires_grad_(False)`` (``kf.raw_Q`` for ``Q``). Matrices
    may carry leading time / batch dims (time-varying models), as in
    :func:`~bayestorch.ssm.functional.kalman_filter`.

    Args:
        A: transition matrix.
        H: observation matrix.
        Q: process-noise covariance (positive semi-definite).
        R: observation-noise covariance (positive semi-definite; ``H P H^T + R`` must be
            positive definite).
        B: optional transition offset; ``None`` means no offset (not learnable).
        init_mean: mean of ``x_0`` (default zeros).
        init_cov: covariance of ``x_0`` (default identity; positive semi-definite).
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
        self._register_covariance("Q", Q)
        self._register_covariance("R", R)
        self.init_mean = nn.Parameter(init_mean)
        self._register_covariance("init_cov", init_cov)
        if B is None:
            self.B = None
        else:
            B = _tensor("B", B, dtype)
            if B.dim() < 1 or B.shape[-1] != n:
                raise ValueError(f"B must have shape (..., {n}), got {tuple(B.shape)}")
            self.B = nn.Parameter(B)

    def _register_covariance(self, name: str, value: Tensor) -> None:
        """Buffers ``base_<name>``, ``base_<name>_factor`` and the parameter ``raw_<name>``."""
        self.register_buffer(f"base_{name}", value)
        self.register_buffer(f"base_{name}_factor", covariance_factor(value, name))
        self.register_parameter(f"raw_{name}", nn.Parameter(torch.zeros_like(value)))

    def _covariance(self, name: str) -> Tensor:
        return relative_covariance(
            getattr(self, f"base_{name}"),
            getattr(self, f"base_{name}_factor"),
            getattr(self, f"raw_{name}"),
        )

    def covariance_factor(self, name: str) -> Tensor:
        """A factor ``F`` with ``F F^T`` the current covariance ``name`` (``"Q"``, ``"R"``
        or ``"init_cov"``), also when it is singular.

        Shape:
            that of the covariance.
        """
        raw = getattr(self, f"raw_{name}")
        m = torch.tril(raw, -1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
        return getattr(self, f"base_{name}_factor") @ m

    @property
    def state_dim(self) -> int:
        return self.A.shape[-1]

    @property
    def obs_dim(self) -> int:
        return self.H.shape[-2]

    @property
    def Q(self) -> Tensor:
        """Process-noise covariance (exactly the value given until an optimiser moves it)."""
        return self._covariance("Q")

    @property
    def R(self) -> Tensor:
        """Observation-noise covariance."""
        return self._covariance("R")

    @property
    def init_cov(self) -> Tensor:
        """Covariance of ``x_0``."""
        return self._covariance("init_cov")

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
            validate_args=False,  # the parameterisation keeps Q, R, init_cov PSD
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
        LQ = self.covariance_factor("Q").reshape(-1, n, n)[-1]
        LR = self.covariance_factor("R").reshape(-1, p, p)[-1]
        B = 0.0 if self.B is None else self.B.reshape(-1, n)[-1]

        def noise(k):
            return torch.randn(batch, k, generator=generator, device=like.device, dtype=like.dtype)

        x = self.init_mean + noise(n) @ self.covariance_factor("init_cov").T
        xs, ys = [], []
        for _ in range(num_steps):
            x = x @ A.T + B + noise(n) @ LQ.T
            xs.append(x)
            ys.append(x @ H.T + noise(p) @ LR.T)
        return torch.stack(xs, 1), torch.stack(ys, 1)

    def extra_repr(self) -> str:
        return f"state_dim={self.state_dim}, obs_dim={self.obs_dim}, method={self.method!r}"
