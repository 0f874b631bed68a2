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
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from bayestorch.utils.random import draw

__all__ = ["elbo", "iwae_bound", "log_importance_weights"]

LogLikelihoodFn = Callable[[Tensor], Tensor]


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
    num_particles: int = 1,
    analytic_kl: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reparameterised Monte Carlo estimate of the ELBO, ``E_q[log p(x|z)] - KL(q || p)``.

    With ``analytic_kl=None`` (default) the KL term is exact when torch has it registered for
    the (posterior, prior) pair and estimated by Monte Carlo otherwise; ``True`` requires
    the exact term, ``False`` forces the Monte Carlo one. Both estimators are unbiased; the
    analytic one has lower variance.

    Args:
        num_particles: latent draws per data point, averaged.

    Shape:
        returns ``batch`` (one bound per data point), differentiable.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    kl = _analytic_kl(posterior, prior, analytic_kl)
    if kl is None:
        return log_importance_weights(
            log_likelihood_fn, posterior, prior, num_particles, generator=generator
        ).mean(0)
    z = draw(posterior, (num_particles,), generator)
    log_lik = _checked_log_likelihood(log_likelihood_fn, z, len(posterior.event_shape))
    return log_lik.mean(0) - kl


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
    ``log p(x)``; ``K = 1`` is the ELBO. ``chunk_size`` bounds memory for large ``K`` (e.g.
    ``K = 5000`` for a log-likelihood estimate) by drawing the samples in chunks and
    combining them with a running log-sum-exp; the result is the same estimator.

    Shape:
        returns ``batch``, differentiable.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    chunk = num_samples if chunk_size is None else max(1, min(chunk_size, num_samples))
    partial = []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        log_w = log_importance_weights(
            log_likelihood_fn, posterior, prior, size, generator=generator
        )
        partial.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(partial), dim=0) - math.log(num_samples)
