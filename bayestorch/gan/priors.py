"""Latent priors p(z) for GANs: standard Gaussian, learnable Gaussian mixture, Dirichlet process.

Talk section "GANs with mixture latent priors". Each prior is an ``nn.Module`` with
``rsample(sample_shape, generator=None, return_component=False)`` (differentiable in the
prior's parameters), ``log_prob(z)``, ``dim``, ``num_components`` and ``weights``.

The mixture priors choose a component per draw with a straight-through Gumbel-softmax
(:func:`bayestorch.gumbel.gumbel_softmax`, ``hard=True``): the forward pass is an exact one-hot,
so ``z`` is an exact draw of the mixture ``sum_k w_k N(mu_k, diag(sigma_k^2))``, while the
backward pass uses the relaxed sample's gradient, so the mixture weights (the logits, or the
stick parameters) get gradients from whatever loss consumes ``z`` (the GAN loss). With
``hard=False`` the component choice is the relaxed convex combination of components: smooth in
every parameter (exact gradients, used by the gradcheck tests) but no longer the mixture.

References:
    Ben-Yosef & Weinshall (2018). Gaussian Mixture Generative Adversarial Networks.
    Huang, Xu et al. (2021). GAN-based Gaussian Mixture Model Responsibility Learning. ICPR.
    Huang, Xu et al. Dirichlet Process Mixture Model Learning via GAN.
    Jang, Gu & Poole (2017); Maddison, Mnih & Teh (2017): Gumbel-softmax / Concrete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bayestorch.distributions.stick_breaking import (
    kumaraswamy_log_sticks,
    kumaraswamy_mean,
    stick_breaking_log_weights,
)
from bayestorch.gumbel.functional import gumbel_softmax
from bayestorch.utils.random import check_generator_device

__all__ = ["DirichletProcessPrior", "GaussianMixturePrior", "GaussianPrior", "LatentPrior"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return value


def _check_positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def _sample_shape(sample_shape) -> tuple[int, ...]:
    if isinstance(sample_shape, int):
        return (sample_shape,)
    return tuple(torch.Size(sample_shape))


class LatentPrior(nn.Module):
    """Base class: a latent distribution over ``R^dim`` made of ``num_components`` Gaussians.

    Subclasses provide ``_component_log_probs(sample_shape, generator)`` (log weights used for
    the component choice, broadcastable to ``sample_shape + (K,)``) and ``mixture_weights``.
    """

    dim: int
    num_components: int

    def __init__(self, num_components: int, dim: int, init_scale: float, learnable: bool):
        super().__init__()
        self.num_components = _check_positive_int("num_components", num_components)
        self.dim = _check_positive_int("dim", dim)
        init_scale = _check_positive_float("init_scale", init_scale)
        if num_components == 1:
            means = torch.zeros(1, dim)
        else:
            # Like nn.Linear's init, the means come from the global RNG (seed it for
            # reproducibility); spread init_scale apart so components start distinct.
            means = init_scale * torch.randn(num_components, dim)
        log_scales = torch.zeros(num_components, dim)
        # N(0, I) with fixed buffers: rsample returns the noise itself.
        self._standard = num_components == 1 and not learnable
        if learnable:
            self.means = nn.Parameter(means)
            self.log_scales = nn.Parameter(log_scales)
        else:
            self.register_buffer("means", means)
            self.register_buffer("log_scales", log_scales)

    # -- to be provided by subclasses ------------------------------------------------------
    def _choice_logits(self, sample_shape: tuple[int, ...], generator) -> Tensor:
        raise NotImplementedError

    @property
    def mixture_weights(self) -> Tensor:
        """The probabilities with which draws pick each component, ``(K,)`` summing to 1."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def scales(self) -> Tensor:
        """Component standard deviations ``(K, dim)``."""
        return self.log_scales.exp()

    @property
    def weights(self) -> Tensor:
        """Mixture weights ``(K,)``."""
        return self.mixture_weights

    def _noise(self, shape: tuple[int, ...], generator) -> Tensor:
        check_generator_device(generator, self.means.device)
        return torch.randn(
            shape, generator=generator, device=self.means.device, dtype=self.means.dtype
        )

    def rsample(
        self,
        sample_shape: Sequence[int] | int = (),
        generator: torch.Generator | None = None,
        return_component: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Reparameterised draws ``z`` (and, if asked, the component index of each).

        Args:
            sample_shape: leading shape of the draws, e.g. ``(n,)``.
            generator: the source of randomness (on the prior's device).
            return_component: also return the int64 component indices.

        Shape:
            ``z``: ``sample_shape + (dim,)``; component: ``sample_shape``.
        """
        shape = _sample_shape(sample_shape)
        eps = self._noise(shape + (self.dim,), generator)
        if self.num_components == 1:
            # a fixed standard normal costs nothing beyond the noise
            z = eps if self._standard else self.means[0] + self.scales[0] * eps
            component = torch.zeros(shape, dtype=torch.long, device=z.device)
        else:
            logits = self._choice_logits(shape, generator)
            logits = logits.expand(shape + (self.num_components,))
            onehot = gumbel_softmax(logits, self.temperature, hard=self.hard, generator=generator)
            onehot = onehot.to(self.means.dtype)
            # onehot @ [means | scales] picks (hard) or mixes (relaxed) the components'
            # parameters, in one product.
            loc, scale = (onehot @ torch.cat([self.means, self.scales], -1)).split(self.dim, -1)
            z = torch.addcmul(loc, scale, eps)
            component = onehot.detach().argmax(-1)
        return (z, component) if return_component else z

    def forward(self, sample_shape=(), generator=None, return_component=False):
        """Same as :meth:`rsample` (so ``torch.func.functional_call`` works on priors)."""
        return self.rsample(sample_shape, generator, return_component)

    def sample(self, sample_shape=(), generator=None, return_component=False):
        """:meth:`rsample` without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator, return_component)

    def component_log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; mu_k, diag(sigma_k^2))`` for every component.

        Shape:
            ``z``: ``(..., dim)`` -> ``(..., K)``.
        """
        self._check_z(z)
        diff = (z.unsqueeze(-2) - self.means) / self.scales
        return (
            -0.5 * diff.square().sum(-1)
            - self.log_scales.sum(-1)
            - 0.5 * self.dim * math.log(2 * math.pi)
        )

    def log_prob(self, z: Tensor) -> Tensor:
        """Mixture log-density ``log sum_k w_k N(z; mu_k, sigma_k^2)``.

        Shape:
            ``z``: ``(..., dim)`` -> ``(...)``.
        """
        log_w = self.mixture_weights.clamp_min(torch.finfo(self.means.dtype).tiny).log()
        return torch.logsumexp(self.component_log_prob(z) + log_w, -1)

    def posterior(self, z: Tensor) -> Tensor:
        """Component responsibilities ``p(k | z)`` under the prior.

        Shape:
            ``z``: ``(..., dim)`` -> ``(..., K)``.
        """
        log_w = self.mixture_weights.clamp_min(torch.finfo(self.means.dtype).tiny).log()
        return torch.softmax(self.component_log_prob(z) + log_w, -1)

    def _check_z(self, z: Tensor) -> None:
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(
                f"z must have shape (..., dim) with dim={self.dim} (the prior's latent "
                f"dimension), got {tuple(z.shape)}"
            )


class GaussianPrior(LatentPrior):
    """``N(loc, diag(scale^2))`` over ``R^dim``; the standard normal by default.

    Args:
        dim: latent dimension.
        learnable: make ``loc`` and ``log scale`` parameters (default: fixed N(0, I)).

    Shape:
        ``rsample((n,))``: ``(n, dim)``.

    References:
        Goodfellow et al. (2014). Generative Adversarial Nets. NeurIPS.
    """

    def __init__(self, dim: int, learnable: bool = False):
        super().__init__(1, dim, 1.0, learnable)

    @property
    def mixture_weights(self) -> Tensor:
        return torch.ones(1, device=self.means.device, dtype=self.means.dtype)


class GaussianMixturePrior(LatentPrior):
    """A learnable Gaussian mixture ``sum_k w_k N(mu_k, diag(sigma_k^2))``.

    Means, scales and weights (``softmax(logits)``) are parameters; the component choice is a
    straight-through Gumbel-softmax, so the weights get gradients from the loss on ``z``.

    Args:
        num_components: ``K >= 1``.
        dim: latent dimension.
        temperature: the Gumbel-softmax temperature of the relaxed backward pass.
        learn_weights: make the logits a parameter (else a buffer: uniform weights).
        init_scale: standard deviation of the initial means (drawn from the global RNG);
            the component scales start at 1.
        hard: straight-through (exact mixture draws, default) or relaxed draws.

    Shape:
        ``rsample((n,))``: ``(n, dim)``; ``weights``: ``(K,)``.

    References:
        Ben-Yosef & Weinshall (2018); Huang, Xu et al. (2021), ICPR.
    """

    def __init__(
        self,
        num_components: int,
        dim: int,
        temperature: float = 0.5,
        learn_weights: bool = True,
        init_scale: float = 1.0,
        hard: bool = True,
    ):
        super().__init__(num_components, dim, init_scale, learnable=True)
        self.temperature = _check_positive_float("temperature", temperature)
        self.hard = bool(hard)
        logits = torch.zeros(num_components)
        if learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def _choice_logits(self, sample_shape, generator) -> Tensor:
        return self.logits

    @property
    def mixture_weights(self) -> Tensor:
        return torch.softmax(self.logits, -1)


class DirichletProcessPrior(LatentPrior):
    """A truncated Dirichlet-process mixture of Gaussians, by stick-breaking.

    Truncation (Ishwaran & James 2001): ``T`` components from ``T - 1`` sticks, the last stick
    set to 1, ``v_T := 1``, so the weights ``w_k = v_k prod_{j<k} (1 - v_j)`` sum to 1 and the
    last component takes all the mass the first ``T - 1`` sticks leave,
    ``w_T = prod_{j<T} (1 - v_j)``. Under GEM(alpha), ``E[w_T] = (alpha / (1 + alpha))^(T-1)``.
    Draws (:meth:`rsample`), :meth:`stick_log_weights` and :attr:`weights` all follow this
    one law.

    Stick ``k < T`` is ``Kumaraswamy(a_k, b_k)`` with learnable ``a_k, b_k`` initialised at
    ``(1, alpha)``, where Kumaraswamy(1, alpha) = Beta(1, alpha): the sticks start exactly at
    GEM(alpha). Each draw breaks its own sticks (reparameterised), then picks a component from
    those weights by straight-through Gumbel-softmax, so the stick parameters (hence the
    effective number of components) learn from the GAN loss.

    Args:
        alpha: DP concentration, > 0.
        truncation: number of components ``T >= 1`` (``T - 1`` sticks).
        dim: latent dimension.
        temperature: Gumbel-softmax temperature.
        init_scale: standard deviation of the initial component means.
        learn_sticks: make the stick parameters learnable (else fixed at GEM(alpha)).
        hard: straight-through (default) or relaxed component choice.

    Shape:
        ``rsample((n,))``: ``(n, dim)``; ``weights``: ``(T,)``; ``log_a``, ``log_b``:
        ``(T - 1,)``.

    References:
        Sethuraman (1994); Ishwaran & James (2001), section 2 (the truncation ``V_N = 1``);
        Nalisnick & Smyth (2017); Huang, Xu et al., Dirichlet Process Mixture Model Learning
        via GAN.
    """

    def __init__(
        self,
        alpha: float,
        truncation: int,
        dim: int,
        temperature: float = 0.5,
        init_scale: float = 1.0,
        learn_sticks: bool = True,
        hard: bool = True,
    ):
        alpha = _check_positive_float("alpha", alpha)
        _check_positive_int("truncation", truncation)
        super().__init__(truncation, dim, init_scale, learnable=True)
        self.alpha = alpha
        self.truncation = truncation
        self.temperature = _check_positive_float("temperature", temperature)
        self.hard = bool(hard)
        log_a = torch.zeros(truncation - 1)
        log_b = torch.full((truncation - 1,), math.log(alpha))
        if learn_sticks:
            self.log_a, self.log_b = nn.Parameter(log_a), nn.Parameter(log_b)
        else:
            self.register_buffer("log_a", log_a)
            self.register_buffer("log_b", log_b)

    def stick_log_weights(
        self, sample_shape: Sequence[int] | int = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw the ``T - 1`` sticks and return the log weights of the ``T`` components
        (``v_T := 1``: each row sums to 1), reparameterised. Draws use these weights.

        Shape:
            ``sample_shape + (T,)``.
        """
        check_generator_device(generator, self.log_a.device)
        log_v, log_1mv = kumaraswamy_log_sticks(
            self.log_a.exp(), self.log_b.exp(), _sample_shape(sample_shape), generator=generator
        )
        last = log_v.new_zeros(*log_v.shape[:-1], 1)  # log v_T = 0; log(1 - v_T) is unused
        return stick_breaking_log_weights(
            torch.cat([log_v, last], -1), torch.cat([log_1mv, last], -1)
        )[0]

    def _choice_logits(self, sample_shape, generator) -> Tensor:
        return self.stick_log_weights(sample_shape, generator)

    @property
    def weights(self) -> Tensor:
        """Expected weights ``E[w_k]``, ``k = 1..T``, of the truncated process (they sum to 1;
        the sticks are independent, so ``E[w_k] = E[v_k] prod_{j<k} E[1 - v_j]``)."""
        mean_v = kumaraswamy_mean(self.log_a.exp(), self.log_b.exp())
        one = mean_v.new_ones(1)
        mean_v = torch.cat([mean_v, one])  # v_T = 1
        before = torch.cat([one, (1 - mean_v[:-1]).cumprod(-1)])
        return mean_v * before

    @property
    def mixture_weights(self) -> Tensor:
        return self.weights

    def num_effective_components(self, threshold: float = 0.01) -> int:
        """How many components have expected weight above ``threshold``."""
        return int((self.mixture_weights > threshold).sum())
