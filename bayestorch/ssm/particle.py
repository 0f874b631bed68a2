"""Bootstrap particle filter (sequential Monte Carlo) for any state-space model.

The model is given by three callables: a sampler of ``x_0``, a sampler of the transition
``x_t | x_{t-1}`` and the observation log-density ``log p(y_t | x_t)``. Particles are
propagated through the transition (the bootstrap proposal), weighted by the observation
density, and resampled when the effective sample size drops below a threshold. The same
convention as the Kalman filter: ``x_0`` is the initial state, the first step is
predict-then-update, and ``means[:, t]`` estimates ``E[x_{t+1} | y_1..y_{t+1}]``.

Runs are batched: ``y`` is ``(batch, T, p)`` and particles are ``(batch, N, d)``, so many
independent sequences (or many independent runs on one sequence) share each tensor operation.

References:
    Gordon, Salmond & Smith (1993). Novel approach to nonlinear/non-Gaussian Bayesian state
    estimation. IEE Proceedings F 140(2).
    Doucet & Johansen (2009). A tutorial on particle filtering and smoothing: fifteen years
    later. (Adaptive resampling and the evidence estimate, sections 3.5 and 4.)
    Del Moral (2004). Feynman-Kac Formulae (unbiasedness of the evidence estimate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bayestorch.mc.resampling import RESAMPLING_SCHEMES
from bayestorch.utils.chunking import check_chunk_size, chunk_slices, resolve_chunk_size

__all__ = ["ParticleFilter", "ParticleFilterResult", "particle_filter"]

InitSampleFn = Callable[[tuple[int, int], "torch.Generator | None"], Tensor]
TransitionSampleFn = Callable[[Tensor, int, "torch.Generator | None"], Tensor]
ObservationLogProbFn = Callable[[Tensor, Tensor, int], Tensor]

# Working memory budgeted per particle for the default chunk (a few d-dimensional states,
# weights and resampling indices): DEFAULT_MAX_MEMORY / 64 B = 2^22 particles.
_BYTES_PER_PARTICLE = 64


class ParticleFilterResult(NamedTuple):
    """Output of :func:`particle_filter`.

    Attributes:
        means: ``(batch, T, d)`` weighted filtered means.
        covs: ``(batch, T, d, d)`` weighted filtered covariances.
        log_evidence: ``(batch,)`` the estimate of ``log p(y_1..y_T)`` (its exponential is
            unbiased for the evidence).
        ess: ``(batch, T)`` effective sample size after weighting, before resampling.
        resampled: ``(batch, T)`` bool, whether step ``t`` resampled.
        particles: ``(batch, N, d)`` the final particles.
        log_weights: ``(batch, N)`` their normalised log-weights.
    """

    means: Tensor
    covs: Tensor
    log_evidence: Tensor
    ess: Tensor
    resampled: Tensor
    particles: Tensor
    log_weights: Tensor


def particle_filter(
    y: Tensor,
    init_sample_fn: InitSampleFn,
    transition_sample_fn: TransitionSampleFn,
    observation_log_prob_fn: ObservationLogProbFn,
    num_particles: int,
    *,
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> ParticleFilterResult:
    """Run a bootstrap particle filter over a batch of observation sequences.

    Each step: propagate every particle through ``transition_sample_fn``; add
    ``observation_log_prob_fn`` to its log-weight; add ``log sum_i W_i p(y_t | x_t^i)`` (``W``
    the normalised previous weights) to the log-evidence; then resample the sequences whose
    ESS is below ``ess_threshold * N`` (all of them when ``ess_threshold >= 1``). Resampling is
    decided per sequence with a mask, so a batch never splits.

    Args:
        y: observations; a row that is all NaN is missing (no weighting at that step).
        init_sample_fn: ``(shape, generator) -> x_0`` with ``shape = (batch, N)``.
        transition_sample_fn: ``(x_{t-1}, t, generator) -> x_t`` (``t`` 0-based).
        observation_log_prob_fn: ``(y_t, x_t, t) -> log p(y_t | x_t)``, with ``y_t`` of shape
            ``(batch, p)`` and ``x_t`` of shape ``(batch, N, d)``, returning ``(batch, N)``.
        num_particles: ``N``.
        resampling: ``"multinomial"``, ``"stratified"``, ``"systematic"`` or ``"residual"``.
        ess_threshold: resample when ``ESS < ess_threshold * N``; ``>= 1`` resamples always,
            ``0`` never.
        generator: drives every draw (initial, transition, resampling).
        chunk_size: sequences filtered at once. The sequences are independent, so they are
            filtered chunk after chunk (the same law; identical draws when one chunk holds
            them all), and peak memory is that of one chunk's ``chunk_size * N`` particles
            plus the outputs. Default: as many sequences as keep a chunk under about
            ``2^22`` particles (all of them in most uses). The callables then see
            ``batch = chunk`` rows (``y_t`` of the chunk): they must treat rows
            independently, without per-sequence tensors of the whole batch.

    Returns:
        :class:`ParticleFilterResult`.

    Shape:
        ``y``: ``(batch, T, p)``; particles ``(batch, N, d)``.

    References:
        Gordon, Salmond & Smith (1993); Doucet & Johansen (2009), Algorithm "SIR with
        adaptive resampling".
    """
    if not isinstance(y, Tensor) or y.dim() != 3:
        raise ValueError(
            f"y must have shape (batch, T, obs_dim), got {tuple(getattr(y, 'shape', ()))}"
        )
    if resampling not in RESAMPLING_SCHEMES:
        raise ValueError(
            f"resampling must be one of {sorted(RESAMPLING_SCHEMES)}, got {resampling!r}"
        )
    if int(num_particles) < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    if not ess_threshold >= 0:
        raise ValueError(f"ess_threshold must be >= 0, got {ess_threshold}")
    check_chunk_size(chunk_size)
    num = int(num_particles)
    batch = y.shape[0]
    chunk = resolve_chunk_size(chunk_size, _BYTES_PER_PARTICLE * num, batch)
    settings = (init_sample_fn, transition_sample_fn, observation_log_prob_fn, num)
    if chunk >= batch:
        return _filter_chunk(y, *settings, RESAMPLING_SCHEMES[resampling], ess_threshold, generator)
    out = None
    for rows in chunk_slices(batch, chunk):
        part = _filter_chunk(
            y[rows], *settings, RESAMPLING_SCHEMES[resampling], ess_threshold, generator
        )
        if out is None:  # written chunk by chunk: no second copy of the outputs
            out = ParticleFilterResult(
                *(field.new_empty((batch, *field.shape[1:])) for field in part)
            )
        for whole, field in zip(out, part, strict=True):
            whole[rows] = field
    return out


def _filter_chunk(
    y: Tensor,
    init_sample_fn: InitSampleFn,
    transition_sample_fn: TransitionSampleFn,
    observation_log_prob_fn: ObservationLogProbFn,
    num: int,
    resample_fn,
    ess_threshold: float,
    generator: torch.Generator | None,
) -> ParticleFilterResult:
    """:func:`particle_filter` on the sequences of ``y``, all at once."""
    batch, steps, _ = y.shape
    x = init_sample_fn((batch, num), generator)
    if x.dim() != 3 or tuple(x.shape[:2]) != (batch, num):
        raise ValueError(
            f"init_sample_fn must return particles of shape (batch={batch}, N={num}, d), got "
            f"{tuple(x.shape)}"
        )
    dtype = x.dtype
    log_weights = torch.full((batch, num), -math.log(num), dtype=dtype, device=x.device)
    log_evidence = torch.zeros(batch, dtype=dtype, device=x.device)
    row_observed = ~torch.isnan(y).all(-1)  # (batch, T)
    y_filled = torch.nan_to_num(y, nan=0.0)
    means, covs, ess_all, resampled_all = [], [], [], []
    for t in range(steps):
        x = transition_sample_fn(x, t, generator)
        log_lik = observation_log_prob_fn(y_filled[:, t], x, t)
        if tuple(log_lik.shape) != (batch, num):
            raise ValueError(
                f"observation_log_prob_fn must return shape (batch={batch}, N={num}), got "
                f"{tuple(log_lik.shape)}"
            )
        log_lik = torch.where(row_observed[:, t, None], log_lik, torch.zeros_like(log_lik))
        unnormalised = log_weights + log_lik
        increment = torch.logsumexp(unnormalised, -1)
        log_evidence = log_evidence + increment
        log_weights = unnormalised - increment[:, None]
        weights = log_weights.exp()
        mean = (weights[..., None] * x).sum(1)
        centred = x - mean[:, None]
        covs.append(torch.einsum("bn,bni,bnj->bij", weights, centred, centred))
        means.append(mean)
        ess = 1.0 / weights.square().sum(-1)
        ess_all.append(ess)
        if ess_threshold >= 1:
            do_resample = torch.ones(batch, dtype=torch.bool, device=x.device)
        else:
            do_resample = ess < ess_threshold * num
        if ess_threshold > 0:
            ancestors = resample_fn(weights, num, generator=generator)
            chosen = torch.gather(x, 1, ancestors[..., None].expand(-1, -1, x.shape[-1]))
            x = torch.where(do_resample[:, None, None], chosen, x)
            log_weights = torch.where(
                do_resample[:, None], torch.full_like(log_weights, -math.log(num)), log_weights
            )
        resampled_all.append(do_resample)
    return ParticleFilterResult(
        torch.stack(means, 1),
        torch.stack(covs, 1),
        log_evidence,
        torch.stack(ess_all, 1),
        torch.stack(resampled_all, 1),
        x,
        log_weights,
    )


class ParticleFilter(nn.Module):
    """Bootstrap particle filter for a model given by samplers and an observation density.

    A thin shell over :func:`particle_filter` that holds the model callables and settings.
    Neural model pieces passed as ``nn.Module`` callables are registered as submodules, so
    ``.to(device)`` moves them.

    Args:
        init_sample_fn: ``(shape, generator) -> x_0`` of shape ``(*shape, d)``.
        transition_sample_fn: ``(x_{t-1}, t, generator) -> x_t``.
        observation_log_prob_fn: ``(y_t, x_t, t) -> (batch, N)`` log-densities.
        num_particles: particles per sequence.
        resampling: scheme name (see :data:`bayestorch.mc.resampling.RESAMPLING_SCHEMES`).
        ess_threshold: adaptive resampling threshold as a fraction of ``num_particles``.
        chunk_size: sequences filtered at once (bounds memory; see :func:`particle_filter`).

    Shape:
        ``filter(y)``: ``y`` ``(batch, T, p)`` -> :class:`ParticleFilterResult`.

    References:
        Gordon, Salmond & Smith (1993); Doucet & Johansen (2009).
    """

    def __init__(
        self,
        init_sample_fn: InitSampleFn,
        transition_sample_fn: TransitionSampleFn,
        observation_log_prob_fn: ObservationLogProbFn,
        num_particles: int = 1000,
        *,
        resampling: str = "systematic",
        ess_threshold: float = 0.5,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        if resampling not in RESAMPLING_SCHEMES:
            raise ValueError(
                f"resampling must be one of {sorted(RESAMPLING_SCHEMES)}, got {resampling!r}"
            )
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        self.init_sample_fn = init_sample_fn
        self.transition_sample_fn = transition_sample_fn
        self.observation_log_prob_fn = observation_log_prob_fn
        self.num_particles = int(num_particles)
        self.resampling = resampling
        self.ess_threshold = float(ess_threshold)

    def filter(
        self, y: Tensor, *, generator: torch.Generator | None = None
    ) -> ParticleFilterResult:
        """Run the filter on ``y`` (see :func:`particle_filter`)."""
        return particle_filter(
            y,
            self.init_sample_fn,
            self.transition_sample_fn,
            self.observation_log_prob_fn,
            self.num_particles,
            resampling=self.resampling,
            ess_threshold=self.ess_threshold,
            generator=generator,
            chunk_size=self.chunk_size,
        )

    def forward(
        self, y: Tensor, *, generator: torch.Generator | None = None
    ) -> ParticleFilterResult:
        """Same as :meth:`filter`."""
        return self.filter(y, generator=generator)

    def log_evidence(self, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The estimate of ``log p(y_1..y_T)`` per sequence.

        Shape:
            ``y``: ``(batch, T, p)`` -> ``(batch,)``.
        """
        return self.filter(y, generator=generator).log_evidence

    def extra_repr(self) -> str:
        return (
            f"num_particles={self.num_particles}, resampling={self.resampling!r}, "
            f"ess_threshold={self.ess_threshold}"
        )
