"""Gumbel noise and the tricks built on it: Gumbel-max, Gumbel-softmax, Gumbel-top-k and the
truncated Gumbel.

Talk section "the Gumbel family". With ``g_i`` i.i.d. standard Gumbel, ``argmax_i(logits_i + g_i)``
is a draw of ``Categorical(softmax(logits))`` (Gumbel-max); the ``k`` largest perturbed logits,
in order, are an ordered draw of ``k`` categories without replacement (Gumbel-top-k);
``softmax((logits + g) / tau)`` is a differentiable relaxation of the one-hot draw
(Gumbel-softmax / Concrete).

Numerics: a standard Gumbel is ``-log(-log u)``; ``u`` comes from
:func:`bayestorch.utils.random.rand_open01`, clamped away from 0 and 1, so the noise is always
finite (in float32 it lies in about ``[-2.8, 16.6]``, the rest of the tails having probability
below ``1e-7``).

Speed: the noise is the whole cost of a Gumbel-softmax (torch's ``F.gumbel_softmax`` spends most
of its time in ``exponential_``). :func:`gumbel_softmax` takes ``log u = -E``,
``E ~ Exponential(1)``, in place and runs a custom autograd function: at ``tau = 1`` the sample
is ``(exp(logits - max) / E) / sum``, one logarithm per element in all; at other temperatures
the softmax of ``(logits - log E) / tau``. Its backward reuses the softmax output (no noise
tensor is kept), and the straight-through forward is an exact one-hot.

References:
    Gumbel (1954). Statistical theory of extreme values and some practical applications.
    Maddison, Tarlow & Minka (2014). A* Sampling. NeurIPS.
    Jang, Gu & Poole (2017). Categorical Reparameterization with Gumbel-Softmax. ICLR.
    Maddison, Mnih & Teh (2017). The Concrete Distribution. ICLR.
    Kool, van Hoof & Welling (2019). Stochastic Beams and Where to Find Them. ICML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bayestorch.utils.random import check_generator_device, rand_open01

__all__ = [
    "gumbel_max",
    "gumbel_noise",
    "gumbel_softmax",
    "gumbel_top_k",
    "log1mexp",
    "shift_gumbels_to_max",
    "truncated_gumbel",
]


def _noise_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision uniforms are too coarse for the Gumbel tails: draw in float32 at least.
    return torch.promote_types(dtype, torch.float32)


def _check_logits(logits: Tensor, dim: int, name: str = "logits") -> int:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {logits.dtype}")
    if logits.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (the categories), got a scalar")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -logits.dim() <= dim < logits.dim():
        raise ValueError(f"dim={dim} is out of range for {name} of shape {tuple(logits.shape)}")
    if logits.shape[dim] == 0:
        raise ValueError(
            f"{name} must have at least one category along dim {dim}, got shape "
            f"{tuple(logits.shape)}"
        )
    return dim % logits.dim()


def _check_no_nan(logits: Tensor) -> None:
    # An index drawn from NaN logits would look like any other: refuse them (one sync).
    if bool(torch.isnan(logits).any()):
        raise ValueError("logits hold NaN; a category that cannot be drawn has logit -inf")


def _check_tau(tau: float) -> float:
    if isinstance(tau, Tensor) or isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(
            f"tau must be a real number (a Python float), got {type(tau).__name__}; "
            "for a schedule use bayestorch.gumbel.GumbelSoftmax"
        )
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(
            f"tau must be a finite temperature > 0, got {tau}: tau = 0 is the hard Gumbel-max "
            "(use gumbel_max, or hard=True for a one-hot with relaxed gradients)"
        )
    return float(tau)


def gumbel_noise(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Standard Gumbel draws ``-log(-log u)``, ``u`` uniform on the open interval (0, 1).

    Always finite: ``u`` is clamped away from 0 and 1 (see
    :func:`bayestorch.utils.random.rand_open01`).

    Args:
        shape: the output shape.
        generator: the source of randomness (its device is the default device).
        device: the output device.
        dtype: the output dtype (torch's default float dtype when omitted).

    Shape:
        ``shape``.

    References:
        Gumbel (1954).
    """
    u = rand_open01(shape, generator=generator, device=device, dtype=dtype)
    return u.log_().neg_().log_().neg_()


def _perturbed(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """``logits + g`` in a dtype fine enough for the noise (a fresh tensor)."""
    check_generator_device(generator, logits.device)
    noise = gumbel_noise(
        logits.shape, generator=generator, device=logits.device, dtype=_noise_dtype(logits.dtype)
    )
    return noise.add_(logits)


def gumbel_max(
    logits: Tensor, *, dim: int = -1, generator: torch.Generator | None = None
) -> Tensor:
    """Draw category indices from ``Categorical(logits=logits)`` by the Gumbel-max trick.

    The logits are shifted by their maximum first (the draw is invariant to it), so logits of
    ``±1e4`` lose no precision to the noise. ``-inf`` logits are never drawn.

    Args:
        logits: unnormalised log-probabilities.
        dim: the category dimension.
        generator: the source of randomness.

    Returns:
        int64 indices.

    Shape:
        ``logits``: ``(..., num_categories)`` (categories along ``dim``) -> ``(...)``.

    References:
        Gumbel (1954); Maddison, Tarlow & Minka (2014).
    """
    dim = _check_logits(logits, dim)
    _check_no_nan(logits)
    shifted = logits.detach() - logits.detach().amax(dim, keepdim=True)
    return _perturbed(shifted, generator).argmax(dim)


def gumbel_top_k(
    logits: Tensor, k: int, *, dim: int = -1, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``k`` distinct categories without replacement (Gumbel-top-k).

    The indices of the ``k`` largest perturbed logits, largest first, are distributed as
    ``k`` successive draws without replacement from ``softmax(logits)`` (renormalising after
    each draw): an ordered draw of the Plackett–Luce model.

    Args:
        logits: unnormalised log-probabilities.
        k: how many categories, ``1 <= k <= num_categories``.
        dim: the category dimension.
        generator: the source of randomness.

    Returns:
        int64 indices, in the order drawn.

    Shape:
        ``logits``: ``(..., num_categories)`` -> ``(..., k)`` (``k`` in place of ``dim``).

    References:
        Vieira (2014). Gumbel-max trick and weighted reservoir sampling (blog post);
        Kool, van Hoof & Welling (2019), section 2.
    """
    dim = _check_logits(logits, dim)
    num_categories = logits.shape[dim]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_categories:
        raise ValueError(
            f"k must be an integer in [1, {num_categories}] (the size of logits' dim {dim}), "
            f"got {k!r}"
        )
    _check_no_nan(logits)
    shifted = logits.detach() - logits.detach().amax(dim, keepdim=True)
    return _perturbed(shifted, generator).topk(k, dim=dim, sorted=True).indices


class _GumbelSoftmaxFunction(torch.autograd.Function):
    """``softmax((logits + g) / tau)`` from ``log u``, where ``g = -log(-log u)``.

    ``log_uniforms`` is a fresh buffer the forward may overwrite. The backward reuses the saved
    softmax output (no noise tensor is kept) through torch's fused softmax backward. With
    ``hard`` the forward returns the exact one-hot of the argmax and the backward is the relaxed
    one's (straight-through).
    """

    @staticmethod
    def forward(ctx, logits, log_uniforms, tau, dim, hard):
        logits = logits.detach().to(log_uniforms.dtype)
        if tau == 1.0:
            # softmax(logits - log E) with E = -log u is (exp(logits - max) / E) / sum: the
            # second log of -log(-log u) folds into the softmax's exp. Dividing by log u = -E
            # flips every sign, which the normalisation cancels. |log u| >= 6e-8 in float32,
            # so the ratio is finite; terms whose exp underflows are below the sum's precision.
            weights = torch.sub(logits, logits.amax(dim, keepdim=True)).exp_().div_(log_uniforms)
            soft = weights.div_(weights.sum(dim, keepdim=True))
            scores = soft
        else:
            # (logits + g) / tau, g = -log(-log u)
            scores = log_uniforms.neg_().log_().neg_().add_(logits).div_(tau)
            soft = torch.softmax(scores, dim)
        ctx.save_for_backward(soft)
        ctx.tau, ctx.dim = tau, dim
        if not hard:
            return soft
        # The argmax of the scores (not of ``soft``, which may hold ties after underflow at
        # small tau): the one-hot of the Gumbel-max draw with the same noise.
        index = scores.argmax(dim, keepdim=True)
        return torch.zeros_like(soft).scatter_(dim, index, 1.0)

    @staticmethod
    def backward(ctx, grad_output):
        (soft,) = ctx.saved_tensors
        # d softmax(z / tau) / dz applied to grad: soft * (grad - <grad, soft>) / tau, by the
        # same fused kernel as softmax's own backward.
        grad = torch._softmax_backward_data(grad_output.contiguous(), soft, ctx.dim, soft.dtype)
        if ctx.tau != 1.0:
            grad = grad.div_(ctx.tau)
        return grad, None, None, None, None


def gumbel_softmax(
    logits: Tensor,
    tau: float = 1.0,
    hard: bool = False,
    *,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A Gumbel-softmax (Concrete) sample ``softmax((logits + g) / tau)``; straight-through if hard.

    Unlike ``torch.nn.functional.gumbel_softmax`` this takes a ``generator``, rejects
    ``tau <= 0`` with a clear error instead of returning NaN, never produces NaN or inf for
    finite logits (down to ``tau = 0.01`` with logits of ``±1e4``), and with ``hard=True``
    returns an *exact* one-hot (the one-hot of :func:`gumbel_max` with the same noise) whose
    gradient is the relaxed sample's.

    Args:
        logits: unnormalised log-probabilities.
        tau: the temperature, a finite float > 0; as ``tau -> 0`` the sample tends to the
            one-hot of the Gumbel-max draw.
        hard: return the one-hot and pass the relaxed sample's gradient (straight-through).
        dim: the category dimension.
        generator: the source of randomness.

    Returns:
        A tensor like ``logits`` (half-precision logits are perturbed and normalised in float32,
        then cast back).

    Shape:
        ``logits``: ``(..., num_categories)`` -> same shape.

    References:
        Jang, Gu & Poole (2017); Maddison, Mnih & Teh (2017); Bengio, Léonard & Courville
        (2013) for the straight-through estimator.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4, 10, requires_grad=True)
        >>> y = gumbel_softmax(logits, tau=0.5, hard=True, generator=g)
        >>> (y * torch.arange(10.0)).sum().backward()
    """
    dim = _check_logits(logits, dim)
    tau = _check_tau(tau)
    check_generator_device(generator, logits.device)
    u = rand_open01(
        logits.shape, generator=generator, device=logits.device, dtype=_noise_dtype(logits.dtype)
    )
    # log u = -E, E ~ Exponential(1), and the Gumbel is g = -log E.
    out = _GumbelSoftmaxFunction.apply(logits, u.log_(), tau, dim, bool(hard))
    return out.to(logits.dtype)


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (``-inf`` at ``x = 0``).

    Shape:
        elementwise.

    References:
        Mächler (2012). Accurately computing log(1 - exp(-|a|)). The Rmpfr package vignette.
    """
    return torch.where(
        x > -math.log(2.0),
        torch.log(-torch.expm1(x)),
        torch.log1p(-torch.exp(x)),
    )


def truncated_gumbel(
    location: Tensor, truncation: Tensor | float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``Gumbel(location)`` conditioned on being at most ``truncation``.

    Uses ``T - softplus(T - G)`` with ``G ~ Gumbel(location)``, i.e.
    ``-log(exp(-T) + exp(-G))``, in its overflow-free form.

    Args:
        location: the Gumbel locations (``-inf`` gives ``-inf``).
        truncation: the upper bound ``T``, broadcastable against ``location``.
        generator: the source of randomness.

    Shape:
        ``location``, ``truncation``: broadcastable -> the broadcast shape.

    References:
        Maddison, Tarlow & Minka (2014), section 4; Kool, van Hoof & Welling (2019), app. B.
    """
    truncation = torch.as_tensor(truncation, dtype=location.dtype, device=location.device)
    shape = torch.broadcast_shapes(location.shape, truncation.shape)
    check_generator_device(generator, location.device)
    g = location + gumbel_noise(
        shape, generator=generator, device=location.device, dtype=location.dtype
    )
    return truncation - F.softplus(truncation - g)


def shift_gumbels_to_max(gumbels: Tensor, target_max: Tensor, *, dim: int = -1) -> Tensor:
    """Condition a set of Gumbels on their maximum being ``target_max``.

    Given independent ``G_i ~ Gumbel(phi_i)`` with maximum ``Z``, returns
    ``T - softplus(v_i)`` with ``v_i = T - G_i + log(1 - exp(G_i - Z))``: jointly distributed
    as ``Gumbel(phi_i)`` conditioned on ``max_i = T``. The arg-max element maps to exactly
    ``T``. Elements equal to ``-inf`` stay ``-inf``; a set that is all ``-inf`` stays so.

    Args:
        gumbels: the unconditioned perturbed values ``G``.
        target_max: ``T``, broadcastable to ``gumbels`` with ``dim`` of size 1.
        dim: the set dimension.

    Shape:
        ``gumbels``: ``(..., n)``; ``target_max``: ``(..., 1)`` -> ``(..., n)``.

    References:
        Kool, van Hoof & Welling (2019), appendix B (the numerically stable form).
    """
    _check_logits(gumbels, dim, name="gumbels")
    z = gumbels.amax(dim, keepdim=True)
    finite_z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
    # G - Z <= 0; NaN-free when everything is -inf (the result is then -inf via the where).
    diff = torch.where(torch.isfinite(gumbels), gumbels - finite_z, torch.full_like(gumbels, -1.0))
    v = target_max - gumbels + log1mexp(diff)
    shifted = target_max - F.softplus(v)
    return torch.where(torch.isneginf(gumbels), gumbels, shifted)
