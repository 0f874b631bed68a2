"""The variational autoencoder with a Gaussian latent (Kingma & Welling 2014).

Encoder and decoder are any ``nn.Module`` the user passes (an MLP by default):

* ``encoder``: ``(..., data_dim) ->`` the posterior ``q(z | x)``, in one of three forms:
  a tensor ``(..., 2 * latent_dim)`` holding the location and an unconstrained scale
  (made positive by softplus, better behaved than ``exp`` for large inputs, plus the
  documented ``min_scale``); a pair ``(loc, scale)`` of ``(..., latent_dim)`` tensors
  (``scale`` positive, used as it is); or a ``torch.distributions.Distribution`` with
  ``rsample``, batch shape ``(...)`` and event shape ``(latent_dim,)``;
* ``decoder``: ``(..., latent_dim) -> (..., data_dim)``, Bernoulli logits or Gaussian
  means (the Gaussian observation scale is learnable per dimension, or fixed by
  ``obs_scale``).

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from bayestorch.utils.checks import check_last_dim
from bayestorch.utils.random import check_generator_device, draw
from bayestorch.vi.elbo import elbo, iwae_bound, renamed_keyword

__all__ = ["LatentVariableModel", "VAE", "mlp"]

Likelihood = Literal["bernoulli", "gaussian"]


def mlp(
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int,
    activation: type[nn.Module] = nn.Tanh,
) -> nn.Sequential:
    """A multilayer perceptron ``in -> hidden... -> out`` with ``activation`` between layers."""
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden_sizes]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


def observation_distribution(
    decoder_out: Tensor, likelihood: Likelihood, log_obs_scale: Tensor | None
) -> Distribution:
    """p(x | z) from the decoder's output: Bernoulli logits, or Gaussian means with a learned
    per-pixel log-scale. Batch ``decoder_out.shape[:-1]``, event ``(data_dim,)``."""
    if likelihood == "bernoulli":
        return Independent(Bernoulli(logits=decoder_out, validate_args=False), 1)
    return Independent(Normal(decoder_out, log_obs_scale.exp(), validate_args=False), 1)


def observation_log_prob(
    decoder_out: Tensor, x: Tensor, likelihood: Likelihood, log_obs_scale: Tensor | None
) -> Tensor:
    """``observation_distribution(...).log_prob(x)`` without building Distribution objects
    (the hot path of every bound). Shape: ``decoder_out.shape[:-1]``."""
    if likelihood == "bernoulli":
        target = x.expand_as(decoder_out)
        return -F.binary_cross_entropy_with_logits(decoder_out, target, reduction="none").sum(-1)
    sq = ((x - decoder_out) * torch.exp(-log_obs_scale)).square()
    data_dim = decoder_out.shape[-1]
    return -0.5 * sq.sum(-1) - log_obs_scale.sum() - 0.5 * data_dim * math.log(2 * math.pi)


class LatentVariableModel(nn.Module):
    """What VAE and CategoricalVAE share: the observation model p(x | z) behind a decoder,
    the importance-weighted bound, and ``forward`` = per-example ELBO.

    Subclasses set ``decoder``, ``data_dim``, ``likelihood`` (and ``log_obs_scale`` for a
    Gaussian likelihood) and define ``encode(x)``, ``elbo(x, ...)`` and ``_prior_for(x)``.
    """

    decoder: nn.Module
    data_dim: int
    likelihood: Likelihood

    def _prior_for(self, x: Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def _decoder_input(self, z: Tensor) -> Tensor:
        return z

    def _decoder_output(self, z: Tensor) -> Tensor:
        out = self.decoder(self._decoder_input(z))
        if out.shape[-1] != self.data_dim:
            raise ValueError(f"decoder must output (..., {self.data_dim}), got {tuple(out.shape)}")
        return out

    def _obs_scale(self) -> Tensor | None:
        return self.log_obs_scale if self.likelihood == "gaussian" else None

    def _init_observation_model(
        self, likelihood: str, data_dim: int, obs_scale: float | Tensor | None
    ) -> None:
        """Set ``likelihood``, ``data_dim`` and, for a Gaussian likelihood, ``log_obs_scale``:
        a learnable parameter (zeros) when ``obs_scale`` is ``None``, else the log of the
        fixed scale (a buffer, a number or a ``(data_dim,)`` tensor)."""
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood
        self.data_dim = int(data_dim)
        if likelihood != "gaussian":
            if obs_scale is not None:
                raise ValueError(
                    f"obs_scale applies to likelihood='gaussian' only, got likelihood="
                    f"{likelihood!r} with obs_scale={obs_scale!r}"
                )
            return
        if obs_scale is None:
            self.log_obs_scale = nn.Parameter(torch.zeros(self.data_dim))
            return
        scale = torch.as_tensor(obs_scale, dtype=torch.get_default_dtype())
        if scale.dim() > 1 or scale.numel() not in (1, self.data_dim):
            raise ValueError(
                f"obs_scale must be a number or a ({self.data_dim},) tensor, got shape "
                f"{tuple(scale.shape)}"
            )
        if not bool(torch.isfinite(scale).all() & (scale > 0).all()):
            raise ValueError(f"obs_scale must be positive and finite, got {obs_scale!r}")
        self.register_buffer("log_obs_scale", scale.log().expand(self.data_dim).clone())

    def decode(self, z: Tensor) -> Distribution:
        """p(x | z); event shape ``(data_dim,)``."""
        return observation_distribution(self._decoder_output(z), self.likelihood, self._obs_scale())

    def log_likelihood(self, z: Tensor, x: Tensor) -> Tensor:
        """``decode(z).log_prob(x)`` without building Distribution objects (the hot path)."""
        return observation_log_prob(self._decoder_output(z), x, self.likelihood, self._obs_scale())

    def iwae_bound(
        self,
        x: Tensor,
        num_samples: int,
        *,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-example importance-weighted bound with ``num_samples`` draws of ``q(z | x)``
        (Burda et al. 2016). Shape: ``(batch,)``."""
        return iwae_bound(
            lambda z: self.log_likelihood(z, x),
            self.encode(x),
            self._prior_for(x),
            num_samples,
            chunk_size=chunk_size,
            generator=generator,
        )

    def forward(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The per-example ELBO, so ``-model(x).mean()`` is the training loss."""
        return self.elbo(x, generator=generator)


class VAE(LatentVariableModel):
    """Variational autoencoder with prior ``N(0, I)`` and a Gaussian posterior ``q(z | x)``.

    Args:
        data_dim: size of a (flattened) data point.
        latent_dim: size of the latent.
        hidden_sizes: hidden widths of the default MLPs (the decoder uses them reversed).
        likelihood: ``"bernoulli"`` (binary data) or ``"gaussian"``.
        encoder, decoder: optional modules replacing the default MLPs; the encoder may
            output any of the three forms in the module docstring.
        obs_scale: a Gaussian likelihood's fixed observation standard deviation (a number
            or ``(data_dim,)``); ``None`` (default) learns one per data dimension.
        min_scale: added to ``softplus(raw_scale)`` when the encoder outputs the
            ``(..., 2 * latent_dim)`` tensor form (keeps ``q(z | x)`` proper where softplus
            underflows to 0); ``0`` for none. The other forms are used as they are.

    Shape:
        ``x``: ``(batch, data_dim)``; ``elbo(x)``, ``iwae_bound(x, k)``: ``(batch,)``.

    Example::

        >>> vae = VAE(data_dim=64, latent_dim=2)
        >>> x = torch.bernoulli(torch.full((8, 64), 0.3))
        >>> loss = -vae.elbo(x).mean()
        >>> loss.backward()
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (256, 128),
        likelihood: Likelihood = "bernoulli",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        *,
        obs_scale: float | Tensor | None = None,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__()
        self._init_observation_model(likelihood, data_dim, obs_scale)
        if not min_scale >= 0.0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")
        self.latent_dim = int(latent_dim)
        self.min_scale = float(min_scale)
        self.encoder = (
            encoder if encoder is not None else mlp(data_dim, hidden_sizes, 2 * latent_dim)
        )
        self.decoder = (
            decoder
            if decoder is not None
            else mlp(latent_dim, tuple(reversed(hidden_sizes)), data_dim)
        )
        # The prior is fixed at N(0, I) (elbo's closed-form KL relies on it); buffers only so
        # that it follows the module's device and dtype, and not saved in the state_dict.
        self.register_buffer("prior_loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("prior_scale", torch.ones(latent_dim), persistent=False)

    def prior(self) -> Distribution:
        """p(z) = N(0, I); batch shape ``()``, event shape ``(latent_dim,)``."""
        return Independent(Normal(self.prior_loc, self.prior_scale, validate_args=False), 1)

    def _posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor] | Distribution:
        """The encoder's ``q(z | x)``: ``(loc, scale)`` of a diagonal Gaussian, or the
        Distribution the encoder returned."""
        check_last_dim("x", x, self.data_dim)
        out = self.encoder(x)
        batch, latent = tuple(x.shape[:-1]), (self.latent_dim,)
        if isinstance(out, Distribution):
            if tuple(out.event_shape) != latent or tuple(out.batch_shape) != batch:
                raise ValueError(
                    f"encoder returned a {type(out).__name__} with batch shape "
                    f"{tuple(out.batch_shape)} and event shape {tuple(out.event_shape)}; "
                    f"q(z | x) needs batch shape {batch} and event shape {latent}"
                )
            if not out.has_rsample:
                raise ValueError(
                    f"encoder returned a {type(out).__name__}, which has no rsample: the "
                    "ELBO's gradient needs reparameterised draws"
                )
            return out
        if isinstance(out, (tuple, list)):
            if len(out) != 2 or not all(isinstance(t, Tensor) for t in out):
                raise TypeError("an encoder returning a tuple must return (loc, scale) tensors")
            loc, scale = out
            for name, value in (("loc", loc), ("scale", scale)):
                if tuple(value.shape) != batch + latent:
                    raise ValueError(
                        f"encoder's {name} must have shape {batch + latent}, got "
                        f"{tuple(value.shape)}"
                    )
            return loc, scale
        if not isinstance(out, Tensor):
            raise TypeError(
                "encoder must return a (..., 2 * latent_dim) tensor, a (loc, scale) pair or a "
                f"Distribution, got {type(out).__name__}"
            )
        if out.shape[-1] != 2 * self.latent_dim:
            raise ValueError(
                f"encoder must output (..., 2 * latent_dim) = (..., {2 * self.latent_dim}) "
                f"(location and raw scale), got {tuple(out.shape)}"
            )
        loc, raw_scale = out.chunk(2, dim=-1)
        scale = F.softplus(raw_scale)
        return loc, scale + self.min_scale if self.min_scale else scale

    def _prior_for(self, x: Tensor) -> Distribution:
        return self.prior()

    def encode(self, x: Tensor) -> Distribution:
        """q(z | x); batch shape ``x.shape[:-1]``, event shape ``(latent_dim,)``."""
        posterior = self._posterior_params(x)
        if isinstance(posterior, Distribution):
            return posterior
        loc, scale = posterior
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def elbo(
        self,
        x: Tensor,
        *,
        num_samples: int | None = None,
        analytic_kl: bool | None = None,
        generator: torch.Generator | None = None,
        **deprecated,
    ) -> Tensor:
        """Per-example ELBO (analytic Gaussian KL by default). Shape: ``(batch,)``.

        With the analytic KL this is :func:`bayestorch.vi.elbo` written out for the
        standard-normal prior: the same estimator (same draws for the same generator),
        with fewer kernels and no Distribution objects, which is what keeps a training
        step within a few percent of a hand-written loop. ``analytic_kl=False``, or an
        encoder that returns a Distribution, takes the generic path.

        Args:
            num_samples: latent draws per example, averaged (default 1;
                ``num_particles=`` is its deprecated name).
        """
        num_samples = renamed_keyword("num_particles", "num_samples", num_samples, 1, deprecated)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        posterior = self._posterior_params(x)
        if analytic_kl is False or isinstance(posterior, Distribution):
            if not isinstance(posterior, Distribution):
                posterior = Independent(Normal(*posterior, validate_args=False), 1)
            return elbo(
                lambda z: self.log_likelihood(z, x),
                posterior,
                self.prior(),
                num_samples=num_samples,
                analytic_kl=analytic_kl,
                generator=generator,
            )
        loc, scale = posterior
        check_generator_device(generator, loc.device)
        # One draw: no leading sample dim (same draws; a shorter backward graph).
        shape = loc.shape if num_samples == 1 else (num_samples, *loc.shape)
        eps = torch.randn(shape, generator=generator, device=loc.device, dtype=loc.dtype)
        log_lik = self.log_likelihood(loc + scale * eps, x)
        if num_samples > 1:
            log_lik = log_lik.mean(0)
        # KL(N(loc, scale^2) || N(0, 1)) summed over the latent (Kingma & Welling 2014, app. B).
        kl = 0.5 * (loc.square() + scale.square() - 1.0).sum(-1) - scale.log().sum(-1)
        return log_lik - kl

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, generator: torch.Generator | None = None, mean: bool = True
    ) -> Tensor:
        """Data drawn through the prior: decoder means (``mean=True``) or full draws.

        Shape:
            ``(num_samples, data_dim)``.
        """
        z = draw(self.prior(), (num_samples,), generator)
        likelihood = self.decode(z)
        return likelihood.mean if mean else draw(likelihood, (), generator)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean at the posterior mean. Shape: ``(batch, data_dim)``."""
        return self.decode(self.encode(x).mean).mean
