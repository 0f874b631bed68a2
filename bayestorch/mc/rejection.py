"""Rejection sampling, vectorised: propose in batches, keep the accepted draws in order.

Talk section "Monte Carlo": with an envelope ``p~(x) <= M q(x)``, a draw ``x ~ q`` kept
with probability ``p~(x) / (M q(x))`` is an exact draw of ``p = p~ / Z``; the acceptance
rate is ``Z / M``. Batches are sized from the acceptance rate seen so far, so a sampler
that accepts 1 % of proposals needs a handful of batches, not a Python loop per draw.

References:
    von Neumann (1951). Various techniques used in connection with random digits.
    National Bureau of Standards Applied Mathematics Series 12.
    Robert, Casella (2004). Monte Carlo Statistical Methods, section 2.3.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mc.importance import Proposal, as_proposal, check_log_density
from bayestorch.utils.random import rand_open01

__all__ = ["EnvelopeViolationWarning", "RejectionResult", "rejection_sample"]


class EnvelopeViolationWarning(RuntimeWarning):
    """``log p(x) > log M + log q(x)`` was seen: the draws are not exact."""


class RejectionResult(NamedTuple):
    """Accepted draws and the acceptance rate over every proposal made.

    Attributes:
        samples: ``(num_samples, *event)`` exact draws of the normalised target.
        acceptance_rate: accepted / proposed, a scalar tensor (estimates ``Z / M``).
        num_proposals: how many proposals were drawn (an int).
    """

    samples: Tensor
    acceptance_rate: Tensor
    num_proposals: int


def rejection_sample(
    log_p: Callable[[Tensor], Tensor],
    proposal: Proposal,
    log_M: float | Tensor,  # noqa: N803 -- the envelope constant M of the literature
    num_samples: int,
    generator: torch.Generator | None = None,
    *,
    batch_size: int | None = None,
    max_proposals: int = 100_000_000,
) -> RejectionResult:
    """Draw exact samples of ``p ∝ exp(log_p)`` by rejection from ``M q``.

    Args:
        log_p: unnormalised target log density mapping ``(num, *event)`` to ``(num,)``;
            ``-inf`` outside the support.
        proposal: a torch ``Distribution`` or a ``(sample_fn, log_prob_fn)`` pair
            (see :func:`bayestorch.mc.importance.as_proposal`).
        log_M: log of the envelope constant, ``log_p(x) <= log_M + log q(x)`` for all x.
        num_samples: number of draws to return.
        generator: the source of randomness.
        batch_size: proposals per batch; by default sized from the acceptance rate seen
            so far (first batch: ``num_samples``, at least 256).
        max_proposals: give up (``RuntimeError``) after this many proposals.

    Returns:
        :class:`RejectionResult` ``(samples, acceptance_rate, num_proposals)``; it unpacks
        as ``samples, acceptance_rate, _``.

    Warns:
        EnvelopeViolationWarning: when ``log_p(x) > log_M + log q(x)`` at some proposal:
            ``log_M`` is too small and the draws follow ``min(p, M q)``, not ``p``.

    Raises:
        ValueError: on a non-finite ``log_M``, wrong shapes, or NaN / ``+inf`` densities.
        RuntimeError: when ``max_proposals`` is reached.

    Shape:
        ``samples``: ``(num_samples, *event)``.

    References:
        von Neumann (1951); Robert, Casella (2004), section 2.3.

    Example::

        >>> from torch.distributions import Normal
        >>> g = torch.Generator().manual_seed(0)
        >>> log_p = lambda x: -0.5 * x**2  # Z = sqrt(2 pi)
        >>> q = Normal(0.0, 2.0)
        >>> log_M = math.log(2.0 * math.sqrt(2 * math.pi))  # sup p~/q, at x = 0
        >>> samples, rate, _ = rejection_sample(log_p, q, log_M, 1000, g)
        >>> samples.shape
        torch.Size([1000])
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if isinstance(max_proposals, bool) or not isinstance(max_proposals, int) or max_proposals < 1:
        raise ValueError(f"max_proposals must be a positive integer, got {max_proposals!r}")
    log_M = torch.as_tensor(log_M)  # noqa: N806
    if log_M.numel() != 1 or not bool(torch.isfinite(log_M).all()):
        raise ValueError(f"log_M must be a finite scalar, got {log_M.tolist()}")
    sample_fn, proposal_log_prob = as_proposal(proposal)

    accepted: list[Tensor] = []
    num_accepted = 0
    num_proposals = 0
    warned = False
    while num_accepted < num_samples:
        if num_proposals >= max_proposals:
            raise RuntimeError(
                f"rejection_sample: {num_accepted} of {num_samples} draws accepted after "
                f"{num_proposals} proposals (max_proposals={max_proposals}); the envelope "
                "log_M is far too loose or the proposal misses the target"
            )
        remaining = num_samples - num_accepted
        if batch_size is not None:
            size = batch_size
        elif num_accepted == 0:
            # Nothing accepted yet: grow geometrically from a first guess.
            size = max(remaining, 256) * (4 ** min(num_proposals // max(num_samples, 256), 6))
        else:
            rate = num_accepted / num_proposals
            size = max(math.ceil(1.2 * remaining / rate) + 16, 64)
        size = min(size, max_proposals - num_proposals)
        x = sample_fn(size, generator)
        log_q = proposal_log_prob(x)
        check_log_density("proposal log_prob_fn", log_q, size)
        target = log_p(x)
        check_log_density("log_p", target, size)
        log_ratio = target - log_q - log_M.to(target)
        if not warned and bool((log_ratio > 0).any()):
            excess = float(log_ratio.max())
            warnings.warn(
                f"rejection_sample: log_p(x) > log_M + log q(x) at some proposals (by up to "
                f"{excess:.3g} nats): the envelope is violated and the draws are not exact; "
                f"increase log_M to at least {float(log_M) + excess:.6g}",
                EnvelopeViolationWarning,
                stacklevel=2,
            )
            warned = True
        u = rand_open01((size,), generator=generator, device=x.device, dtype=target.dtype)
        keep = u.log() < log_ratio
        accepted.append(x[keep])
        num_accepted += int(keep.sum())
        num_proposals += size
    samples = torch.cat(accepted)[:num_samples]
    rate = torch.tensor(num_accepted / num_proposals, dtype=samples.dtype, device=samples.device)
    return RejectionResult(samples, rate, num_proposals)
