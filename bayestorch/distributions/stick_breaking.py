"""Truncated stick-breaking: Kumaraswamy sticks and the weights they break off.

Talk section "Dirichlet-process priors". A Dirichlet process DP(alpha, G0) has weights
``w_k = v_k prod_{j<k} (1 - v_j)`` with i.i.d. sticks ``v_k ~ Beta(1, alpha)`` (GEM(alpha)).
Truncating after ``T`` sticks leaves the remainder ``prod_{k<=T} (1 - v_k)``.

The sticks here are Kumaraswamy(a, b): its inverse CDF ``(1 - u^(1/b))^(1/a)`` is an explicit
reparameterisation that takes a ``generator`` (torch's Beta.rsample takes none and has
implicit gradients), and Kumaraswamy(1, b) *is* Beta(1, b) (both CDFs are ``1 - (1 - x)^b``),
so at ``a = 1, b = alpha`` the sticks are exactly GEM(alpha)'s.

All stick arithmetic is in log space: ``log v`` and ``log(1 - v)`` come straight from the
uniform, so no stick rounds to 0 or 1.

References:
    Sethuraman (1994). A constructive definition of Dirichlet priors. Statistica Sinica 4.
    Ishwaran & James (2001). Gibbs sampling methods for stick-breaking priors. JASA 96.
    Kumaraswamy (1980). A generalized probability density function for double-bounded random
    processes. Journal of Hydrology 46.
    Nalisnick & Smyth (2017). Stick-Breaking Variational Autoencoders. ICLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = [
    "gem_expected_weights",
    "kumaraswamy_log_sticks",
    "kumaraswamy_mean",
    "stick_breaking_log_weights",
]


def kumaraswamy_log_sticks(
    a: Tensor, b: Tensor, sample_shape: Sequence[int] = (), *, generator=None
) -> tuple[Tensor, Tensor]:
    """Reparameterised Kumaraswamy(a, b) sticks, as ``(log v, log(1 - v))``.

    ``v = (1 - u^(1/b))^(1/a)`` with ``u`` uniform on (0, 1): ``log v = log(1 - u^(1/b)) / a``
    and ``log(1 - v) = log(1 - exp(log v))``, both differentiable in ``a`` and ``b``. ``v`` is
    capped at ``1 - eps`` of the dtype.

    Shape:
        ``a``, ``b``: broadcastable ``batch``; returns two ``sample_shape + batch`` tensors.

    References:
        Kumaraswamy (1980); Nalisnick & Smyth (2017).
    """
    a, b = torch.broadcast_tensors(a, b)
    check_generator_device(generator, a.device)
    u = rand_open01(
        tuple(sample_shape) + tuple(a.shape), generator=generator, device=a.device, dtype=a.dtype
    )
    # v rounds to 1 when u^(1/b) underflows; keep v <= 1 - eps so log(1 - v) stays finite
    # (and its gradient defined): the clamped stick is below the dtype's resolution anyway.
    log_v = (_log1mexp(u.log() / b) / a).clamp(max=-torch.finfo(u.dtype).eps)
    return log_v, _log1mexp(log_v)


def _log1mexp(x: Tensor) -> Tensor:
    # log(1 - e^x), x < 0, in its one-branch form: exact near 0 (where sticks break off most
    # of what is left); for x << 0 it rounds 1 - e^x to 1, an absolute error below the dtype's
    # eps that no weight notices, at half the kernels of the two-branch
    # bayestorch.gumbel.log1mexp (this runs per draw and stick in every GAN step).
    return torch.log(-torch.expm1(x))


def kumaraswamy_mean(a: Tensor, b: Tensor) -> Tensor:
    """``E[v] = b B(1 + 1/a, b)`` for ``v ~ Kumaraswamy(a, b)`` (log-gamma form).

    Shape:
        broadcast of ``a`` and ``b``.
    """
    log_beta = torch.lgamma(1 + 1 / a) + torch.lgamma(b) - torch.lgamma(1 + 1 / a + b)
    return b * log_beta.exp()


def stick_breaking_log_weights(log_v: Tensor, log_1mv: Tensor) -> tuple[Tensor, Tensor]:
    """Log weights ``log w_k = log v_k + sum_{j<k} log(1 - v_j)`` and the log remainder.

    Shape:
        ``log_v``, ``log_1mv``: ``(..., T)`` -> ``(..., T)`` weights and ``(...)`` remainder
        ``log prod_{k<=T} (1 - v_k)``.

    References:
        Sethuraman (1994).
    """
    cumulative = log_1mv.cumsum(-1)
    before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], -1)
    return log_v + before, cumulative[..., -1]


def gem_expected_weights(alpha: float, truncation: int, **tensor_kwargs) -> Tensor:
    """``E[w_k] = alpha^(k-1) / (1 + alpha)^k``, ``k = 1..truncation``, under GEM(alpha).

    Shape:
        ``(truncation,)``.
    """
    if not 0 < alpha < float("inf"):
        raise ValueError(f"alpha must be finite and > 0, got {alpha}")
    if isinstance(truncation, bool) or not isinstance(truncation, int) or truncation < 1:
        raise ValueError(f"truncation must be a positive int, got {truncation!r}")
    k = torch.arange(1, truncation + 1, **tensor_kwargs)
    return alpha ** (k - 1) / (1 + alpha) ** k
