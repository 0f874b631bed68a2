"""The No-U-Turn Sampler for many chains at once: multinomial, iterative, masked.

All chains double their trajectories in lockstep. At tree depth ``j`` every chain that is
still going picks a direction and adds a subtree of ``2^j`` leapfrog steps from that end of
its trajectory; a chain whose trajectory has turned, diverged or reached the maximum depth
is *masked*: it keeps its state while the others continue (its gradient is still computed
with the batch, which is what one batched evaluation costs anyway). Subtrees are built
iteratively, leaf by leaf: the U-turn checks of all nested blocks ending at a leaf use
checkpoints (p#, p and momentum sums at the latest start and end of an aligned block of each
size), indexed by the bits of the leaf number, which is the same for every chain: the
indexing is Python arithmetic, not tensor control flow. Every merge of two sibling blocks,
inside subtrees and at the top, gets the generalised criterion plus Stan's two checks across
the junction, so the set of checks depends only on the final tree, as detailed balance needs.

Sampling within a subtree is uniform-progressive multinomial; merging a valid subtree into
the trajectory is biased-progressive (Stan). The U-turn criterion is the generalised one on
the momentum sum ``rho`` with ``p# = M^{-1} p`` at both ends. A leaf whose energy error
exceeds 1000 (or is NaN) is a divergence: the subtree is discarded and the chain keeps the
proposal it had.

References:
    Hoffman & Gelman, "The No-U-Turn Sampler", JMLR 2014;
    Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo", 2017, appendix A;
    Phan, Pradhan & Jankowiak, "Composable effects ... in NumPyro", 2019 (iterative NUTS).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_unflatten

from bayestorch.mcmc.compiled import TrajectoryFunction, loop, pack, unpack
from bayestorch.mcmc.hmc import DIVERGENCE_THRESHOLD, EuclideanKernel, HMCState
from bayestorch.mcmc.integrators import IntegratorState, leapfrog
from bayestorch.mcmc.metrics import momentum_factor, sample_momentum, velocity
from bayestorch.mcmc.proposal import select
from bayestorch.utils.autograd import LogProbFn
from bayestorch.utils.random import counter_uniforms, rand_key

__all__ = ["NUTS", "NUTSInfo", "nuts_step"]


class NUTSInfo(NamedTuple):
    """Per-transition diagnostics; every field ``(chains,)``.

    ``accept_prob`` is Stan's acceptance statistic (mean of ``min(1, exp(-ΔH))`` over the
    new leaves), the quantity step-size adaptation targets; ``is_accepted`` says whether the
    chain moved.
    """

    accept_prob: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy: Tensor
    num_steps: Tensor
    tree_depth: Tensor


def _is_turning(psharp_left: Tensor, psharp_right: Tensor, rho: Tensor) -> Tensor:
    """Generalised U-turn: true unless both ends still move along the momentum sum (NaN turns)."""
    return ~(torch.minimum((psharp_left * rho).sum(-1), (psharp_right * rho).sum(-1)) > 0)


def _trailing(leaf: int, bit: int, cap: int) -> int:
    """Number of trailing ``bit``s of ``leaf`` (all of them for leaf 0), capped below ``cap``."""
    count = 0
    while count < cap - 1 and (leaf >> count) & 1 == bit:
        count += 1
    return count


class _Trajectory(NamedTuple):
    """A NUTS trajectory being doubled. Shape: ``(chains, dim)`` or ``(chains,)``."""

    left: IntegratorState
    right: IntegratorState
    psharp_left: Tensor
    psharp_right: Tensor
    rho: Tensor  # momentum sum over the trajectory
    proposal: HMCState
    proposal_energy: Tensor
    log_weight: Tensor  # log sum over the trajectory of exp(-ΔH)
    done: Tensor
    diverged: Tensor
    depth: Tensor
    num_steps: Tensor
    sum_accept: Tensor


class _Subtree(NamedTuple):
    """A subtree being built leaf by leaf, and the running totals of the transition.

    ``start`` ``(L, 3, chains, dim)``: for each block size ``2^i``, p#, p and the momentum
    sum before it at the latest leaf that starts an aligned block of that size; ``end``
    ``(L, 2, chains, dim)``: p#, p at the latest leaf that ends one. Level ``L - 1`` of
    ``start`` is the first leaf; level 0 of ``end`` the latest leaf.
    """

    current: IntegratorState  # the end being extended: the latest valid leaf
    proposal: HMCState
    proposal_energy: Tensor
    log_weight: Tensor
    rho: Tensor
    done: Tensor
    diverged: Tensor
    num_steps: Tensor
    sum_accept: Tensor
    start: Tensor
    end: Tensor


class _Junction(NamedTuple):
    """Where a subtree attaches: direction, signed step, and the old trajectory's ends."""

    active: Tensor
    forward: Tensor
    step_size: Tensor  # signed, (chains,)
    join_momentum: Tensor
    join_psharp: Tensor
    outer_psharp: Tensor


def _write_levels(buffer: Tensor, value: Tensor, levels: int | Tensor) -> Tensor:
    """Write ``value`` into the first ``levels`` levels of ``buffer`` (eager: in place) or,
    compiled, where the level mask ``levels`` ``(L,)`` is true (a new buffer: a compiled
    loop's carried values are not mutated)."""
    if isinstance(levels, int):
        buffer[:levels] = value
        return buffer
    return torch.where(levels.view(-1, 1, 1, 1), value, buffer)


def _nested_turning(
    start: Tensor, end: Tensor, psharp: Tensor, rho: Tensor, levels: int | Tensor
) -> Tensor:
    """U-turn checks of the nested blocks (sizes 2, 4, …) ending at this leaf ``(chains,)``.

    A block ``[s, n]`` of ``2^m`` leaves merges halves ``[s, mid - 1]`` and ``[mid, n]``.
    Besides the generalised criterion over the block, Stan checks each half extended by the
    neighbouring leaf of the other: ``[s, mid]`` and ``[mid - 1, n]``. ``levels``: the number
    of blocks ending here (eager), or a mask ``(L - 1,)`` of them over all levels (compiled,
    fixed shapes). All checks run as one batched operation.
    """
    if isinstance(levels, int):
        block, half, half_end = start[1 : levels + 1], start[:levels], end[:levels]
    else:
        block, half, half_end = start[1:], start[:-1], end[:-1]
    block_psharp, _, block_rho_before = block.unbind(1)
    half_psharp, half_momentum, half_rho_before = half.unbind(1)
    end_psharp, end_momentum = half_end.unbind(1)
    lefts = torch.stack([block_psharp, block_psharp, end_psharp])
    rights = torch.stack([psharp.expand_as(half_psharp), half_psharp, psharp.expand_as(end_psharp)])
    rhos = torch.stack(
        [
            rho - block_rho_before,
            half_rho_before + half_momentum - block_rho_before,
            rho - half_rho_before + end_momentum,
        ]
    )
    dots = torch.minimum((lefts * rhos).sum(-1), (rights * rhos).sum(-1))  # (3, levels, chains)
    if not isinstance(levels, int):
        dots = torch.where(levels.view(-1, 1), dots, 1.0)
    return ~(dots.amin((0, 1)) > 0)


def _begin(
    traj: _Trajectory,
    log_u: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    start: Tensor,
    end: Tensor,
    *,
    dense: bool,
) -> tuple[_Subtree, _Junction]:
    """Pick each chain's direction (``log_u < log 1/2``) and start its subtree there."""
    forward = log_u < -math.log(2.0)
    current = select(forward, traj.right, traj.left)
    f = forward.unsqueeze(-1)
    # The junction keeps its own copy of the momentum (not a view of the subtree's state).
    junction = _Junction(
        ~traj.done,
        forward,
        torch.where(forward, step_size, -step_size),
        current.momentum.clone(),
        torch.where(f, traj.psharp_right, traj.psharp_left),
        torch.where(f, traj.psharp_left, traj.psharp_right),
    )
    sub = _Subtree(
        current,
        traj.proposal,
        traj.proposal_energy,
        torch.full_like(traj.log_weight, -torch.inf),
        torch.zeros_like(traj.rho),
        torch.zeros_like(traj.done),
        torch.zeros_like(traj.done),
        traj.num_steps,
        traj.sum_accept,
        start,
        end,
    )
    return sub, junction


def _leaf(
    sub: _Subtree,
    junction: _Junction,
    energy0: Tensor,
    inverse_mass_matrix: Tensor,
    log_u: Tensor,
    levels: tuple[int, int] | Tensor,
    *,
    log_prob_fn: LogProbFn,
    value_and_grad=None,
    dense: bool,
    divergence_threshold: float,
) -> tuple[_Subtree, Tensor]:
    """Add one leaf to every live chain's subtree; returns it and whether any chain is live.

    ``levels``: ``(starts, ends)``, the number of aligned blocks that start at this leaf and
    of blocks of two or more leaves that end here (eager), or their masks over all levels
    ``(3, L)`` (compiled: start writes, end writes, checks).
    """
    live = junction.active & ~sub.done
    if value_and_grad is None:
        new = leapfrog(sub.current, log_prob_fn, junction.step_size, inverse_mass_matrix, dense)
    else:
        new = leapfrog(
            sub.current,
            log_prob_fn,
            junction.step_size,
            inverse_mass_matrix,
            dense,
            value_and_grad,
        )
    momentum = new.momentum
    psharp = velocity(momentum, inverse_mass_matrix, dense)
    energy = 0.5 * (momentum * psharp).sum(-1) - new.log_prob
    delta = energy - energy0
    ok = live & (delta <= divergence_threshold)  # NaN counts as divergent
    is_div = live ^ ok
    # Never step on from a NaN point: a diverged chain keeps its last valid leaf. Values of
    # chains that are not live are never used (masked at the merge).
    current = select(ok, new, sub.current)
    leaf_log_weight = torch.where(ok, -delta, -torch.inf)
    # Stan's acceptance statistic: min(1, e^{-ΔH}) per new leaf (0 if divergent).
    sum_accept = sub.sum_accept + leaf_log_weight.clamp(max=0.0).exp()
    # Uniform progressive sampling within the subtree (non-ok leaves weigh e^-inf).
    combined = torch.logaddexp(sub.log_weight, leaf_log_weight)
    take = log_u < leaf_log_weight - combined
    leaf_state = HMCState(new.position, new.log_prob, new.log_prob_grad)
    proposal = select(take, leaf_state, sub.proposal)
    proposal_energy = torch.where(take, energy, sub.proposal_energy)
    rho = sub.rho + momentum
    if isinstance(levels, tuple):
        starts, ends = levels
        check = ends
        ends = ends + 1
    else:
        starts, ends, check = levels[0], levels[1], levels[2, 1:]
    start = _write_levels(sub.start, torch.stack([psharp, momentum, sub.rho]), starts)
    done = sub.done | is_div
    if not isinstance(check, int) or check:
        done = done | (ok & _nested_turning(start, sub.end, psharp, rho, check))
    end = _write_levels(sub.end, torch.stack([psharp, momentum]), ends)
    sub = _Subtree(
        current,
        proposal,
        proposal_energy,
        combined,
        rho,
        done,
        sub.diverged | is_div,
        sub.num_steps + live,
        sum_accept,
        start,
        end,
    )
    return sub, (junction.active & ~done).any()


def _merge(
    traj: _Trajectory,
    sub: _Subtree,
    junction: _Junction,
    log_u: Tensor,
    *,
    dense: bool,
) -> tuple[_Trajectory, Tensor]:
    """Merge each valid subtree (no inner U-turn or divergence) into its trajectory
    (biased-progressive sampling), then the U-turn checks of the whole trajectory and Stan's
    two across the junction. Returns the trajectory and whether any chain goes on."""
    active = junction.active
    valid = active & ~sub.done
    take = valid & (log_u < sub.log_weight - traj.log_weight)
    proposal = select(take, sub.proposal, traj.proposal)
    proposal_energy = torch.where(take, sub.proposal_energy, traj.proposal_energy)
    log_weight = torch.where(
        valid, torch.logaddexp(traj.log_weight, sub.log_weight), traj.log_weight
    )
    grow_right = valid & junction.forward
    grow_left = valid & ~junction.forward
    right = select(grow_right, sub.current, traj.right)
    left = select(grow_left, sub.current, traj.left)
    last_psharp = sub.end[0, 0]
    psharp_right = torch.where(grow_right.unsqueeze(-1), last_psharp, traj.psharp_right)
    psharp_left = torch.where(grow_left.unsqueeze(-1), last_psharp, traj.psharp_left)
    rho = traj.rho + torch.where(valid.unsqueeze(-1), sub.rho, 0.0)
    # Stan's extra checks across the junction: the old trajectory extended by the first
    # new leaf, and the subtree extended by the old end it attaches to. Without them a
    # trajectory on a Gaussian can circle to the maximum depth (stan-dev/stan#2800).
    first_psharp, first_momentum = sub.start[-1, 0], sub.start[-1, 1]
    turning = _is_turning(psharp_left, psharp_right, rho)
    turning |= _is_turning(junction.outer_psharp, first_psharp, traj.rho + first_momentum)
    turning |= _is_turning(junction.join_psharp, last_psharp, sub.rho + junction.join_momentum)
    done = traj.done | sub.done | (valid & turning)
    traj = _Trajectory(
        left,
        right,
        psharp_left,
        psharp_right,
        rho,
        proposal,
        proposal_energy,
        log_weight,
        done,
        traj.diverged | (active & sub.diverged),
        traj.depth + active,
        sub.num_steps,
        sub.sum_accept,
    )
    return traj, (~done).any()


def _merge_begin(
    traj: _Trajectory,
    sub: _Subtree,
    junction: _Junction,
    log_u: Tensor,
    log_u_direction: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    *,
    dense: bool,
) -> tuple[_Trajectory, Tensor, _Subtree, _Junction]:
    """``_merge`` this doubling, then ``_begin`` the next one (unused if none goes on)."""
    traj, any_going = _merge(traj, sub, junction, log_u, dense=dense)
    sub, junction = _begin(
        traj, log_u_direction, step_size, inverse_mass_matrix, sub.start, sub.end, dense=dense
    )
    return traj, any_going, sub, junction


def _doubling_offset(level):
    """First row of doubling ``level``'s uniforms: doublings ``0..level-1`` use
    ``2 + 2^i`` rows each (direction, merge, one per leaf). ``int`` or int64 ``Tensor``."""
    return 2 * level + (1 << level) - 1


def _log_uniforms(key: Tensor, rows: Tensor, chains: int, dtype: torch.dtype) -> Tensor:
    """The transition's log-uniforms at ``rows`` ``(R,)`` for every chain: ``(R, chains)``."""
    chain = torch.arange(chains, device=rows.device)
    return counter_uniforms(key, rows.unsqueeze(-1) * chains + chain, dtype).log()


def _doublings_eager(
    traj: _Trajectory,
    start: Tensor,
    end: Tensor,
    energy0: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    key: Tensor,
    sync_every: int,
    *,
    log_prob_fn: LogProbFn,
    dense: bool,
    divergence_threshold: float,
    max_tree_depth: int,
) -> _Trajectory:
    """The doublings of a transition as a Python loop: stops at the first leaf after which
    no chain builds on (checked every ``sync_every`` leaves) and after the last doubling."""
    chains, dtype, device = energy0.shape[0], energy0.dtype, energy0.device

    def uniforms(level: int) -> Tensor:
        first = _doubling_offset(level)
        rows = torch.arange(first, first + 2 + 2**level, device=device)
        return _log_uniforms(key, rows, chains, dtype)

    log_u = uniforms(0)
    sub, junction = _begin(traj, log_u[0], step_size, inverse_mass_matrix, start, end, dense=dense)
    for level in range(max_tree_depth):
        for leaf in range(2**level):
            levels = (_trailing(leaf, 0, max_tree_depth) + 1, _trailing(leaf, 1, max_tree_depth))
            sub, any_live = _leaf(
                sub, junction, energy0, inverse_mass_matrix, log_u[2 + leaf], levels,
                log_prob_fn=log_prob_fn, dense=dense, divergence_threshold=divergence_threshold,
            )  # fmt: skip
            if (leaf + 1) % sync_every == 0 and not bool(any_live):
                break
        next_log_u = uniforms(level + 1)
        traj, any_going, sub, junction = _merge_begin(
            traj, sub, junction, log_u[1], next_log_u[0], step_size, inverse_mass_matrix,
            dense=dense,
        )  # fmt: skip
        if not bool(any_going):
            break
        log_u = next_log_u
    return traj


def _transition(
    state: HMCState,
    momentum: Tensor,
    key: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    sync_every: int,
    *,
    log_prob_fn: LogProbFn,
    value_and_grad=None,
    dense: bool,
    divergence_threshold: float,
    max_tree_depth: int,
) -> tuple[HMCState, NUTSInfo]:
    """A NUTS transition from ``state`` with initial ``momentum`` and the uniforms of ``key``.

    Eager (``value_and_grad is None``): the doublings as a Python loop
    (``_doublings_eager``). Compiled: one ``while_loop`` over leaves, so a whole transition
    is one graph call (``_doublings_compiled``).
    """
    x = state.position
    chains, dim = x.shape
    like = dict(dtype=x.dtype, device=x.device)
    psharp0 = velocity(momentum, inverse_mass_matrix, dense)
    energy0 = 0.5 * (momentum * psharp0).sum(-1) - state.log_prob
    zeros = torch.zeros((2, chains), **like)
    false = torch.zeros((2, chains), dtype=torch.bool, device=x.device)
    steps = torch.zeros((2, chains), dtype=torch.long, device=x.device)
    ends = IntegratorState(x, momentum, state.log_prob, state.log_prob_grad)
    traj = _Trajectory(
        ends, ends, psharp0, psharp0, momentum, state, energy0, zeros[0], false[0], false[1],
        steps[0], steps[1], zeros[1],
    )  # fmt: skip
    start = torch.zeros((max_tree_depth, 3, chains, dim), **like)
    end = torch.zeros((max_tree_depth, 2, chains, dim), **like)
    args = (traj, start, end, energy0, step_size, inverse_mass_matrix, key)
    statics = dict(
        log_prob_fn=log_prob_fn,
        dense=dense,
        divergence_threshold=divergence_threshold,
        max_tree_depth=max_tree_depth,
    )
    if value_and_grad is None:
        traj = _doublings_eager(*args, sync_every, **statics)
    else:
        traj = _doublings_compiled(*args, value_and_grad=value_and_grad, **statics)
    accept_prob = traj.sum_accept / traj.num_steps.clamp_min(1)
    proposal = traj.proposal
    moved = (proposal.position != x).any(-1)
    info = NUTSInfo(accept_prob, moved, traj.diverged, traj.proposal_energy, traj.num_steps,
                    traj.depth)  # fmt: skip
    return proposal, info


def _doublings_compiled(
    traj: _Trajectory,
    start: Tensor,
    end: Tensor,
    energy0: Tensor,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    key: Tensor,
    *,
    log_prob_fn: LogProbFn,
    value_and_grad,
    dense: bool,
    divergence_threshold: float,
    max_tree_depth: int,
) -> _Trajectory:
    """The doublings as one ``while_loop`` over leaves (traceable by ``torch.compile``).

    Each iteration adds a leaf and computes the merge of the doubling and the start of the
    next, kept only when the doubling is complete (its last leaf, or no chain building on):
    the same leaves, uniforms and merges as ``_doublings_eager``, hence the same draws. The
    checkpoint levels a leaf writes and checks come from the bits of the leaf number, as
    tensors. The carried state is packed into a few tensors (``bayestorch.mcmc.compiled.pack``).
    """
    chains, dtype, device = energy0.shape[0], energy0.dtype, energy0.device
    level = torch.arange(max_tree_depth, device=device)
    block = (1 << level) - 1  # leaf & block: the leaf's position in its aligned 2^level block
    rows0 = torch.zeros(1, dtype=torch.long, device=device)
    sub, junction = _begin(
        traj, _log_uniforms(key, rows0, chains, dtype)[0], step_size, inverse_mass_matrix,
        start, end, dense=dense,
    )  # fmt: skip
    leaves, spec = tree_flatten((traj, sub, junction))
    packed, layout = pack(leaves)
    carried = len(packed) + 3

    def cond(leaf, depth, going, *rest):
        return going.clone()  # a loop's condition must not alias its input

    def body(*args):
        leaf, depth, going, *packed = args[:carried]
        key, level, block, energy0, step_size, inverse_mass_matrix = args[carried:]
        traj, sub, junction = tree_unflatten(unpack(packed, layout), spec)
        first = _doubling_offset(depth)
        rows = torch.stack([first + 2 + leaf, first + 1, first + 2 + (1 << depth)])
        log_u = _log_uniforms(key, rows, chains, dtype)  # leaf, merge, next direction
        position = leaf & block
        writes_end = position == block
        levels = torch.stack([position == 0, writes_end, writes_end & (level > 0)])
        sub, any_live = _leaf(
            sub, junction, energy0, inverse_mass_matrix, log_u[0], levels,
            log_prob_fn=log_prob_fn, value_and_grad=value_and_grad, dense=dense,
            divergence_threshold=divergence_threshold,
        )  # fmt: skip
        merged = _merge_begin(
            traj, sub, junction, log_u[1], log_u[2], step_size, inverse_mass_matrix, dense=dense
        )
        next_traj, any_going, next_sub, next_junction = merged
        complete = (leaf + 1 == (1 << depth)) | ~any_live
        now = tree_flatten((traj, sub, junction))[0]
        then = tree_flatten((next_traj, next_sub, next_junction))[0]
        # (The checkpoint buffers pass through a merge: the same tensors, no selection.)
        kept = [a if b is a else torch.where(complete, b, a) for a, b in zip(now, then)]
        packed, _ = pack(kept, copy=False)
        going = torch.where(complete, any_going & (depth + 1 < max_tree_depth), going)
        leaf = torch.where(complete, 0, leaf + 1)
        return (leaf, depth + complete.long(), going, *packed)

    zero = torch.zeros((), dtype=torch.long, device=device)
    going = torch.ones((), dtype=torch.bool, device=device)
    out = loop(
        cond, body, (zero, zero.clone(), going, *packed),
        (key, level, block, energy0, step_size, inverse_mass_matrix),
    )  # fmt: skip
    traj, _, _ = tree_unflatten(unpack(out[3:], layout), spec)
    return traj


class NUTSFunctions:
    """A NUTS transition's doublings for one log density, eager or compiled (one graph call
    per transition when compiled; see ``bayestorch.mcmc.compiled.TrajectoryFunction``)."""

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        *,
        dense: bool,
        max_tree_depth: int = 10,
        compile: bool = False,
        divergence_threshold: float = DIVERGENCE_THRESHOLD,
    ) -> None:
        self.max_tree_depth = max_tree_depth
        self.transition = TrajectoryFunction(
            _transition,
            log_prob_fn,
            compile,
            dense=dense,
            divergence_threshold=divergence_threshold,
            max_tree_depth=max_tree_depth,
        )

    @property
    def compiled(self) -> bool:
        return self.transition.compiled


def nuts_step(
    state: HMCState,
    log_prob_fn: LogProbFn,
    *,
    step_size: Tensor,
    inverse_mass_matrix: Tensor,
    dense: bool = False,
    factor: Tensor | None = None,
    max_tree_depth: int = 10,
    generator: torch.Generator | None = None,
    divergence_threshold: float = DIVERGENCE_THRESHOLD,
    sync_every: int | None = None,
    functions: NUTSFunctions | None = None,
) -> tuple[HMCState, NUTSInfo]:
    """One NUTS transition for every chain.

    Args:
        step_size: ``()`` or ``(chains,)``.
        max_tree_depth: at most ``2^max_tree_depth - 1`` leapfrog steps per transition.
        sync_every: how often (in leapfrog steps) the eager path asks the device whether any
            chain is still building its subtree, to stop early; default every step on CPU
            (free) and every 16 on accelerators, so the trajectory does not wait on the host
            at every step. Results do not depend on it.
        functions: ``NUTSFunctions`` (e.g. compiled) built for ``log_prob_fn`` and
            ``max_tree_depth``; eager ones by default.

    Randomness: the momentum, then one key (``bayestorch.utils.random.rand_key``) from which
    every uniform of the transition is hashed (``counter_uniforms``: direction, merge and one
    per leaf for each doubling), so the eager and the compiled paths use the same draws.

    Shape:
        state fields ``(chains, ...)``; ``NUTSInfo`` fields ``(chains,)``.
    """
    x = state.position
    chains = x.shape[0]
    like = dict(dtype=x.dtype, device=x.device)
    if factor is None:
        factor = momentum_factor(inverse_mass_matrix, dense)
    if sync_every is None:
        sync_every = 1 if x.device.type == "cpu" else 16
    if functions is None:
        functions = NUTSFunctions(
            log_prob_fn,
            dense=dense,
            max_tree_depth=max_tree_depth,
            divergence_threshold=divergence_threshold,
        )
    elif functions.max_tree_depth != max_tree_depth:
        raise ValueError(
            f"functions were built for max_tree_depth={functions.max_tree_depth}, "
            f"not {max_tree_depth}"
        )
    eps = torch.empty(chains, **like).copy_(step_size)  # stride 1 even for one chain
    momentum = sample_momentum(factor, x, dense, generator)
    key = rand_key(generator, x.device)
    return functions.transition(state, momentum, key, eps, inverse_mass_matrix, sync_every)


class NUTS(EuclideanKernel):
    """The No-U-Turn Sampler (multinomial, generalised U-turn), many chains as one batch.

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        max_tree_depth: at most ``2^max_tree_depth - 1`` leapfrog steps per transition.
        step_size, mass_matrix, target_accept, adapt_per_chain, ...: see ``EuclideanKernel``.

    Shape:
        positions ``(chains, dim)``; ``NUTSInfo`` fields ``(chains,)``.

    Example::

        >>> kernel = NUTS(lambda x: -0.5 * (x**2).sum(-1), step_size=0.5)
        >>> state = kernel.init(torch.zeros(4, 2))
        >>> state, info = kernel.step(state)
    """

    def __init__(self, log_prob_fn: LogProbFn, max_tree_depth: int = 10, **kwargs) -> None:
        super().__init__(log_prob_fn, **kwargs)
        if not 1 <= int(max_tree_depth) <= 20:
            raise ValueError(f"max_tree_depth must be an integer in [1, 20], got {max_tree_depth}")
        self.max_tree_depth = int(max_tree_depth)

    def step(
        self, state: HMCState, generator: torch.Generator | None = None
    ) -> tuple[HMCState, NUTSInfo]:
        return nuts_step(
            state,
            self.log_prob_fn,
            step_size=self.step_size,
            inverse_mass_matrix=self.inverse_mass_matrix,
            dense=self.dense,
            factor=self.momentum_factor,
            max_tree_depth=self.max_tree_depth,
            generator=generator,
            functions=self._trajectory_functions(
                lambda compiled: NUTSFunctions(
                    self.log_prob_fn,
                    dense=self.dense,
                    max_tree_depth=self.max_tree_depth,
                    compile=compiled,
                )
            ),
        )
