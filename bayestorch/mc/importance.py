"""Importance sampling with self-normalised weights, kept in log space.

Talk section "Monte Carlo": draw ``x_i ~ q``, weight ``w_i = p~(x_i) / q(x_i)`` for an
unnormalised target ``p~ = Z p``. Then ``mean(w)`` estimates ``Z`` without bias, the
self-normalised weights ``w_i / sum(w)`` estimate expectations under ``p``, and Kish's
effective sample size ``(sum w)^2 / sum w^2`` says how many i.i.d. draws they are worth.
Everything is computed from log-weights (``logsumexp``), so weights of ``exp(-1000)``
neither underflow nor overflow.

References:
    Kahn, Marshall (1953). Methods of reducing sample size in Monte Carlo computations.
    Journal of the Operations Research Society of America 1(5).
    Kish (1965). Survey Sampling. Wiley (the effective sample size).
    Owen (2013). Monte Carlo theory, methods and examples, chapter 9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from bayestorch.utils.random import draw

__all__ = [
    "ImportanceResult",
    "Proposal",
    "as_proposal",
    "importance_ess",
    "importance_sample",
    "log_normalizer_estimate",
]

Proposal = Distribution | tuple[Callable[..., Tensor], Callable[[Tensor], Tensor]]
"""A torch ``Distribution``, or a pair ``(sample_fn(num, generator) -> (num, *event),
log_prob_fn(x (num, *event)) -> (num,))``."""


def as_proposal(proposal: Proposal) -> tuple[Callable[..., Tensor], Callable[[Tensor], Tensor]]:
    """Normalise a proposal to a ``(sample_fn, log_prob_fn)`` pair.

    A ``Distribution`` is drawn with an explicit generator
    (:func:`bayestorch.utils.random.draw`) and its log density is summed over its batch and
    event dims, so ``Normal(zeros(d), 1)`` proposes ``d`` independent coordinates.

    Shape:
        ``sample_fn(num, generator) -> (num, *batch, *event)``;
        ``log_prob_fn(x) -> (num,)``.
    """
    if isinstance(proposal, Distribution):
        dist = proposal

        def sample_fn(num: int, generator: torch.Generator | None = None) -> Tensor:
            return draw(dist, (num,), generator=generator).detach()

        def log_prob_fn(x: Tensor) -> Tensor:
            if x.shape[0] == 0:  # torch's Independent.log_prob cannot reshape no draws
                return x.new_zeros((0,))
            log_prob = dist.log_prob(x)
            return log_prob if log_prob.dim() == 1 else log_prob.flatten(1).sum(-1)

        return sample_fn, log_prob_fn
    if (
        isinstance(proposal, tuple)
        and len(proposal) == 2
        and callable(proposal[0])
        and callable(proposal[1])
    ):
        return proposal[0], proposal[1]
    raise TypeError(
        "proposal must be a torch.distributions.Distribution or a pair "
        "(sample_fn(num, generator), log_prob_fn(x)), got "
        f"{type(proposal).__name__}"
    )


def check_log_density(name: str, values: Tensor, num: int) -> None:
    """Shape ``(num,)`` and no NaN or ``+inf`` (``-inf`` is allowed: outside the support)."""
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(values).__name__}")
    if values.shape != (num,):
        raise ValueError(
            f"{name} must map {num} draws of shape (num, *event) to log densities of shape "
            f"({num},), got shape {tuple(values.shape)}"
        )
    bad = torch.isnan(values) | (values == math.inf)
    if bool(bad.any()):
        raise ValueError(
            f"{name} returned {int(bad.sum())} NaN or +inf value(s) of {num}; a log density "
            "must be finite, or -inf outside the support"
        )


def importance_ess(log_weights: Tensor, dim: int = -1) -> Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` from log-weights.

    Equals the number of draws when all weights are equal (exact proposal), 1 when one
    weight dominates. Unnormalised log-weights are fine (the scale cancels).

    Shape:
        ``(..., num)`` -> ``(...)`` for ``dim=-1``.

    References:
        Kish (1965). Survey Sampling.
    """
    if log_weights.dim() == 0 or log_weights.shape[dim] == 0:
        raise ValueError(
            f"log_weights needs at least one draw along dim {dim}, got shape "
            f"{tuple(log_weights.shape)}"
        )
    if bool((torch.isnan(log_weights) | (log_weights == math.inf)).any()):
        raise ValueError("log_weights must not hold NaN or +inf (-inf is a zero weight)")
    return (2 * torch.logsumexp(log_weights, dim) - torch.logsumexp(2 * log_weights, dim)).exp()


def log_normalizer_estimate(log_weights: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """Estimate ``log Z = log E_q[w]`` and its standard error by the delta method.

    ``log mean(w)`` with ``se(log Zhat) = sd(w) / (sqrt(n) mean(w))`` (delta method), where
    ``sd(w)^2 / mean(w)^2 = n / (n - 1) * (n / ESS - 1)`` is computed from log-weights only,
    so the standard error is 0 for the exact proposal.

    Shape:
        ``(..., num)`` -> two tensors ``(...)`` for ``dim=-1``.

    References:
        Owen (2013). Monte Carlo theory, methods and examples, section 9.2.
    """
    n = log_weights.shape[dim]
    if n < 2:
        raise ValueError(f"log_weights needs at least 2 draws along dim {dim}, got {n}")
    log_z = torch.logsumexp(log_weights, dim) - math.log(n)
    relative_variance = (n / importance_ess(log_weights, dim) - 1.0).clamp(min=0.0) * (n / (n - 1))
    return log_z, (relative_variance / n).sqrt()


class ImportanceResult(NamedTuple):
    """Draws, log-weights and the summaries of one importance-sampling run.

    Attributes:
        samples: the proposal's draws ``(num, *event)``.
        log_weights: ``log p~(x) - log q(x)`` (not normalised) ``(num,)``.
        ess: Kish's effective sample size ``()``.
        log_normalizer: the estimate of ``log Z`` ``()``.
        log_normalizer_std_error: its delta-method standard error ``()``.
    """

    samples: Tensor
    log_weights: Tensor
    ess: Tensor
    log_normalizer: Tensor
    log_normalizer_std_error: Tensor

    @property
    def normalized_weights(self) -> Tensor:
        """Self-normalised weights ``w_i / sum(w)`` ``(num,)``."""
        return torch.softmax(self.log_weights, dim=0)

    def expectation(self, fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Self-normalised estimate of ``E_p[fn(x)]`` (``fn`` maps ``(num, ...)`` row-wise).

        Shape:
            ``fn(samples)``: ``(num, *out)`` -> ``(*out,)``; without ``fn``, ``event``.
        """
        values = self.samples if fn is None else fn(self.samples)
        weights = self.normalized_weights.to(values.dtype)
        return torch.tensordot(weights, values, dims=([0], [0]))


def importance_sample(
    log_p: Callable[[Tensor], Tensor],
    proposal: Proposal,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> ImportanceResult:
    """Importance sampling of an unnormalised log density with a proposal.

    Args:
        log_p: unnormalised target log density, mapping draws ``(num, *event)`` to
            ``(num,)``; ``-inf`` outside the support, never NaN or ``+inf``.
        proposal: a torch ``Distribution`` or a ``(sample_fn, log_prob_fn)`` pair
            (see :func:`as_proposal`); its support must cover the target's.
        num_samples: number of proposal draws, at least 2.
        generator: the source of randomness.

    Returns:
        :class:`ImportanceResult` ``(samples, log_weights, ess, log_normalizer,
        log_normalizer_std_error)``; ``result.normalized_weights`` and
        ``result.expectation(fn)`` give self-normalised estimates.

    Raises:
        ValueError: on a wrong shape, NaN or ``+inf`` log density, a proposal density that
            is ``-inf`` at its own draw, or when every weight is zero.

    Shape:
        ``samples``: ``(num_samples, *event)``; ``log_weights``: ``(num_samples,)``;
        the summaries are scalars.

    References:
        Kahn, Marshall (1953); Kish (1965); Owen (2013), chapter 9.

    Example::

        >>> from torch.distributions import Normal
        >>> g = torch.Generator().manual_seed(0)
        >>> res = importance_sample(lambda x: -0.5 * x**2, Normal(0.0, 2.0), 10_000, g)
        >>> float(res.log_normalizer.exp())  # sqrt(2 pi) = 2.5066...
        2.5...
    """
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    sample_fn, proposal_log_prob = as_proposal(proposal)
    x = sample_fn(num_samples, generator)
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] != num_samples:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"proposal's sample_fn must return draws of shape ({num_samples}, *event), got {shape}"
        )
    log_q = proposal_log_prob(x)
    check_log_density("proposal log_prob_fn", log_q, num_samples)
    if bool((log_q == -math.inf).any()):
        raise ValueError("proposal log_prob_fn is -inf at one of its own draws")
    target = log_p(x)
    check_log_density("log_p", target, num_samples)
    log_weights = target - log_q
    if bool((log_weights == -math.inf).all()):
        raise ValueError(
            f"all {num_samples} importance weights are zero (log_p = -inf at every draw): "
            "the proposal misses the target's support"
        )
    log_z, std_error = log_normalizer_estimate(log_weights)
    return ImportanceResult(x, log_weights, importance_ess(log_weights), log_z, std_error)
