"""Exact Gaussian-process regression by Cholesky factorisation.

Talk section "Gaussian processes: regression". With training inputs ``X``, targets ``y``,
kernel ``k`` and Gaussian noise of variance ``noise_var``, the posterior at test inputs
``X*`` is Gaussian with

    mean = K*^T (K + noise_var I)^-1 y,     cov = K** - K*^T (K + noise_var I)^-1 K*

(the noiseless predictive of ``f(X*)``; the noisy predictive of new observations adds
``noise_var I``), and the log marginal likelihood is
``log N(y | 0, K + noise_var I)``. All three go through one Cholesky factor ``L``, taken with
:func:`bayestorch.utils.safe_cholesky` (escalating jitter, reported by a warning; a
:class:`~bayestorch.utils.NotPSDError` naming the matrix when jitter does not help).

References:
    Rasmussen & Williams (2006). Gaussian Processes for Machine Learning, algorithm 2.1
    and eqs. 2.22-2.24, 2.30.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from bayestorch.gp.kernels import Kernel, _as_inputs, _as_positive_tensor, inverse_softplus
from bayestorch.utils import safe_cholesky
from bayestorch.utils.chunking import check_chunk_size, chunk_slices, resolve_chunk_size

__all__ = [
    "GPPrediction",
    "GPRegression",
    "fit_hyperparameters",
    "gaussian_log_evidence",
    "gp_posterior",
]

_MATRIX_NAME = "kernel matrix K + noise_var I"


class GPPrediction(NamedTuple):
    """Predictive mean and variance (or covariance with ``full_cov=True``)."""

    mean: Tensor
    var: Tensor


def gp_posterior(
    kernel: Kernel,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    noise_var: Tensor,
    *,
    full_cov: bool = False,
    warn_jitter: bool = True,
    chunk_size: int | None = None,
) -> GPPrediction:
    """Noiseless predictive ``f(test_x) | train`` of a zero-mean GP (functional core).

    The test points are processed ``chunk_size`` at a time (default: as many as keep the
    ``(n, chunk)`` cross-covariance temporaries under
    :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`), so predicting at ``m`` points
    takes memory for ``n x n`` plus one chunk, not ``n x m`` (with gradients enabled, each
    chunk is recomputed in the backward pass rather than kept). ``full_cov=True`` returns an
    ``(m, m)`` matrix and needs ``L^-1 K*`` for all ``m`` points at once: it is not chunked.

    Shape:
        ``train_x``: ``(..., n, d)``, ``train_y``: ``(..., n)`` or ``(..., n, t)`` (``t``
        independent outputs sharing the kernel), ``test_x``: ``(..., m, d)`` (leading dims
        broadcast); returns mean ``(..., m)`` (or ``(..., m, t)``) and variance ``(..., m)``
        or covariance ``(..., m, m)`` (shared by all outputs).

    References:
        Rasmussen & Williams (2006), algorithm 2.1.
    """
    check_chunk_size(chunk_size)
    train_x, test_x = _as_inputs("train_x", train_x), _as_inputs("test_x", test_x)
    if test_x.shape[-1] != train_x.shape[-1]:
        raise ValueError(
            f"test_x must have train_x's input dimension {train_x.shape[-1]} in its last dim, "
            f"got shape {tuple(test_x.shape)}"
        )
    if not isinstance(train_y, Tensor):
        raise TypeError(f"train_y must be a torch.Tensor, got {type(train_y).__name__}")
    if train_y.dim() not in (train_x.dim() - 1, train_x.dim()) or (
        train_y.shape[: train_x.dim() - 1] != train_x.shape[:-1]
    ):
        raise ValueError(
            f"train_y must have shape {tuple(train_x.shape[:-1])} or "
            f"{tuple(train_x.shape[:-1])} + (t,) (train_x's), got {tuple(train_y.shape)}"
        )
    chol = _cholesky(kernel, train_x, noise_var, warn_jitter)
    multi = train_y.dim() == train_x.dim()
    targets = train_y if multi else train_y.unsqueeze(-1)
    alpha = torch.cholesky_solve(targets, chol)  # (K + noise I)^-1 y, (..., n, t)

    def predict(points: Tensor) -> GPPrediction:
        cross = kernel(train_x, points)  # (..., n, c)
        factor = chol.expand(*cross.shape[:-2], *chol.shape[-2:])
        mean = cross.mT @ alpha
        mean = mean if multi else mean.squeeze(-1)
        v = torch.linalg.solve_triangular(factor, cross, upper=False)  # L^-1 K*
        if full_cov:
            return GPPrediction(mean, kernel(points) - v.mT @ v)
        var = kernel(points, diag=True) - v.square().sum(-2)
        return GPPrediction(mean, var.clamp_min(0.0))

    m = test_x.shape[-2] if test_x.dim() > 1 else test_x.shape[0]
    batch = max(1, torch.broadcast_shapes(train_x.shape[:-2], test_x.shape[:-2]).numel())
    row_bytes = 4 * batch * train_x.shape[-2] * chol.element_size()
    chunk = m if full_cov else resolve_chunk_size(chunk_size, row_bytes, m)
    if chunk >= m:
        return predict(test_x)
    if test_x.dim() == 1:
        test_x = test_x.unsqueeze(-1)
    if torch.is_grad_enabled():
        # Differentiable prediction would keep every chunk's (n, chunk) intermediates for the
        # backward pass; recompute them there instead, so memory stays one chunk's.
        def run(points: Tensor) -> GPPrediction:
            return checkpoint(predict, points, use_reentrant=False)
    else:
        run = predict
    parts = [run(test_x[..., rows, :]) for rows in chunk_slices(m, chunk)]
    mean_dim = -2 if multi else -1
    return GPPrediction(
        torch.cat([part.mean for part in parts], mean_dim),
        torch.cat([part.var for part in parts], -1),
    )


def _cholesky(kernel: Kernel, x: Tensor, noise_var: Tensor, warn: bool) -> Tensor:
    gram = kernel(x)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return safe_cholesky(gram + noise_var.to(gram) * eye, name=_MATRIX_NAME, warn=warn)


class _GaussianLogEvidence(torch.autograd.Function):
    """``sum_t log N(Y[:, t] | 0, A)`` given the Cholesky factor of ``A``, with the gradient
    ``dA = (alpha alpha^T - t A^-1) / 2``, ``alpha = A^-1 Y`` (R&W eq. 5.9).

    One ``cholesky_inverse`` (about n^3 flops) instead of autograd through the Cholesky
    factorisation and the solves (about three times as many).
    """

    @staticmethod
    def forward(ctx, matrix: Tensor, targets: Tensor, chol: Tensor) -> Tensor:
        alpha = torch.cholesky_solve(targets, chol)
        n, t = targets.shape[-2:]
        log_det = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        value = (
            -0.5 * (targets * alpha).sum((-2, -1))
            - t * log_det
            - 0.5 * n * t * math.log(2.0 * math.pi)
        )
        ctx.save_for_backward(alpha, chol)
        ctx.num_outputs = t
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        alpha, chol = ctx.saved_tensors
        grad_matrix = grad_targets = None
        scale = grad[..., None, None]
        if ctx.needs_input_grad[0]:
            inverse = torch.cholesky_inverse(chol)
            grad_matrix = 0.5 * scale * (alpha @ alpha.mT - ctx.num_outputs * inverse)
        if ctx.needs_input_grad[1]:
            grad_targets = -scale * alpha
        return grad_matrix, grad_targets, None


def gaussian_log_evidence(matrix: Tensor, targets: Tensor, chol: Tensor) -> Tensor:
    """``sum_t log N(targets[..., :, t] | 0, matrix)`` with ``chol`` the lower Cholesky factor
    of ``matrix`` (taken without gradient); differentiable in ``matrix`` and ``targets``
    (first order) by the closed-form gradient.

    Shape:
        ``matrix``: ``(..., n, n)``, ``targets``: ``(..., n, t)``, ``chol``: ``(..., n, n)``;
        returns ``(...)``.

    References:
        Rasmussen & Williams (2006), eqs. 2.30 and 5.9.
    """
    batch = torch.broadcast_shapes(matrix.shape[:-2], targets.shape[:-2], chol.shape[:-2])
    n, t = targets.shape[-2:]
    return _GaussianLogEvidence.apply(
        matrix.expand(*batch, n, n), targets.expand(*batch, n, t), chol.expand(*batch, n, n)
    )


class GPRegression(nn.Module):
    """Exact GP regression with Gaussian noise and a zero prior mean.

    ``fit(x, y)`` stores the training data (as buffers, so ``state_dict`` keeps them);
    ``predict`` and ``log_marginal_likelihood`` refactorise ``K + noise_var I`` on every call,
    so they always reflect the current hyperparameters and are differentiable in them.
    Centre (or standardise) ``y`` yourself if its mean is far from 0. Inputs and the module
    may be float32 or float64 (``gp.double()``; float64 is advised beyond a few hundred
    points).

    Args:
        kernel: the prior covariance.
        noise_var: initial observation-noise variance (> 0, learnable, softplus-constrained).
        warn_jitter: warn when jitter had to be added to ``K + noise_var I``.

    Shape:
        ``x``: ``(..., n, d)`` (or ``(n,)`` for one input dimension), ``y``: ``(..., n)``,
        or ``(..., n, t)`` for ``t`` independent outputs sharing the kernel (e.g. one-hot
        labels); ``predict(x_star)`` with ``x_star``: ``(..., m, d)`` returns mean
        ``(..., m)`` (``(..., m, t)``) and variance ``(..., m)`` (shared by the outputs);
        leading batch dims broadcast between training and test inputs.

    Example::

        >>> gp = GPRegression(RBF(lengthscale=0.5), noise_var=0.01).double()
        >>> x = torch.linspace(0, 1, 20, dtype=torch.float64)
        >>> gp = gp.fit(x, torch.sin(6 * x))
        >>> mean, var = gp.predict(torch.rand(5, 1, dtype=torch.float64))

    References:
        Rasmussen & Williams (2006), chapter 2 and section 5.4.
    """

    train_x: Tensor | None
    train_y: Tensor | None

    def __init__(
        self, kernel: Kernel, noise_var: float | Tensor = 1.0, *, warn_jitter: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a bayestorch.gp Kernel, got {type(kernel).__name__}")
        self.kernel = kernel
        self.raw_noise_var = nn.Parameter(
            inverse_softplus(_as_positive_tensor("noise_var", noise_var))
        )
        self.warn_jitter = warn_jitter
        self.register_buffer("train_x", None)
        self.register_buffer("train_y", None)

    @property
    def noise_var(self) -> Tensor:
        return F.softplus(self.raw_noise_var)

    def fit(self, x: Tensor, y: Tensor) -> GPRegression:
        """Condition on training data ``(x, y)``; returns ``self``."""
        x = _as_inputs("x", x)
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if y.shape != x.shape[:-1] and not (y.dim() == x.dim() and y.shape[:-1] == x.shape[:-1]):
            raise ValueError(
                f"y must have shape x.shape[:-1] = {tuple(x.shape[:-1])} (one target per "
                f"input) or {tuple(x.shape[:-1])} + (t,) (t outputs), got {tuple(y.shape)}"
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"y of shape {tuple(y.shape)} holds NaN or inf")
        if y.dtype != x.dtype:
            raise TypeError(f"x and y must share a dtype, got {x.dtype} and {y.dtype}")
        self.train_x, self.train_y = x, y
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The training-data buffers start as None; give them the saved shapes so that a
        # fresh model loads a fitted one's state_dict.
        for name in ("train_x", "train_y"):
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name) is None:
                setattr(self, name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _data(self) -> tuple[Tensor, Tensor]:
        if self.train_x is None or self.train_y is None:
            raise RuntimeError("GPRegression has no training data: call fit(x, y) first")
        return self.train_x, self.train_y

    def log_marginal_likelihood(self) -> Tensor:
        """``log N(y | 0, K + noise_var I)`` of the training data.

        Shape:
            returns the batch shape of the training data (a scalar for one data set); with
            ``t`` outputs, the sum of their (independent) log marginal likelihoods.
        """
        x, y = self._data()
        gram = self.kernel(x)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        matrix = gram + self.noise_var.to(gram) * eye
        targets = y if y.dim() == x.dim() else y.unsqueeze(-1)  # (..., n, t)
        chol = safe_cholesky(matrix.detach(), name=_MATRIX_NAME, warn=self.warn_jitter)
        return gaussian_log_evidence(matrix, targets, chol)

    def predict(
        self,
        x_star: Tensor,
        *,
        include_noise: bool = False,
        full_cov: bool = False,
        chunk_size: int | None = None,
    ) -> GPPrediction:
        """Predictive mean and variance at ``x_star``.

        Args:
            x_star: test inputs.
            include_noise: the noisy predictive of new observations ``y*`` (adds
                ``noise_var``) instead of the noiseless one of ``f(x*)``.
            full_cov: return the ``(..., m, m)`` covariance instead of the variances.
            chunk_size: test points predicted at once (bounds memory; see
                :func:`gp_posterior`).

        Shape:
            ``x_star``: ``(..., m, d)``; returns ``(..., m)`` and ``(..., m)`` or
            ``(..., m, m)``.
        """
        x, y = self._data()
        x_star = _as_inputs("x_star", x_star)
        if x_star.shape[-1] != x.shape[-1]:
            raise ValueError(
                f"x_star must have the training inputs' dimension {x.shape[-1]} in its last "
                f"dim, got shape {tuple(x_star.shape)}"
            )
        noise = self.noise_var
        mean, var = gp_posterior(
            self.kernel,
            x,
            y,
            x_star,
            noise,
            full_cov=full_cov,
            warn_jitter=self.warn_jitter,
            chunk_size=chunk_size,
        )
        if include_noise:
            noise = noise.to(var)
            if full_cov:
                var = var + noise * torch.eye(var.shape[-1], dtype=var.dtype, device=var.device)
            else:
                var = var + noise
        return GPPrediction(mean, var)

    def forward(self, x_star: Tensor) -> GPPrediction:
        return self.predict(x_star)


def fit_hyperparameters(
    model: GPRegression,
    *,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    num_steps: int = 100,
    lr: float | None = None,
) -> Tensor:
    """Maximise ``model.log_marginal_likelihood()`` (summed over a batch) over the kernel's
    and the noise's hyperparameters.

    Args:
        model: a fitted :class:`GPRegression`.
        optimizer: ``"lbfgs"`` (``torch.optim.LBFGS`` with a strong-Wolfe line search; one
            step of up to ``num_steps`` iterations) or ``"adam"`` (``num_steps`` steps).
        num_steps: iterations.
        lr: learning rate (default 1 for L-BFGS, 0.05 for Adam).

    Returns:
        The negative log marginal likelihood at each evaluation (a 1-D CPU tensor).

    Shape:
        returns ``(num_evaluations,)``.

    References:
        Rasmussen & Williams (2006), section 5.4.1; Nocedal & Wright (2006), algorithm 7.5.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    model._data()
    params = [p for p in model.parameters() if p.requires_grad]
    history: list[Tensor] = []

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = -model.log_marginal_likelihood().sum()
        loss.backward()
        history.append(loss.detach())
        return loss

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0 if lr is None else lr,
            max_iter=num_steps,
            max_eval=int(num_steps * 1.25) + 1,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )
        opt.step(closure)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=0.05 if lr is None else lr)
        for _ in range(num_steps):
            opt.step(closure)
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    return torch.stack(history).cpu()
