"""Stochastic beam search: exact samples without replacement from a sequence model.

Kool, van Hoof & Welling (2019) apply Gumbel-top-k to the (exponentially large) space of
sequences without enumerating it: every prefix gets a perturbed log-probability, the maximum of
the perturbed log-probabilities of the sequences below it, sampled top-down with the truncated
Gumbel (a child's perturbed value is drawn conditioned on the maximum over the siblings being
the parent's). Keeping the ``k`` largest at every step is then exact: the ``k`` returned
sequences are distributed as ``k`` draws without replacement, in order, from the model.

Exactness needs the plain algorithm: no length normalisation of the scores, no stopping when
``k`` sequences have finished (a finished sequence is a leaf that keeps its perturbed value and
competes with the unfinished prefixes until ``max_len``).

The ``k + 1``-th perturbed value is the threshold ``kappa`` of the paper's importance-weighted
estimator (:func:`stochastic_beam_log_weights`): run the search with ``beam_size = k + 1``.

References:
    Kool, van Hoof & Welling (2019). Stochastic Beams and Where to Find Them: The Gumbel-Top-k
    Trick for Sampling Sequences Without Replacement. ICML.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.gumbel.functional import gumbel_noise, log1mexp, shift_gumbels_to_max
from bayestorch.utils.chunking import check_chunk_size, chunk_slices, resolve_chunk_size
from bayestorch.utils.random import check_generator_device

__all__ = ["StochasticBeamResult", "stochastic_beam_log_weights", "stochastic_beam_search"]

StepLogProbsFn = Callable[[Tensor], Tensor]


class StochasticBeamResult(NamedTuple):
    """The ``k`` sampled sequences, in decreasing order of their perturbed log-probabilities.

    Fields:
        sequences: int64 tokens, ``bos`` first; after ``eos`` the rest is ``pad``.
            Shape ``(*batch, k, max_len + 1)``.
        log_probs: ``log p(sequence)`` under the model, ``(*batch, k)``.
        perturbed_log_probs: the Gumbel-perturbed log-probabilities, decreasing, ``(*batch, k)``.
            ``-inf`` marks an empty slot when the sequence space has fewer than ``k`` members.
    """

    sequences: Tensor
    log_probs: Tensor
    perturbed_log_probs: Tensor


def stochastic_beam_search(
    step_log_probs_fn: StepLogProbsFn,
    bos: int | Tensor,
    beam_size: int,
    max_len: int,
    eos: int | None = None,
    *,
    pad: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
) -> StochasticBeamResult:
    """Draw ``beam_size`` distinct sequences without replacement (stochastic beam search).

    Args:
        step_log_probs_fn: maps prefixes ``(n, t)`` (int64, ``bos`` first) to the next-token
            log-probabilities ``(n, vocab_size)`` (normalised over the vocabulary). It is
            called once per step on the whole beam of every search of a chunk at once; the
            rows of finished or empty beam slots are ignored.
        bos: the start token; an int for one search, or an int64 tensor ``(batch,)`` for a
            batch of independent searches.
        beam_size: ``k``, the number of sequences drawn (``>= 1``).
        max_len: the number of tokens generated after ``bos``; a sequence that has not
            emitted ``eos`` by then ends there. The search always runs ``max_len`` steps.
        eos: the end token, or ``None`` when every sequence has exactly ``max_len`` tokens.
        pad: the token written after ``eos`` (``eos`` by default).
        generator: the source of randomness.
        device: where the search runs (default: the generator's, else ``bos``'s, else CPU).
        chunk_size: searches run together. A step holds ``chunk * k * vocab_size`` scores,
            so this bounds peak memory; the searches are independent and run chunk after
            chunk with the same generator (the same law for any ``chunk_size``; identical
            draws when one chunk holds them all). Default: the first search alone, which
            shows ``vocab_size``, then chunks of as many searches as keep those scores under
            :data:`~bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`.

    Returns:
        :class:`StochasticBeamResult` ``(sequences, log_probs, perturbed_log_probs)``.

    Shape:
        ``bos``: ``()`` or ``(batch,)``; ``sequences``: ``(*batch, k, max_len + 1)``;
        ``log_probs``, ``perturbed_log_probs``: ``(*batch, k)``.

    References:
        Kool, van Hoof & Welling (2019), algorithm 1 and appendix B.

    Example::

        >>> def uniform_bits(prefix):                      # every string of 3 bits
        ...     return torch.full((prefix.shape[0], 2), -0.6931471805599453)
        >>> out = stochastic_beam_search(uniform_bits, bos=0, beam_size=4, max_len=3)
        >>> out.sequences.shape
        torch.Size([4, 4])
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    batched = isinstance(bos, Tensor)
    if device is None:
        device = generator.device if generator is not None else (bos.device if batched else "cpu")
    device = torch.device(device)
    check_generator_device(generator, device)
    bos_t = torch.as_tensor(bos, dtype=torch.long, device=device)
    if bos_t.dim() > 1 or (batched and bos_t.dim() != 1):
        raise ValueError(f"bos must be an int or a 1-D tensor (batch,), got {tuple(bos_t.shape)}")
    bos_t = bos_t.reshape(-1)
    pad = eos if pad is None else pad
    check_chunk_size(chunk_size)
    num = bos_t.numel()
    search = functools.partial(
        _search_chunk, step_log_probs_fn, beam_size, max_len, eos, pad, generator, device
    )
    # The roots' perturbed values come first, for every search: the generator's first num
    # draws, whatever the chunking.
    roots = gumbel_noise((num,), generator=generator, device=device)
    if chunk_size is None and num > 1:
        first, vocab = search(bos_t[:1], roots[:1])
        # per search: ~8 score tensors of k x vocab and the prefixes, 8 bytes each
        per_search = 8 * 8 * beam_size * (vocab + max_len + 1)
        chunk = resolve_chunk_size(None, per_search, num - 1)
        parts = [first] + [
            search(bos_t[1:][rows], roots[1:][rows])[0] for rows in chunk_slices(num - 1, chunk)
        ]
    else:
        chunk = resolve_chunk_size(chunk_size, 1, num) if chunk_size is not None else num
        parts = [search(bos_t[rows], roots[rows])[0] for rows in chunk_slices(num, chunk)]
    if len(parts) == 1:
        sequences, log_probs, perturbed = parts[0]
    else:
        dtype = functools.reduce(torch.promote_types, (part[1].dtype for part in parts))
        sequences = torch.cat([part[0] for part in parts])
        log_probs = torch.cat([part[1].to(dtype) for part in parts])
        perturbed = torch.cat([part[2].to(dtype) for part in parts])
    result = StochasticBeamResult(sequences, log_probs, perturbed)
    if not batched:
        result = StochasticBeamResult(*(x.squeeze(0) for x in result))
    return result


def _search_chunk(
    step_log_probs_fn: StepLogProbsFn,
    beam_size: int,
    max_len: int,
    eos: int | None,
    pad: int | None,
    generator: torch.Generator | None,
    device: torch.device,
    bos_t: Tensor,
    roots: Tensor,
) -> tuple[tuple[Tensor, Tensor, Tensor], int]:
    """The searches from ``bos_t`` ``(num,)`` whose roots have perturbed values ``roots``
    ``(num,)``, all at once: ``(sequences, log_probs, perturbed)`` and the vocabulary size."""
    num, k = bos_t.numel(), beam_size
    vocab = 0

    sequences = bos_t.view(num, 1, 1).expand(num, k, 1)
    # Slot 0 holds the root; the other slots are empty (perturbed value -inf) until filled.
    # The root's perturbed value is a Gumbel(log p(root) = 0) draw: the order of the sample
    # does not depend on it, but the perturbed values, hence the threshold kappa of the
    # importance-weighted estimator, must be unconditional Gumbels (fixing it at 0 biases the
    # estimator).
    empty = torch.full((num, k), float("-inf"), device=device)
    perturbed, log_probs = empty.clone(), empty.clone()
    perturbed[:, 0] = roots
    log_probs[:, 0] = 0.0
    finished = torch.zeros((num, k), dtype=torch.bool, device=device)
    for t in range(max_len):
        step_lp = step_log_probs_fn(sequences.reshape(num * k, t + 1))
        if step_lp.dim() != 2 or step_lp.shape[0] != num * k:
            raise ValueError(
                f"step_log_probs_fn must map prefixes of shape {(num * k, t + 1)} to log-probs "
                f"(n, vocab_size) = ({num * k}, vocab_size), got {tuple(step_lp.shape)}"
            )
        vocab = step_lp.shape[1]
        # Follow the model's precision (float64 models get float64 scores).
        dtype = torch.promote_types(perturbed.dtype, step_lp.dtype)
        perturbed, log_probs = perturbed.to(dtype), log_probs.to(dtype)
        step_lp = step_lp.view(num, k, vocab).to(dtype)
        active = (~finished & torch.isfinite(perturbed)).unsqueeze(-1)
        child_lp = torch.where(active, log_probs.unsqueeze(-1) + step_lp, float("-inf"))
        noise = gumbel_noise(child_lp.shape, generator=generator, device=device, dtype=dtype)
        child_g = shift_gumbels_to_max(child_lp + noise, perturbed.unsqueeze(-1))
        if eos is not None:
            # A finished sequence is a leaf: its one "child" is itself (padded), with the
            # same log-probability and perturbed value.
            is_pad = torch.arange(vocab, device=device) == pad
            done = finished.unsqueeze(-1)
            child_g = torch.where(
                done, torch.where(is_pad, perturbed.unsqueeze(-1), float("-inf")), child_g
            )
            child_lp = torch.where(done, log_probs.unsqueeze(-1).expand_as(child_lp), child_lp)
        perturbed, index = child_g.reshape(num, k * vocab).topk(k, dim=-1)
        parent, token = index // vocab, index % vocab
        log_probs = child_lp.reshape(num, k * vocab).gather(1, index)
        sequences = torch.cat(
            [sequences.gather(1, parent.unsqueeze(-1).expand(num, k, t + 1)), token.unsqueeze(-1)],
            dim=-1,
        )
        finished = finished.gather(1, parent)
        if eos is not None:
            finished = finished | (token == eos)
    return (sequences, log_probs, perturbed), vocab


def stochastic_beam_log_weights(log_probs: Tensor, perturbed_log_probs: Tensor) -> Tensor:
    """Log importance weights of the paper's estimator, from a search with ``beam_size = k + 1``.

    With ``kappa`` the ``(k + 1)``-th largest perturbed log-probability, the first ``k``
    sequences get weights ``p(y) / q(y)``, ``q(y) = P(G_y > kappa) = 1 - exp(-exp(log p(y) -
    kappa))``; then ``sum_i w_i f(y_i)`` is an unbiased estimate of ``E_p[f(y)]`` and
    ``sum_i w_i f(y_i) / sum_i w_i`` the (lower-variance, consistent) normalised one. When the
    space has at most ``k`` sequences, ``kappa = -inf``, ``q = 1`` and the estimate is exact.

    Args:
        log_probs: the ``log_probs`` of a :class:`StochasticBeamResult` (``k + 1`` slots).
        perturbed_log_probs: its ``perturbed_log_probs``.

    Returns:
        ``log w`` for the first ``k`` slots (``-inf`` for empty slots).

    Shape:
        ``(*batch, k + 1)`` -> ``(*batch, k)``.

    References:
        Kool, van Hoof & Welling (2019), section 4 (equation 12 and the normalised variant);
        Duffield, Lund & Thorup (2007) for priority sampling.
    """
    if log_probs.shape != perturbed_log_probs.shape or log_probs.shape[-1] < 2:
        raise ValueError(
            "log_probs and perturbed_log_probs must have the same shape (*batch, k + 1) with "
            f"k >= 1, got {tuple(log_probs.shape)} and {tuple(perturbed_log_probs.shape)}"
        )
    kappa = perturbed_log_probs[..., -1:]
    lp = log_probs[..., :-1]
    log_q = log1mexp(-torch.exp(lp - kappa))
    valid = torch.isfinite(perturbed_log_probs[..., :-1])
    return torch.where(valid, lp - log_q, float("-inf"))
