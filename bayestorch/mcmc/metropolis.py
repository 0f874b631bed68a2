"""Random-walk and independence Metropolis–Hastings, many chains as one batch.

Talk section "MCMC": a proposal ``x' ~ q(. | x)`` is accepted with probability
``min(1, p(x') q(x | x') / (p(x) q(x' | x)))``. For a symmetric random walk the ``q``
terms cancel (Metropolis et al. 1953); for an independence proposal ``q(x') `` they do
not, and leaving out this Hastings (1970) correction samples ``p q`` instead of ``p``.

``rwm_step`` / ``imh_step`` are the functional core; ``RandomWalkMetropolis`` (whose
proposal scale is a buffer, tuned during warm-up by dual averaging toward a target
acceptance rate, pooled or per chain) and ``IndependentMetropolis`` the module shells.

References:
    Metropolis, Rosenbluth, Rosenbluth, Teller, Teller (1953). Equation of state
    calculations by fast computing machines. J. Chem. Phys. 21(6).
    Hastings (1970). Monte Carlo sampling methods using Markov chains and their
    applications. Biometrika 57(1).
    Roberts, Gelman, Gilks (1997). Weak convergence and optimal scaling of random walk
    Metropolis algorithms. Ann. Appl. Probab. 7(1) (the 0.234 target; 0.44 in 1-d).
    Tierney (1994). Markov chains for exploring posterior distributions. Ann. Statist.
    22(4) (independence samplers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bayestorch.mc.importance import Proposal, as_proposal
from bayestorch.mcmc.adaptation.dual_averaging import (
    DualAveragingState,
    da_final,
    da_init,
    da_update,
)
from bayestorch.mcmc.base import Kernel, check_initial_log_prob, check_position
from bayestorch.mcmc.proposal import mh_accept
from bayestorch.utils.autograd import LogProbFn, evaluate_log_prob

__all__ = [
    "IMHState",
    "IndependentMetropolis",
    "MetropolisInfo",
    "RWMState",
    "RandomWalkMetropolis",
    "imh_init",
    "imh_step",
    "rwm_init",
    "rwm_step",
]


class RWMState(NamedTuple):
    """Shape: ``position`` ``(chains, dim)``; ``log_prob`` ``(chains,)``."""

    position: Tensor
    log_prob: Tensor


class IMHState(NamedTuple):
    """Shape: ``position`` ``(chains, dim)``; ``log_prob``, ``proposal_log_prob`` ``(chains,)``.

    ``proposal_log_prob`` caches ``log q(position)`` for the Hastings ratio.
    """

    position: Tensor
    log_prob: Tensor
    proposal_log_prob: Tensor


class MetropolisInfo(NamedTuple):
    """Per-transition diagnostics; every field ``(chains,)``."""

    accept_prob: Tensor
    is_accepted: Tensor


def rwm_init(position: Tensor, log_prob_fn: LogProbFn) -> RWMState:
    """Evaluate (and check) the log density at the start.

    Shape:
        ``position``: ``(chains, dim)``; state fields ``(chains, ...)``.
    """
    check_position(position)
    log_prob = evaluate_log_prob(log_prob_fn, position)
    check_initial_log_prob(log_prob, position)
    return RWMState(position.detach(), log_prob)


def rwm_step(
    state: RWMState,
    log_prob_fn: LogProbFn,
    *,
    scale: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[RWMState, MetropolisInfo]:
    """One Gaussian random-walk Metropolis transition ``x' = x + scale * N(0, I)``.

    One log-density evaluation, no host synchronisation; a NaN at the proposal rejects.

    Args:
        scale: standard deviations of the Gaussian increment, broadcastable to
            ``(chains, dim)``: ``()`` shared, ``(chains, 1)`` per chain, ``(dim,)`` per
            coordinate, ``(chains, dim)`` both.

    Shape:
        state fields ``(chains, ...)``; ``MetropolisInfo`` fields ``(chains,)``.

    References:
        Metropolis et al. (1953).
    """
    position = state.position
    noise = torch.randn(
        position.shape, generator=generator, device=position.device, dtype=position.dtype
    )
    proposed_position = position + scale * noise
    proposed = RWMState(proposed_position, evaluate_log_prob(log_prob_fn, proposed_position))
    new_state, is_accepted, accept_prob = mh_accept(
        proposed.log_prob - state.log_prob, state, proposed, generator
    )
    return new_state, MetropolisInfo(accept_prob, is_accepted)


def imh_init(position: Tensor, log_prob_fn: LogProbFn, proposal_log_prob_fn: LogProbFn) -> IMHState:
    """Evaluate (and check) the target and proposal log densities at the start.

    Shape:
        ``position``: ``(chains, dim)``; state fields ``(chains, ...)``.
    """
    check_position(position)
    log_prob = evaluate_log_prob(log_prob_fn, position)
    check_initial_log_prob(log_prob, position)
    proposal_log_prob = evaluate_log_prob(proposal_log_prob_fn, position, guard=False)
    if not bool(torch.isfinite(proposal_log_prob).all()):
        raise ValueError(
            "the proposal's log density is not finite at the initial position: its support "
            "must cover the target's"
        )
    return IMHState(position.detach(), log_prob, proposal_log_prob)


def imh_step(
    state: IMHState,
    log_prob_fn: LogProbFn,
    proposal_sample_fn: Callable[..., Tensor],
    proposal_log_prob_fn: LogProbFn,
    *,
    generator: torch.Generator | None = None,
) -> tuple[IMHState, MetropolisInfo]:
    """One independence Metropolis–Hastings transition with proposal ``q``.

    The log acceptance ratio is ``[log p(x') - log q(x')] - [log p(x) - log q(x)]``: the
    importance weights of proposal and current point (Hastings correction).

    Args:
        proposal_sample_fn: ``(num, generator) -> (num, dim)`` draws of ``q``.
        proposal_log_prob_fn: ``(num, dim) -> (num,)`` log density of ``q``.

    Shape:
        state fields ``(chains, ...)``; ``MetropolisInfo`` fields ``(chains,)``.

    References:
        Hastings (1970); Tierney (1994).
    """
    position = state.position
    chains = position.shape[0]
    proposed_position = proposal_sample_fn(chains, generator)
    proposed_position = proposed_position.reshape(chains, -1).to(position.dtype)
    if proposed_position.shape != position.shape:
        raise ValueError(
            f"the proposal must draw positions of shape (chains, dim) = {tuple(position.shape)}, "
            f"got {tuple(proposed_position.shape)}"
        )
    proposed = IMHState(
        proposed_position,
        evaluate_log_prob(log_prob_fn, proposed_position),
        evaluate_log_prob(proposal_log_prob_fn, proposed_position, guard=False).to(position.dtype),
    )
    log_ratio = (proposed.log_prob - proposed.proposal_log_prob) - (
        state.log_prob - state.proposal_log_prob
    )
    new_state, is_accepted, accept_prob = mh_accept(log_ratio, state, proposed, generator)
    return new_state, MetropolisInfo(accept_prob, is_accepted)


class RandomWalkMetropolis(Kernel):
    """Gaussian random-walk Metropolis with a proposal scale tuned during warm-up.

    During warm-up the log scale follows Nesterov dual averaging (the same block that
    tunes HMC's step size) toward ``target_accept``; at the end the averaged iterate is
    kept. ``adapt_per_chain`` tunes one scale per chain, otherwise the acceptance rate is
    pooled over chains.

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        scale: initial standard deviation of the increment: a number, or a ``(dim,)``
            tensor of per-coordinate scales (adaptation then multiplies all of them).
        target_accept: the acceptance rate warm-up aims for; default 0.44 in 1-d and
            0.234 otherwise (Roberts, Gelman & Gilks 1997).
        adapt_per_chain: one scale per chain instead of one pooled scale.
        adapt_scale: switch the warm-up adaptation off.

    Shape:
        positions ``(chains, dim)``; ``scale`` buffer broadcastable to ``(chains, dim)``:
        ``()``, ``(dim,)``, and after per-chain warm-up ``(chains, 1)`` or ``(chains, dim)``.

    References:
        Metropolis et al. (1953); Roberts, Gelman, Gilks (1997); Hoffman & Gelman (2014)
        for dual averaging.

    Example::

        >>> kernel = RandomWalkMetropolis(lambda x: -0.5 * (x**2).sum(-1), scale=1.0)
        >>> state = kernel.init(torch.zeros(8, 2))
        >>> state, info = kernel.step(state, generator=torch.Generator().manual_seed(0))
        >>> info.accept_prob.shape
        torch.Size([8])
    """

    def __init__(
        self,
        log_prob_fn: LogProbFn,
        scale: float | Tensor = 1.0,
        *,
        target_accept: float | None = None,
        adapt_per_chain: bool = False,
        adapt_scale: bool = True,
    ) -> None:
        super().__init__(log_prob_fn)
        scale = torch.as_tensor(scale, dtype=torch.get_default_dtype()).clone()
        if scale.dim() > 1 or not bool((scale > 0).all()) or not bool(scale.isfinite().all()):
            raise ValueError(
                f"scale must be a positive finite number or (dim,) tensor, got shape "
                f"{tuple(scale.shape)} with values {scale.flatten()[:5].tolist()}"
            )
        if target_accept is not None and not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept}")
        self.target_accept = target_accept
        self.adapt_per_chain = adapt_per_chain
        self.adapt_scale = adapt_scale
        self.register_buffer("scale", scale)
        # The per-coordinate shape of the initial scale, kept when adaptation multiplies it.
        self.register_buffer("_base_scale", scale.clone())

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> RWMState:
        """Evaluate ``log_prob_fn`` at ``position`` ``(chains, dim)``."""
        state = rwm_init(position, self.log_prob_fn)
        try:
            torch.broadcast_shapes(self.scale.shape, position.shape)
        except RuntimeError:
            raise ValueError(
                f"scale of shape {tuple(self.scale.shape)} does not broadcast to positions of "
                f"shape (chains, dim) = {tuple(position.shape)}"
            ) from None
        self.scale = self.scale.to(dtype=position.dtype, device=position.device)
        self._base_scale = self._base_scale.to(dtype=position.dtype, device=position.device)
        return state

    def step(
        self, state: RWMState, generator: torch.Generator | None = None
    ) -> tuple[RWMState, MetropolisInfo]:
        return rwm_step(state, self.log_prob_fn, scale=self.scale, generator=generator)

    # -- warm-up: dual averaging on the log of a scalar multiplier of the base scale -----
    def _target(self, dim: int) -> float:
        if self.target_accept is not None:
            return self.target_accept
        return 0.44 if dim == 1 else 0.234

    def _scale_from(self, multiplier: Tensor) -> Tensor:
        # () pooled, or (chains, 1) / (chains, dim) per chain.
        return (multiplier[:, None] if multiplier.dim() else multiplier) * self._base_scale

    def warmup_init(self, state: RWMState, num_warmup: int) -> DualAveragingState | None:
        if not self.adapt_scale:
            return None
        self._dim = state.position.shape[1]
        like = dict(dtype=state.log_prob.dtype, device=state.log_prob.device)
        multiplier = torch.ones(state.position.shape[0] if self.adapt_per_chain else (), **like)
        self.scale = self._scale_from(multiplier)
        return da_init(multiplier)

    def warmup_update(
        self,
        adapt_state: DualAveragingState | None,
        state: RWMState,
        info,
        iteration: int,
        generator: torch.Generator | None = None,
    ) -> DualAveragingState | None:
        if adapt_state is None:
            return None
        accept = torch.nan_to_num(info.accept_prob, nan=0.0)
        if not self.adapt_per_chain:
            accept = accept.mean()
        adapt_state = da_update(adapt_state, accept, target=self._target(self._dim))
        self.scale = self._scale_from(adapt_state.log_step_size.exp())
        return adapt_state

    def warmup_finalize(self, adapt_state: DualAveragingState | None) -> None:
        if adapt_state is not None and bool((adapt_state.count > 0).all()):
            self.scale = self._scale_from(da_final(adapt_state))

    def tuning_summary(self) -> dict[str, Tensor]:
        return {"scale": self.scale.mean()}


class IndependentMetropolis(Kernel):
    """Independence Metropolis–Hastings: proposals drawn from a fixed ``q``, ignoring ``x``.

    Exact for any proposal whose support covers the target's; efficient when ``q`` is
    close to the target with heavier tails (the chain is uniformly ergodic when
    ``p / q`` is bounded, Tierney 1994).

    Args:
        log_prob_fn: ``(chains, dim) -> (chains,)``.
        proposal: a torch ``Distribution`` whose draws reshape to ``(dim,)`` (e.g.
            ``MultivariateNormal(loc (dim,), cov)``, ``Normal(zeros(dim), 1)``, or a
            univariate family for ``dim = 1``), or a pair ``(sample_fn(num, generator) ->
            (num, dim), log_prob_fn((num, dim)) -> (num,))``.

    Shape:
        positions ``(chains, dim)``.

    References:
        Hastings (1970); Tierney (1994).

    Example::

        >>> from torch.distributions import Normal
        >>> kernel = IndependentMetropolis(lambda x: -0.5 * (x**2).sum(-1), Normal(0.0, 2.0))
        >>> state = kernel.init(torch.zeros(8, 1))
        >>> state, info = kernel.step(state, generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, log_prob_fn: LogProbFn, proposal: Proposal) -> None:
        super().__init__(log_prob_fn)
        sample_fn, proposal_log_prob = as_proposal(proposal)
        # Plain attributes: a proposal is not a tuning value (state_dict stays empty).
        self.__dict__["proposal_sample_fn"] = sample_fn
        self.__dict__["proposal_log_prob_fn"] = proposal_log_prob

    def init(self, position: Tensor, generator: torch.Generator | None = None) -> IMHState:
        """Evaluate target and proposal log densities at ``position`` ``(chains, dim)``."""
        return imh_init(position, self.log_prob_fn, self.proposal_log_prob_fn)

    def step(
        self, state: IMHState, generator: torch.Generator | None = None
    ) -> tuple[IMHState, MetropolisInfo]:
        return imh_step(
            state,
            self.log_prob_fn,
            self.proposal_sample_fn,
            self.proposal_log_prob_fn,
            generator=generator,
        )
