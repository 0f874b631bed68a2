"""Evidence lower bounds for a latent-variable model p(x, z) = p(x | z) p(z).

The model is given by three pieces, so any encoder/decoder pair plugs in:

* ``log_likelihood_fn(z) -> log p(x | z)``, mapping ``(num_samples, *batch, latent)`` to
  ``(num_samples, *batch)``;
* ``posterior``: the variational q(z | x), a torch ``Distribution`` with batch shape
  ``batch`` and the latent as its event;
* ``prior``: p(z), broadcastable against the posterior.

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence
from torch.utils.checkpoint import checkpoint

from bayestorch.utils.chunking import chunk_slices, resolve_chunk_size
from bayestorch.utils.random import draw

__all__ = ["elbo", "iwae_bound", "log_importance_weights"]

LogLikelihoodFn = Callable[[Tensor], Tensor]

#: The default ``chunk_size`` of ``iwae_bound`` budgets ``DEFAULT_MAX_MEMORY`` (256 MiB) for
#: a chunk at this many times the size of its latent draws: an allowance for the decoder's
#: activations, which are typically several times wider than the latent.
WORKING_MEMORY_PER_LATENT = 16


def renamed_keyword(old: str, new: str, value, default, kwargs: dict):
    """The value of keyword ``new`` (``None``: not passed, so ``default``), taking a
    deprecated ``old`` from ``kwargs`` (with a ``DeprecationWarning``); ``TypeError`` for
    both at once or for unknown keywords."""
    if old in kwargs:
        if value is not None:
            raise TypeError(f"pass {new}= only ({old}= is its deprecated name)")
        warnings.warn(
            f"{old}= is deprecated: it is called {new}= now (one name across bayestorch.vi)",
            DeprecationWarning,
            stacklevel=3,
        )
        value = kwargs.pop(old)
    if kwargs:
        raise TypeError(f"unexpected keyword argument(s) {sorted(kwargs)}")
    return default if value is None else value


def _checked_log_likelihood(
    log_likelihood_fn: LogLikelihoodFn, z: Tensor, event_dim: int
) -> Tensor:
    log_lik = log_likelihood_fn(z)
    expected = z.shape[: z.dim() - event_dim]
    if log_lik.shape != expected:
        raise ValueError(
            f"log_likelihood_fn must map latents of shape {tuple(z.shape)} to log-likelihoods "
            f"of shape {tuple(expected)} (num_samples, *batch), got {tuple(log_lik.shape)}"
        )
    return log_lik


def log_importance_weights(
    log_likelihood_fn: LogLikelihoodFn,
    posterior: Distribution,
    prior: Distribution,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``log w_k = log p(x | z_k) + log p(z_k) - log q(z_k | x)`` with ``z_k ~ q`` reparameterised.

    Shape:
        returns ``(num_samples, *batch)``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    z = draw(posterior, (num_samples,), generator)
    log_lik = _checked_log_likelihood(log_likelihood_fn, z, len(posterior.event_shape))
    return log_lik + prior.log_prob(z) - posterior.log_prob(z)


def _analytic_kl(
    posterior: Distribution, prior: Distribution, analytic_kl: bool | None
) -> Tensor | None:
    if analytic_kl is False:
        return None
    try:
        return kl_divergence(posterior, prior)
    except NotImplementedError:
        if analytic_kl:
            raise NotImplementedError(
                f"analytic_kl=True but torch has no registered KL between "
                f"{type(posterior).__name__} and {type(prior).__name__}; pass analytic_kl=None "
                f"to fall back to the Monte Carlo estimate"
            ) from None
        return None


def elbo(
    log_likelihood_fn: LogLikelihoodFn,
    posterior: Distribution,
    prior: Distribution,
    *,
    num_samples: int | None = None,
    analytic_kl: bool | None = None,
    generator: torch.Generator | None = None,
    **deprecated,
) -> Tensor:
    """Reparameterised Monte Carlo estimate of the ELBO, ``E_q[log p(x|z)] - KL(q || p)``.

    With ``analytic_kl=None`` (default) the KL term is exact when torch has it registered for
    the (posterior, prior) pair and estimated by Monte Carlo otherwise; ``True`` requires
    the exact term, ``False`` forces the Monte Carlo one. Both estimators are unbiased; the
    analytic one has lower variance.

    Args:
        num_samples: latent draws per data point, averaged (default 1; the same name as
            ``iwae_bound``'s ``K``; ``num_particles=`` is its deprecated name).

    Shape:
        returns ``batch`` (one bound per data point), differentiable.
    """
    num_samples = renamed_keyword("num_particles", "num_samples", num_samples, 1, deprecated)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    kl = _analytic_kl(posterior, prior, analytic_kl)
    if kl is None:
        return log_importance_weights(
            log_likelihood_fn, posterior, prior, num_samples, generator=generator
        ).mean(0)
    z = draw(posterior, (num_samples,), generator)
    log_lik = _checked_log_likelihood(log_likelihood_fn, z, len(posterior.event_shape))
    return log_lik.mean(0) - kl


def _replayable(fn: Callable[[], Tensor], generator: torch.Generator | None):
    """``fn()`` under activation checkpointing: its intermediates are freed after the forward
    pass and recomputed during backward, with the same draws (``generator``'s state is
    replayed, then restored; without a generator, ``checkpoint`` restores torch's global
    RNG itself)."""
    start = generator.get_state() if generator is not None else None
    calls = []

    def run() -> Tensor:
        if calls and generator is not None:  # the recomputation in backward
            after = generator.get_state()
            generator.set_state(start)
            try:
                return fn()
            finally:
                generator.set_state(after)
        calls.append(True)
        return fn()

    return checkpoint(run, use_reentrant=False, preserve_rng_state=generator is None)


def iwae_bound(
    log_likelihood_fn: LogLikelihoodFn,
    posterior: Distribution,
    prior: Distribution,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-weighted bound ``log (1/K) sum_k w_k`` (Burda et al. 2016).

    It is a lower bound on ``log p(x)`` that increases with ``K = num_samples`` and tends to
    ``log p(x)``; ``K = 1`` is the ELBO.

    Memory: the ``K`` draws are taken ``chunk_size`` at a time and combined with a running
    log-sum-exp (the same estimator), so peak memory is that of one chunk, not of ``K``
    draws (e.g. ``K = 5000`` for a log-likelihood estimate). When gradients are recorded
    and there is more than one chunk, each chunk is checkpointed
    (``torch.utils.checkpoint``): its activations are recomputed, with the same draws,
    during backward instead of being kept, which bounds the training step's memory too
    (at the cost of a second forward pass per chunk). Default ``chunk_size``: as many
    draws as fit ``bayestorch.utils.chunking.DEFAULT_MAX_MEMORY`` (256 MiB) at
    ``WORKING_MEMORY_PER_LATENT`` (16) times the bytes of one draw of the latents, e.g.
    655 draws a chunk for a batch of 128 with a 50-dimensional float32 latent.

    Shape:
        returns ``batch``, differentiable.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    latent = posterior.batch_shape.numel() * posterior.event_shape.numel()
    try:
        itemsize = posterior.mean.element_size()
    except NotImplementedError:  # a family without a mean: budget as float64
        itemsize = 8
    chunk = resolve_chunk_size(
        chunk_size, WORKING_MEMORY_PER_LATENT * latent * itemsize, num_samples
    )

    def chunk_log_sum_exp(size: int) -> Tensor:
        log_w = log_importance_weights(
            log_likelihood_fn, posterior, prior, size, generator=generator
        )
        return torch.logsumexp(log_w, dim=0)

    if chunk >= num_samples:
        total = chunk_log_sum_exp(num_samples)
    else:
        checkpointed = torch.is_grad_enabled()
        total = None
        for part in chunk_slices(num_samples, chunk):
            size = part.stop - part.start
            if checkpointed:
                lse = _replayable(lambda size=size: chunk_log_sum_exp(size), generator)
            else:
                lse = chunk_log_sum_exp(size)
            total = lse if total is None else torch.logaddexp(total, lse)
    return total - math.log(num_samples)
