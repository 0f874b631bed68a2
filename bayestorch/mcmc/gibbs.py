"""Gibbs sampling: compose user-given conditional samplers over blocks of coordinates.

Talk section "MCMC": each block ``x_b`` is redrawn from its full conditional
``p(x_b | x_{-b})``; every such update leaves ``p`` invariant, so any fixed order
(systematic scan) or a block picked uniformly at random (random scan, which is also
reversible) does. A conditional sampler is any function that draws a block for all
chains at once; it may itself be an exact draw (conjugacy), or any ``p(x_b | x_{-b})``-
invariant update (e.g. a slice step, "Metropolis-within-Gibbs").

Random scan is batched with masks: each chain picks its own block, every block's
sampler runs on all chains and only the chains that picked it keep the draw. A random-scan
step therefore costs one systematic sweep and updates one block per chain.

References:
    Geman, Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
    restoration of images. IEEE PAMI 6(6).
    Gelfand, Smith (1990). Sampling-based approaches to calculating marginal densities.
    JASA 85(410).
    Liu, Wong, Kong (1995). Covariance structure and convergence rate of the Gibbs
    sampler with various scans. JRSS B 57(1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.base import Kernel, check_initial_log_prob, check_position
from bayestorch.utils.autograd import LogProbFn, check_log_prob_output

__all__ = ["Gibbs", "GibbsInfo", "GibbsState", "gibbs_step"]

ConditionalSampler = Callable[[Tensor, "torch.Generator | None"], Tensor]
"""``(position (chains, dim), generator) -> new block values (chains, block_size)``."""


class GibbsState(NamedTuple):
    """Shape: ``position`` ``(chains, dim)``; ``log_prob`` ``(chains,)`` (zeros without a
    ``log_prob_fn``)."""

    position: Tensor
    log_prob: Tensor


class GibbsInfo(NamedTuple):
    """Per-transition diagnostics; every field ``(chains,)``.

    ``block``: index of the block updated (random scan), or -1 (a full systematic sweep).
    """

    block: Tensor


def _zero_log_prob(position: Tensor) -> Tensor:
    return position.new_zeros(position.shape[0])


def _check_block(values: Tensor, position: Tensor, size: int, b: int) -> None:
    if not isinstance(values, Tensor) or values.shape != (position.shape[0], size):
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"conditional sampler {b} must return the new block of shape (chains, block_size) = "
            f"({position.shape[0]}, {size}), got {shape}"
        )


def gibbs_step(
    state: GibbsState,
    blocks: Sequence[Tensor],
    conditionals: Sequence[ConditionalSampler],
    log_prob_fn: LogProbFn | None = None,
    *,
    scan: str = "systematic",
    generator: torch.Generator | None = None,
) -> tuple[GibbsState, GibbsInfo]:
    """One Gibbs transition: a systematic sweep over the blocks, or one random block per chain.

    Args:
        blocks: index tensors (long, on the position's device) of each block's coordinates.
        conditionals: one sampler per block, ``(position, generator) -> (chains, size)``.
        log_prob_fn: if given, evaluated after the update (for diagnostics only).
        scan: ``"systematic"`` or ``"random"``.

    Shape:
        state fields ``(chains, ...)``; ``GibbsInfo`` fields ``(chains,)``.

    References:
        Geman, Geman (1984); Liu, Wong, Kong (1995) for the scans.
    """
    position = state.position
    chains = position.shape[0]
    if scan == "systematic":
        for b, (index, sampler) in enumerate(zip(blocks, conditionals)):
            values = sampler(position, generator)
            _check_block(values, position, index.numel(), b)
            position = position.index_copy(1, index, values.to(position.dtype))
        block = torch.full((chains,), -1, device=position.device, dtype=torch.long)
    elif scan == "random":
        block = torch.randint(len(blocks), (chains,), generator=generator, device=position.device)
        current = position
        for b, (index, sampler) in enumerate(zip(blocks, conditionals)):
            # Each sampler sees the current (not partly updated) position, and only the
            # chains that picked this block keep its draw: one block per chain.
            values = sampler(current, generator)
            _check_block(values, current, index.numel(), b)
            updated = current.index_copy(1, index, values.to(position.dtype))
            position = torch.where((block == b)[:, None], updated, position)
    else:
        raise ValueError(f"scan must be 'systematic' or 'random', got {scan!r}")
    if log_prob_fn is None:
        log_prob = _zero_log_prob(position)
    else:
        with torch.no_grad():
            log_prob = log_prob_fn(position)
        check_log_prob_output(log_prob, position)
    return GibbsState(position, log_prob.detach()), GibbsInfo(block)


class Gibbs(Kernel):
    """Gibbs sampler over blocks of coordinates with user-given conditional samplers.

    Args:
        blocks: one entry per block: a list of coordinate indices, or a ``slice``. Blocks
            must be disjoint; together they need not cover every coordinate (the others
            stay fixed).
        conditionals: one sampler per block, ``(position (chains, dim), generator) ->
            (chains, block_size)``, drawing the block from its full conditional given the
            rest of ``position`` (or any update that leaves that conditional invariant).
        log_prob_fn: optional joint log density ``(chains, dim) -> (chains,)``; only
            reported in the state (Gibbs needs no density).
        scan: ``"systematic"`` (blocks in order, every step) or ``"random"`` (each chain
            updates one uniformly chosen block per step).

    Shape:
        positions ``(chains, dim)``.

    References:
        Geman, Geman (1984); Gelfand, Smith (1990); Liu, Wong, Kong (1995).

    Example::

        >>> rho = 0.9  # bivariate normal with correlation rho
        >>> def cond(i):
        ...     def sample(x, g):
        ...         noise = torch.randn(x.shape[0], 1, generator=g, dtype=x.dtype)
        ...         return rho * x[:, 1 - i, None] + (1 - rho**2) ** 0.5 * noise
        ...     return sample
        >>> kernel = Gibbs([[0], [1]], [cond(0), cond(1)])
        >>> state = kernel.init(torch.zeros(4, 2))
        >>> state, info = kernel.step(state, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int] | slice],
        conditionals: Sequence[ConditionalSampler],
        log_prob_fn: LogProbFn | None = None,
        *,
        scan: str = "systematic",
    ) -> None:
        super().__init__(log_prob_fn if log_prob_fn is not None else _zero_log_prob)
        self.__dict__["user_log_prob_fn"] = log_prob_fn
        if len(blocks) != len(conditionals) or len(blocks) == 0:
            raise ValueError(
                f"need one conditional sampler per block, got {len(blocks)} block(s) and "
                f"{len(conditionals)} sampler(s)"
            )
        for b, sampler in enumerate(conditionals):
            if not callable(sampler):
                raise TypeError(f"conditionals[{b}] must be callable, got {type(sampler).__name__}")
        if scan not in ("systematic", "random"):
            raise ValueError(f"scan must be 'systematic' or 'random', got {scan!r}")
        self.blocks = list(blocks)
        self.__dict__["conditionals"] = list(conditionals)
        self.scan = scan
        self._index_cache: dict[tuple[torch.device, int], list[Tensor]] = {}

    def _indices(self, position: Tensor) -> list[Tensor]:
        dim = position.shape[1]
        key = (position.device, dim)
        if key not in self._index_cache:
            seen = torch.zeros(dim, dtype=torch.bool)
            indices = []
            for b, block in enumerate(self.blocks):
                index = torch.arange(dim)[block] if isinstance(block, slice) else None
                if index is None:
                    index = torch.as_tensor(list(block), dtype=torch.long)
                if index.numel() == 0 or index.dim() != 1:
                    raise ValueError(f"block {b} selects no coordinates: {block!r}")
                if bool(((index < -dim) | (index >= dim)).any()):
                    raise ValueError(f"block {b} = {block!r} has indices outside [0, {dim})")
                index = index % dim
                if bool(seen[index].any()) or index.unique().numel() != index.numel():
                    raise ValueError(f"block {b} = {block!r} overlaps an earlier block")
                seen[index] = True
                indices.append(index.to(position.device))
            self._index_cache[key] = indices
        return self._index_cache[key]

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> GibbsState:
        """Check ``position`` ``(chains, dim)`` and the blocks; evaluate ``log_prob_fn``."""
        check_position(position)
        self._indices(position)
        with torch.no_grad():
            log_prob = self.log_prob_fn(position)
        check_initial_log_prob(log_prob, position)
        return GibbsState(position.detach(), log_prob.detach())

    def step(
        self, state: GibbsState, generator: torch.Generator | None = None
    ) -> tuple[GibbsState, GibbsInfo]:
        return gibbs_step(
            state,
            self._indices(state.position),
            self.conditionals,
            self.user_log_prob_fn,
            scan=self.scan,
            generator=generator,
        )
