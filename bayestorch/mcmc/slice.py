"""Slice sampling with stepping-out and shrinkage (Neal 2003), many chains in lockstep.

Talk section "MCMC": draw a level ``log y = log p(x) - Exp(1)`` under the density, then a
point uniformly from the slice ``{x : log p(x) > log y}`` along a line through ``x``. The
line's interval is placed at random around ``x`` (width ``w``), stepped out by ``w``
until both ends are outside the slice (at most ``m`` steps, split at random between the
ends, Neal's Fig. 3), and a point is drawn uniformly in it, shrinking the interval toward
``x`` after each point outside the slice (Fig. 5). Both ``x -> x'`` and ``x' -> x`` see
the same distribution of intervals, so the update leaves ``p`` invariant for any ``w``.

Lines are coordinate axes (a sweep over coordinates) or random directions. All chains
advance together: each while-loop runs over iterations (capped), chains that are done are
masked, and a chain's ``log_prob_fn`` evaluations are counted per chain; the only host
synchronisation is the loop's "is any chain still active" test.

References:
    Neal (2003). Slice sampling. Annals of Statistics 31(3), figures 3 and 5.
    MacKay (2003). Information Theory, Inference, and Learning Algorithms, section 29.7.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.base import Kernel, check_initial_log_prob, check_position
from bayestorch.utils.autograd import LogProbFn, evaluate_log_prob
from bayestorch.utils.random import rand_open01

__all__ = [
    "SliceAdaptState",
    "SliceInfo",
    "SliceSampler",
    "SliceState",
    "slice_init",
    "slice_step",
    "slice_update",
]

# Warm-up: width = WIDTH_FACTOR x the average absolute move per coordinate (an exponential
# moving average with this rate). An exact slice update on N(0, s^2) moves by about 1.1 s,
# so the width settles near 2.3 s, a typical slice size (Neal 2003, section 4.4).
WIDTH_FACTOR = 2.0
WIDTH_EMA_RATE = 0.05


class SliceState(NamedTuple):
    """Shape: ``position`` ``(chains, dim)``; ``log_prob`` ``(chains,)``."""

    position: Tensor
    log_prob: Tensor


class SliceAdaptState(NamedTuple):
    """Warm-up state. Shape: ``previous`` ``(chains, dim)``; ``move_avg`` ``(dim,)`` or
    ``(chains, dim)`` (per chain); ``count`` ``()``."""

    previous: Tensor
    move_avg: Tensor
    count: Tensor


class SliceInfo(NamedTuple):
    """Per-transition diagnostics; every field ``(chains,)``.

    ``num_evaluations``: calls of ``log_prob_fn`` this chain needed (lockstep evaluations
    made for chains that were already done are not counted). ``is_exhausted``: the
    shrinkage loop hit its cap on some line and the chain stayed put there (a sign that
    ``log_prob_fn`` is broken, e.g. NaN everywhere, since shrinkage converges
    geometrically).
    """

    num_evaluations: Tensor
    is_exhausted: Tensor


def _eval(log_prob_fn: LogProbFn, position: Tensor) -> Tensor:
    log_prob = evaluate_log_prob(log_prob_fn, position)
    # NaN (e.g. outside the support) counts as outside every slice.
    return torch.nan_to_num(log_prob, nan=-torch.inf)


def _in_slice(log_prob: Tensor, log_level: Tensor) -> Tensor:
    return log_prob > log_level


def slice_init(position: Tensor, log_prob_fn: LogProbFn) -> SliceState:
    """Evaluate (and check) the log density at the start.

    Shape:
        ``position``: ``(chains, dim)``; state fields ``(chains, ...)``.
    """
    check_position(position)
    log_prob = evaluate_log_prob(log_prob_fn, position)
    check_initial_log_prob(log_prob, position)
    return SliceState(position.detach(), log_prob)


def slice_update(
    state: SliceState,
    direction: Tensor,
    log_prob_fn: LogProbFn,
    *,
    max_steps_out: int = 32,
    max_shrink: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[SliceState, Tensor, Tensor]:
    """One slice-sampling update of every chain along the line ``x + t * direction``.

    ``direction`` carries the width: the initial interval is ``t in [-u, 1 - u]``.

    Args:
        direction: ``(chains, dim)``, the line and its width ``w`` (its length).
        max_steps_out: Neal's ``m``: at most ``m - 1`` steps out in total (1: none).
        max_shrink: cap on shrinkage iterations.

    Returns:
        ``(state, num_evaluations (chains,), is_exhausted (chains,))``.

    Shape:
        state fields ``(chains, ...)``.

    References:
        Neal (2003), figures 3 (stepping out) and 5 (shrinkage).
    """
    x0, log_prob = state
    chains = x0.shape[0]
    like = dict(device=x0.device, dtype=x0.dtype)
    u = rand_open01((3, chains), generator=generator, **like)
    log_level = log_prob + u[0].log().to(log_prob.dtype)  # log p(x) - Exp(1)
    evals = torch.zeros(chains, device=x0.device, dtype=torch.long)

    # Stepping out: both ends stacked as (2, chains) in units of ``direction`` and evaluated
    # in one batched call per iteration; Neal's J and K steps split at random.
    ends = torch.stack([-u[1], 1.0 - u[1]])
    outward = ends.new_tensor([[-1.0], [1.0]])
    steps_left = torch.floor(max_steps_out * u[2]).long()
    steps = torch.stack([steps_left, max_steps_out - 1 - steps_left])
    active = steps > 0
    x0_both, direction_both, level_both = (
        x0.repeat(2, 1),
        direction.repeat(2, 1),
        log_level.repeat(2),
    )
    while bool(active.any()):
        lp = _eval(log_prob_fn, x0_both + ends.reshape(-1, 1) * direction_both)
        evals += active.sum(0)
        active &= _in_slice(lp, level_both).reshape(2, chains)
        ends = ends + outward * active
        steps = steps - active.long()
        active &= steps > 0
    left, right = ends[0], ends[1]

    # Shrinkage: draw in [left, right], keep if inside the slice, else cut toward x0.
    done = torch.zeros(chains, device=x0.device, dtype=torch.bool)
    new_t = torch.zeros_like(left)
    new_log_prob = log_prob.clone()
    for _ in range(max_shrink):
        if bool(done.all()):
            break
        active = ~done
        t = left + rand_open01((chains,), generator=generator, **like) * (right - left)
        lp = _eval(log_prob_fn, x0 + t[:, None] * direction).to(log_prob.dtype)
        evals += active
        accept = active & _in_slice(lp, log_level)
        new_t = torch.where(accept, t, new_t)
        new_log_prob = torch.where(accept, lp, new_log_prob)
        done |= accept
        reject, below = active & ~accept, t < 0
        left = torch.where(reject & below, t, left)
        right = torch.where(reject & ~below, t, right)
    return SliceState(x0 + new_t[:, None] * direction, new_log_prob), evals, ~done


def slice_step(
    state: SliceState,
    log_prob_fn: LogProbFn,
    *,
    width: Tensor,
    method: str = "coordinate",
    max_steps_out: int = 32,
    max_shrink: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[SliceState, SliceInfo]:
    """One slice-sampling transition: a sweep over coordinates, or one random direction.

    Args:
        width: initial interval width, ``()`` or ``(dim,)`` (per coordinate; for random
            directions the unit direction is scaled elementwise by it).
        method: ``"coordinate"`` (systematic sweep, ``dim`` line updates) or
            ``"random_direction"`` (one line along a uniformly random direction).

    Shape:
        state fields ``(chains, ...)``; ``SliceInfo`` fields ``(chains,)``.

    References:
        Neal (2003); MacKay (2003), section 29.7 (random directions).
    """
    chains, dim = state.position.shape
    width = width.to(state.position).expand(dim)
    evals = torch.zeros(chains, device=state.position.device, dtype=torch.long)
    exhausted = torch.zeros(chains, device=state.position.device, dtype=torch.bool)
    if method == "coordinate":
        for d in range(dim):
            direction = torch.zeros_like(state.position)
            direction[:, d] = width[d]
            state, e, x = slice_update(
                state,
                direction,
                log_prob_fn,
                max_steps_out=max_steps_out,
                max_shrink=max_shrink,
                generator=generator,
            )
            evals, exhausted = evals + e, exhausted | x
    elif method == "random_direction":
        z = torch.randn(
            state.position.shape,
            generator=generator,
            device=state.position.device,
            dtype=state.position.dtype,
        )
        direction = z / z.norm(dim=1, keepdim=True) * width
        state, evals, exhausted = slice_update(
            state,
            direction,
            log_prob_fn,
            max_steps_out=max_steps_out,
            max_shrink=max_shrink,
            generator=generator,
        )
    else:
        raise ValueError(f"method must be 'coordinate' or 'random_direction', got {method!r}")
    return state, SliceInfo(evals, exhausted)


class SliceSampler(Kernel):
    """Neal's slice sampler (stepping-out and shrinkage), per coordinate or random direction.

    Exact for any width; the width only sets the cost (about ``2 + log2(w / slice)``
    evaluations per line when ``w`` is too large, about ``slice / w`` steps out when too
    small).

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``; ``-inf`` or NaN outside the support.
        width: initial interval width ``w``: a number or a ``(dim,)`` tensor (a buffer).
        method: ``"coordinate"`` or ``"random_direction"``.
        max_steps_out: Neal's ``m``, the cap on steps out per line (``m w`` is the
            largest interval).
        max_shrink: cap on shrinkage iterations per line (reached only by a broken
            ``log_prob_fn``; the chain then stays put and ``info.is_exhausted`` is set).
        adapt_width: during warm-up, set the width per coordinate to twice the average
            absolute move of the chains (an exponential moving average; ``sqrt(dim)``
            times that for random directions, whose unit steps spread over ``dim``
            coordinates). The width is fixed after warm-up, so the draws stay exact.

    Shape:
        positions ``(chains, dim)``.

    References:
        Neal (2003). Slice sampling. Annals of Statistics 31(3).

    Example::

        >>> kernel = SliceSampler(lambda x: -0.5 * (x**2).sum(-1), width=2.0)
        >>> state = kernel.init(torch.zeros(8, 2))
        >>> state, info = kernel.step(state, generator=torch.Generator().manual_seed(0))
        >>> info.num_evaluations.shape
        torch.Size([8])
    """

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        width: float | Tensor = 1.0,
        *,
        method: str = "coordinate",
        max_steps_out: int = 32,
        max_shrink: int = 100,
        adapt_width: bool = True,
    ) -> None:
        super().__init__(log_prob_fn)
        width = torch.as_tensor(width, dtype=torch.get_default_dtype()).clone()
        if width.dim() > 1 or not bool((width > 0).all()) or not bool(width.isfinite().all()):
            raise ValueError(
                f"width must be a positive finite number or (dim,) tensor, got shape "
                f"{tuple(width.shape)} with values {width.flatten()[:5].tolist()}"
            )
        if method not in ("coordinate", "random_direction"):
            raise ValueError(f"method must be 'coordinate' or 'random_direction', got {method!r}")
        if int(max_steps_out) < 1 or int(max_shrink) < 1:
            raise ValueError(
                f"max_steps_out and max_shrink must be >= 1, got {max_steps_out}, {max_shrink}"
            )
        self.method = method
        self.max_steps_out = int(max_steps_out)
        self.max_shrink = int(max_shrink)
        self.adapt_width = adapt_width
        self.register_buffer("width", width)

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> SliceState:
        """Evaluate ``log_prob_fn`` at ``position`` ``(chains, dim)``."""
        state = slice_init(position, self.log_prob_fn)
        if self.width.dim() == 1 and self.width.shape[0] != position.shape[1]:
            raise ValueError(
                f"width of shape {tuple(self.width.shape)} does not match dim="
                f"{position.shape[1]} of positions {tuple(position.shape)}"
            )
        self.width = self.width.to(dtype=position.dtype, device=position.device)
        return state

    def step(
        self, state: SliceState, generator: torch.Generator | None = None
    ) -> tuple[SliceState, SliceInfo]:
        return slice_step(
            state,
            self.log_prob_fn,
            width=self.width,
            method=self.method,
            max_steps_out=self.max_steps_out,
            max_shrink=self.max_shrink,
            generator=generator,
        )

    def tuning_summary(self) -> dict[str, Tensor]:
        return {"width": self.width.mean()}

    # -- warm-up: width from the average move ------------------------------------------
    def warmup_init(self, state: SliceState, num_warmup: int) -> SliceAdaptState | None:
        if not self.adapt_width:
            return None
        position = state.position
        zero = position.new_zeros(())
        return SliceAdaptState(position.clone(), position.new_zeros(position.shape[1]), zero)

    def warmup_update(
        self,
        adapt_state: SliceAdaptState | None,
        state: SliceState,
        info,
        iteration: int,
        generator: torch.Generator | None = None,
    ) -> SliceAdaptState | None:
        if adapt_state is None:
            return None
        move = (state.position - adapt_state.previous).abs().mean(0)
        move_avg = (1 - WIDTH_EMA_RATE) * adapt_state.move_avg + WIDTH_EMA_RATE * move
        count = adapt_state.count + 1
        # Bias-corrected average; a coordinate that never moved keeps its width.
        estimate = move_avg / (1 - (1 - WIDTH_EMA_RATE) ** count)
        factor = WIDTH_FACTOR
        if self.method == "random_direction":
            factor *= state.position.shape[1] ** 0.5
        width = self.width.expand_as(estimate)
        self.width = torch.where(estimate > 0, factor * estimate, width)
        return SliceAdaptState(state.position.clone(), move_avg, count)
