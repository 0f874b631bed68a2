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

from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mcmc.hmc import DIVERGENCE_THRESHOLD, EuclideanKernel, HMCState
from bayestorch.mcmc.integrators import IntegratorState, leapfrog
from bayestorch.mcmc.metrics import kinetic_energy, momentum_factor, sample_momentum, velocity
from bayestorch.mcmc.proposal import select
from bayestorch.utils.autograd import LogProbFn
from bayestorch.utils.random import rand_open01

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
    """Generalised U-turn: true unless both ends still move along the momentum sum."""
    return ~(((psharp_left * rho).sum(-1) > 0) & ((psharp_right * rho).sum(-1) > 0))


def _trailing(leaf: int, bit: int, cap: int) -> int:
    """Number of trailing ``bit``s of ``leaf`` (all of them for leaf 0), capped below ``cap``."""
    count = 0
    while count < cap - 1 and (leaf >> count) & 1 == bit:
        count += 1
    return count


def _block_turning(
    ends, psharp, rho, start_psharp, start_momentum, start_rho_before, end_psharp, end_momentum
) -> Tensor:
    """U-turn checks of the ``ends`` nested blocks (sizes 2, 4, …, 2^ends) ending at this leaf.

    A block ``[s, n]`` of ``2^m`` leaves merges halves ``[s, mid - 1]`` and ``[mid, n]``.
    Besides the generalised criterion over the block, Stan checks each half extended by the
    neighbouring leaf of the other: ``[s, mid]`` and ``[mid - 1, n]``. All ``ends`` blocks
    are checked in one batched operation (leading dim = block level).
    """
    m, h = slice(1, ends + 1), slice(0, ends)
    turning = _is_turning(start_psharp[m], psharp, rho - start_rho_before[m])
    left_plus = start_rho_before[h] + start_momentum[h] - start_rho_before[m]
    turning |= _is_turning(start_psharp[m], start_psharp[h], left_plus)
    right_plus = rho - start_rho_before[h] + end_momentum[h]
    turning |= _is_turning(end_psharp[h], psharp, right_plus)
    return turning.any(0)


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
) -> tuple[HMCState, NUTSInfo]:
    """One NUTS transition for every chain.

    Args:
        step_size: ``()`` or ``(chains,)``.
        max_tree_depth: at most ``2^max_tree_depth - 1`` leapfrog steps per transition.
        sync_every: how often (in leapfrog steps) to ask the device whether any chain is still
            building its subtree, to stop early; default every step on CPU (free) and every 16
            on accelerators, so the trajectory does not wait on the host at every step.

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
    eps = step_size.expand(chains) if step_size.dim() == 0 else step_size

    def uniform() -> Tensor:
        return rand_open01((chains,), generator=generator, **like)

    p0 = sample_momentum(factor, x, dense, generator)
    energy0 = -state.log_prob + kinetic_energy(p0, inverse_mass_matrix, dense)
    origin = IntegratorState(x, p0, state.log_prob, state.log_prob_grad)
    left = right = origin
    psharp_left = psharp_right = velocity(p0, inverse_mass_matrix, dense)
    rho = p0
    proposal, proposal_energy = state, energy0
    log_weight = torch.zeros(chains, **like)  # log sum over the trajectory of exp(-ΔH)
    done = torch.zeros(chains, dtype=torch.bool, device=x.device)
    diverged = torch.zeros_like(done)
    depth = torch.zeros(chains, dtype=torch.long, device=x.device)
    num_steps = torch.zeros_like(depth)
    sum_accept = torch.zeros(chains, **like)
    # For each block size 2^i: p#, p and the momentum sum before it at the latest leaf that
    # starts an aligned block of that size, and p#, p at the latest leaf that ends one.
    start_psharp = torch.zeros((max_tree_depth, chains, x.shape[1]), **like)
    start_momentum = torch.zeros_like(start_psharp)
    start_rho_before = torch.zeros_like(start_psharp)
    end_psharp = torch.zeros_like(start_psharp)
    end_momentum = torch.zeros_like(start_psharp)

    for level in range(max_tree_depth):
        if level > 0 and not bool((~done).any()):
            break
        active = ~done
        forward = uniform() < 0.5
        signed_eps = torch.where(forward, eps, -eps)
        current = select(forward, right, left)
        # The old trajectory's end where the subtree attaches, and the opposite end.
        join_momentum = current.momentum
        join_psharp = torch.where(forward.unsqueeze(-1), psharp_right, psharp_left)
        outer_psharp = torch.where(forward.unsqueeze(-1), psharp_left, psharp_right)
        sub_proposal, sub_energy = proposal, proposal_energy
        sub_log_weight = torch.full((chains,), -torch.inf, **like)
        sub_rho = torch.zeros_like(rho)
        sub_done = torch.zeros_like(done)
        sub_diverged = torch.zeros_like(done)

        for leaf in range(2**level):
            live = active & ~sub_done
            new = leapfrog(current, log_prob_fn, signed_eps, inverse_mass_matrix, dense)
            # Values of chains that are not live are never used (masked at the merge), so
            # only the state that must stay finite is selected.
            momentum = new.momentum
            psharp = velocity(momentum, inverse_mass_matrix, dense)
            energy = 0.5 * (momentum * psharp).sum(-1) - new.log_prob
            delta = energy - energy0
            is_div = live & ~(delta <= divergence_threshold)  # NaN counts as divergent
            ok = live & ~is_div
            # Never step on from a NaN point: a diverged chain keeps its last valid leaf.
            current = select(ok, new, current)
            leaf_log_weight = torch.where(ok, -delta, -torch.inf)
            # Stan's acceptance statistic: min(1, e^{-ΔH}) per new leaf (0 if divergent).
            sum_accept = sum_accept + leaf_log_weight.clamp(max=0.0).exp()
            num_steps = num_steps + live.long()

            # Uniform progressive sampling within the subtree (non-ok leaves weigh e^-inf).
            combined = torch.logaddexp(sub_log_weight, leaf_log_weight)
            take = uniform().log() < leaf_log_weight - combined
            leaf_state = HMCState(new.position, new.log_prob, new.log_prob_grad)
            sub_proposal = select(take, leaf_state, sub_proposal)
            sub_energy = torch.where(take, energy, sub_energy)
            sub_log_weight = combined
            rho_before = sub_rho
            sub_rho = sub_rho + momentum
            if leaf == 0:
                first_momentum, first_psharp = momentum, psharp
            starts = _trailing(leaf, 0, max_tree_depth) + 1  # blocks that start at this leaf
            start_psharp[:starts] = psharp
            start_momentum[:starts] = momentum
            start_rho_before[:starts] = rho_before
            ends = _trailing(leaf, 1, max_tree_depth)  # blocks of >= 2 leaves ending here
            if ends:
                sub_done = sub_done | (
                    ok
                    & _block_turning(
                        ends,
                        psharp,
                        sub_rho,
                        start_psharp,
                        start_momentum,
                        start_rho_before,
                        end_psharp,
                        end_momentum,
                    )
                )
            end_psharp[: ends + 1] = psharp
            end_momentum[: ends + 1] = momentum
            sub_done = sub_done | is_div
            sub_diverged = sub_diverged | is_div
            if (leaf + 1) % sync_every == 0 and not bool((active & ~sub_done).any()):
                break

        # Merge the subtree into the trajectory where it is valid (no inner U-turn or divergence).
        valid = active & ~sub_done
        take = valid & (uniform().log() < sub_log_weight - log_weight)
        proposal = select(take, sub_proposal, proposal)
        proposal_energy = torch.where(take, sub_energy, proposal_energy)
        log_weight = torch.where(valid, torch.logaddexp(log_weight, sub_log_weight), log_weight)
        right = select(valid & forward, current, right)
        left = select(valid & ~forward, current, left)
        psharp_right = torch.where((valid & forward).unsqueeze(-1), psharp, psharp_right)
        psharp_left = torch.where((valid & ~forward).unsqueeze(-1), psharp, psharp_left)
        rho_old = rho
        rho = rho + torch.where(valid.unsqueeze(-1), sub_rho, 0.0)
        depth = torch.where(active, level + 1, depth)
        diverged = diverged | (active & sub_diverged)
        # Stan's extra checks across the junction: the old trajectory extended by the first
        # new leaf, and the subtree extended by the old end it attaches to. Without them a
        # trajectory on a Gaussian can circle to the maximum depth (stan-dev/stan#2800).
        turning = _is_turning(psharp_left, psharp_right, rho)
        turning |= _is_turning(outer_psharp, first_psharp, rho_old + first_momentum)
        turning |= _is_turning(join_psharp, psharp, sub_rho + join_momentum)
        done = done | sub_done | (valid & turning)

    accept_prob = sum_accept / num_steps.clamp_min(1)
    moved = (proposal.position != x).any(-1)
    info = NUTSInfo(accept_prob, moved, diverged, proposal_energy, num_steps, depth)
    return proposal, info


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
        )
