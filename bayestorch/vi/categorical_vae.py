"""The categorical VAE: a latent of several categorical variables, trained through the
Gumbel-softmax relaxation (Jang, Gu & Poole 2017).

The latent is ``num_latents`` independent one-hot variables of ``num_categories`` classes each
(Jang et al. use 20 x 10 on MNIST), with a uniform prior. The encoder outputs their logits; the
decoder reads the concatenated one-hots (or their relaxations). Two gradient estimators:

* ``"relaxed"``: the decoder reads the Gumbel-softmax sample ``softmax((logits + g) / tau)``;
  the training objective is ``E[log p(x | relaxed z)] - KL(q(z|x) || uniform)`` with the exact
  categorical KL, as in Jang et al.'s experiments (a surrogate: the decoder never sees a
  relaxed sample at test time);
* ``"straight_through"``: the decoder reads the exact one-hot, gradients are the relaxed
  sample's (Bengio et al. 2013), so the training objective is the true ELBO.

Evaluation uses discrete one-hot samples (``elbo(x, discrete=True)``, :meth:`iwae_bound`): a
true lower bound on ``log p(x)`` for either estimator, comparable with the Gaussian VAE's.

References:
    Jang, Gu & Poole (2017). Categorical Reparameterization with Gumbel-Softmax. ICLR.
    Maddison, Mnih & Teh (2017). The Concrete Distribution. ICLR.
    Bengio, Léonard & Courville (2013). Estimating or propagating gradients through stochastic
    neurons for conditional computation. arXiv:1308.3432.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, OneHotCategorical

from bayestorch.gumbel import GumbelSoftmax, gumbel_max
from bayestorch.utils.checks import check_last_dim
from bayestorch.utils.random import check_generator_device, draw
from bayestorch.vi.elbo import elbo, renamed_keyword
from bayestorch.vi.vae import LatentVariableModel, mlp

__all__ = ["CategoricalVAE"]

Estimator = Literal["relaxed", "straight_through"]


class CategoricalVAE(LatentVariableModel):
    """VAE with ``num_latents`` categorical latents of ``num_categories`` classes (Gumbel-softmax).

    Args:
        data_dim: size of a (flattened) data point.
        num_latents: the number of categorical latent variables.
        num_categories: the classes of each.
        hidden_sizes: hidden widths of the default MLPs (the decoder uses them reversed).
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"`` (learnable per-dimension
            scale, or the fixed ``obs_scale``).
        estimator: ``"relaxed"`` or ``"straight_through"`` (see the module docstring).
        tau, anneal, min_tau, anneal_every: the temperature schedule of the
            :class:`~bayestorch.gumbel.GumbelSoftmax` layer (``relaxation``); call
            :meth:`advance` once per optimiser step.
        encoder, decoder: optional modules replacing the default MLPs; the encoder maps
            ``(..., data_dim)`` to ``(..., num_latents * num_categories)`` logits, the decoder
            ``(..., num_latents * num_categories)`` to ``(..., data_dim)``.
        obs_scale: a Gaussian likelihood's fixed observation standard deviation (a number
            or ``(data_dim,)``); ``None`` (default) learns one per data dimension.

    Shape:
        ``x``: ``(batch, data_dim)``; ``elbo(x)``, ``iwae_bound(x, k)``: ``(batch,)``;
        latents: ``(..., num_latents, num_categories)``.

    References:
        Jang, Gu & Poole (2017); Maddison, Mnih & Teh (2017).

    Example::

        >>> model = CategoricalVAE(data_dim=64, num_latents=4, num_categories=3)
        >>> x = torch.bernoulli(torch.full((8, 64), 0.3))
        >>> (-model.elbo(x).mean()).backward()
    """

    def __init__(
        self,
        data_dim: int,
        num_latents: int = 20,
        num_categories: int = 10,
        hidden_sizes: Sequence[int] = (256, 128),
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        estimator: Estimator = "relaxed",
        *,
        tau: float = 1.0,
        anneal: float | Callable[[int], float] | None = None,
        min_tau: float = 0.5,
        anneal_every: int = 1,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        obs_scale: float | Tensor | None = None,
    ) -> None:
        super().__init__()
        self._init_observation_model(likelihood, data_dim, obs_scale)
        if estimator not in ("relaxed", "straight_through"):
            raise ValueError(
                f"estimator must be 'relaxed' or 'straight_through', got {estimator!r}"
            )
        if num_latents < 1 or num_categories < 2:
            raise ValueError(
                f"need num_latents >= 1 and num_categories >= 2, got {num_latents} and "
                f"{num_categories}"
            )
        self.num_latents = int(num_latents)
        self.num_categories = int(num_categories)
        self.estimator = estimator
        flat = self.num_latents * self.num_categories
        self.encoder = encoder if encoder is not None else mlp(data_dim, hidden_sizes, flat)
        self.decoder = (
            decoder if decoder is not None else mlp(flat, tuple(reversed(hidden_sizes)), data_dim)
        )
        self.relaxation = GumbelSoftmax(
            tau,
            hard=estimator == "straight_through",
            anneal=anneal,
            min_tau=min_tau,
            anneal_every=anneal_every,
        )

    @property
    def tau(self) -> float:
        """The current temperature of the relaxation."""
        return self.relaxation.tau

    def advance(self, num_steps: int = 1) -> None:
        """Move the temperature schedule on (call once per optimiser step)."""
        self.relaxation.advance(num_steps)

    def posterior_logits(self, x: Tensor) -> Tensor:
        """Normalised log-probabilities of q(z | x).

        Shape:
            ``(..., data_dim) -> (..., num_latents, num_categories)``.
        """
        check_last_dim("x", x, self.data_dim)
        out = self.encoder(x)
        flat = self.num_latents * self.num_categories
        if out.shape[-1] != flat:
            raise ValueError(
                f"encoder must output (..., num_latents * num_categories) = (..., {flat}), "
                f"got {tuple(out.shape)}"
            )
        return torch.log_softmax(out.unflatten(-1, (self.num_latents, self.num_categories)), -1)

    def encode(self, x: Tensor) -> Distribution:
        """q(z | x) over one-hots.

        Shape:
            batch ``x.shape[:-1]``, event ``(num_latents, num_categories)``.
        """
        return Independent(OneHotCategorical(logits=self.posterior_logits(x)), 1)

    def prior(self, like: Tensor | None = None) -> Distribution:
        """The uniform prior over the one-hots; event ``(num_latents, num_categories)``."""
        ref = like if like is not None else next(self.decoder.parameters())
        logits = torch.zeros(
            self.num_latents, self.num_categories, device=ref.device, dtype=ref.dtype
        )
        return Independent(OneHotCategorical(logits=logits, validate_args=False), 1)

    def _prior_for(self, x: Tensor) -> Distribution:
        return self.prior(x)

    def _decoder_input(self, z: Tensor) -> Tensor:
        return z.flatten(-2)  # one-hot (or relaxed) latents (..., num_latents, K)

    def _kl_to_uniform(self, log_q: Tensor) -> Tensor:
        # KL(q || uniform) = sum_k q_k (log q_k + log K), summed over the latents.
        return (log_q.exp() * (log_q + math.log(self.num_categories))).sum((-2, -1))

    def elbo(
        self,
        x: Tensor,
        *,
        discrete: bool = False,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        **deprecated,
    ) -> Tensor:
        """Per-example ELBO with the exact categorical KL. Shape: ``(batch,)``.

        ``discrete=False`` (training): the decoder reads the estimator's sample (relaxed, or
        one-hot with relaxed gradients). ``discrete=True`` (evaluation): exact one-hot draws of
        q(z | x), the true ELBO, through :func:`bayestorch.vi.elbo`. ``num_samples``: latent
        draws per example, averaged (default 1; ``num_particles=`` is its deprecated name).
        """
        num_samples = renamed_keyword("num_particles", "num_samples", num_samples, 1, deprecated)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if discrete:
            return elbo(
                lambda z: self.log_likelihood(z, x),
                self.encode(x),
                self.prior(x),
                num_samples=num_samples,
                analytic_kl=True,
                generator=generator,
            )
        log_q = self.posterior_logits(x)
        check_generator_device(generator, log_q.device)
        logits = log_q if num_samples == 1 else log_q.expand(num_samples, *log_q.shape)
        z = self.relaxation(logits, generator=generator)
        log_lik = self.log_likelihood(z, x)
        if num_samples > 1:
            log_lik = log_lik.mean(0)
        return log_lik - self._kl_to_uniform(log_q)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, generator: torch.Generator | None = None, mean: bool = True
    ) -> Tensor:
        """Data drawn through the uniform prior: decoder means or full draws.

        Shape:
            ``(num_samples, data_dim)``.
        """
        ref = next(self.decoder.parameters())
        logits = torch.zeros(
            num_samples, self.num_latents, self.num_categories, device=ref.device, dtype=ref.dtype
        )
        z = F.one_hot(gumbel_max(logits, generator=generator), self.num_categories).to(ref.dtype)
        likelihood = self.decode(z)
        return likelihood.mean if mean else draw(likelihood, (), generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the posterior mode. Shape: ``(batch, data_dim)``."""
        log_q = self.posterior_logits(x)
        z = F.one_hot(log_q.argmax(-1), self.num_categories).to(log_q.dtype)
        return self.decode(z).mean
