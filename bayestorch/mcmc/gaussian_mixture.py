"""Worked Gibbs example: a Bayesian Gaussian mixture with conjugate conditionals.

Talk section "MCMC / Gibbs". Model for 1-d data ``x_1..x_N`` and ``K`` components::

    weights ~ Dirichlet(alpha)
    precision_k ~ Gamma(a0, b0)                       (shape, rate)
    mean_k | precision_k ~ Normal(m0_k, 1 / (kappa0 precision_k))
    label_i ~ Categorical(weights)
    x_i | label_i ~ Normal(mean_{label_i}, 1 / precision_{label_i})

Every full conditional is standard, which is what makes Gibbs natural here:

* labels: ``p(label_i = k | ...) ∝ w_k N(x_i; mu_k, 1/tau_k)``, independent over i;
* weights: ``Dirichlet(alpha + n)``, with ``n_k`` the number of points labelled k;
* (mean_k, precision_k) jointly: the Normal-Gamma posterior of the points labelled k.

A chain's position packs ``[weights (K), means (K), precisions (K), labels (N)]`` (labels
as floats), so the example runs on the generic :class:`~bayestorch.mcmc.gibbs.Gibbs`
kernel with three blocks. Labels are only identified up to permutation when the prior is
symmetric; give ``prior_mean`` per component (``(K,)``) to break the symmetry.

References:
    Diebolt, Robert (1994). Estimation of finite mixture distributions through Bayesian
    sampling. JRSS B 56(2).
    Bishop (2006). Pattern Recognition and Machine Learning, sections 2.3.6 and 10.2.
    Murphy (2007). Conjugate Bayesian analysis of the Gaussian distribution (Normal-Gamma
    posterior and marginal likelihood).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Gamma

from bayestorch.mcmc.gibbs import Gibbs
from bayestorch.utils.random import draw, rand_open01

__all__ = ["BayesianGaussianMixture", "MixtureParameters", "NormalGammaPosterior"]


class MixtureParameters(NamedTuple):
    """Unpacked position. Shape: ``(..., K)`` each, ``labels`` ``(..., N)`` long."""

    weights: Tensor
    means: Tensor
    precisions: Tensor
    labels: Tensor


class NormalGammaPosterior(NamedTuple):
    """Conjugate posterior given the labels. Shape: every field ``(..., K)``.

    ``precision ~ Gamma(shape, rate)``, ``mean | precision ~ N(loc, 1 / (kappa precision))``,
    ``weights ~ Dirichlet(concentration)``.
    """

    loc: Tensor
    kappa: Tensor
    shape: Tensor
    rate: Tensor
    concentration: Tensor


class BayesianGaussianMixture:
    """A 1-d Bayesian Gaussian mixture with conjugate priors and its Gibbs sampler.

    Args:
        data: observations ``(N,)``.
        num_components: ``K``.
        concentration: Dirichlet ``alpha``, a number or ``(K,)``.
        prior_mean: ``m0``, a number or ``(K,)``.
        prior_kappa: ``kappa0`` (prior pseudo-count on the means), positive.
        prior_shape, prior_rate: ``a0, b0`` of the Gamma prior on each precision.

    Shape:
        positions ``(chains, 3 K + N)``.

    References:
        Diebolt, Robert (1994); Bishop (2006) section 2.3.6; Murphy (2007).

    Example::

        >>> x = torch.cat([torch.randn(50) - 3, torch.randn(50) + 3])
        >>> model = BayesianGaussianMixture(x, 2, prior_mean=torch.tensor([-1.0, 1.0]))
        >>> kernel = model.gibbs_kernel()
        >>> g = torch.Generator().manual_seed(0)
        >>> state = kernel.init(model.initial_position(4, generator=g))
        >>> state, _ = kernel.step(state, generator=g)
        >>> model.unpack(state.position).means.shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        data: Tensor,
        num_components: int,
        *,
        concentration: float | Tensor = 1.0,
        prior_mean: float | Tensor = 0.0,
        prior_kappa: float = 0.1,
        prior_shape: float = 2.0,
        prior_rate: float = 2.0,
    ) -> None:
        if not isinstance(data, Tensor) or data.dim() != 1 or not data.is_floating_point():
            shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
            raise ValueError(f"data must be a floating tensor of shape (N,), got {shape}")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("data holds NaN or inf")
        if int(num_components) < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        k = int(num_components)
        like = dict(dtype=data.dtype, device=data.device)
        self.data = data
        self.num_components = k
        self.concentration = torch.as_tensor(concentration, **like).expand(k).clone()
        self.prior_mean = torch.as_tensor(prior_mean, **like).expand(k).clone()
        for name, value in [
            ("prior_kappa", prior_kappa),
            ("prior_shape", prior_shape),
            ("prior_rate", prior_rate),
        ]:
            if not float(value) > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not bool((self.concentration > 0).all()):
            raise ValueError(f"concentration must be positive, got {self.concentration.tolist()}")
        self.prior_kappa = float(prior_kappa)
        self.prior_shape = float(prior_shape)
        self.prior_rate = float(prior_rate)

    # -- layout ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return 3 * self.num_components + self.data.numel()

    def unpack(self, position: Tensor) -> MixtureParameters:
        """Split positions ``(..., 3K + N)`` into weights, means, precisions and labels."""
        k = self.num_components
        w, m, t, z = position.split([k, k, k, self.data.numel()], dim=-1)
        return MixtureParameters(w, m, t, z.round().long())

    def pack(self, weights: Tensor, means: Tensor, precisions: Tensor, labels: Tensor) -> Tensor:
        """Inverse of :meth:`unpack`: ``(..., 3K + N)`` in the dtype of ``means``."""
        return torch.cat([weights, means, precisions, labels.to(means.dtype)], dim=-1)

    # -- densities --------------------------------------------------------------------------
    def log_joint(self, position: Tensor) -> Tensor:
        """``log p(x, labels, weights, means, precisions)`` (``-inf`` off the support).

        Shape:
            ``(chains, 3K + N) -> (chains,)``.
        """
        w, m, t, z = self.unpack(position)
        k = self.num_components
        valid = (w > 0).all(-1) & (t > 0).all(-1) & (z >= 0).all(-1) & (z < k).all(-1)
        w = torch.where(w > 0, w, 1.0)
        t = torch.where(t > 0, t, 1.0)
        z = z.clamp(0, k - 1)
        alpha = self.concentration
        lp = torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum() + ((alpha - 1) * w.log()).sum(-1)
        a0, b0, k0 = self.prior_shape, self.prior_rate, self.prior_kappa
        lp = lp + (a0 * math.log(b0) - math.lgamma(a0) + (a0 - 1) * t.log() - b0 * t).sum(-1)
        lp = lp + (
            0.5 * (math.log(k0) + t.log() - math.log(2 * math.pi))
            - 0.5 * k0 * t * (m - self.prior_mean) ** 2
        ).sum(-1)
        mz, tz, wz = m.gather(-1, z), t.gather(-1, z), w.gather(-1, z)
        lp = lp + (
            wz.log() + 0.5 * (tz.log() - math.log(2 * math.pi)) - 0.5 * tz * (self.data - mz) ** 2
        ).sum(-1)
        return torch.where(valid, lp, -math.inf)

    def posterior_given_labels(self, labels: Tensor) -> NormalGammaPosterior:
        """Conjugate posterior of weights, means and precisions given ``labels`` ``(..., N)``.

        Shape:
            ``(..., N)`` -> fields ``(..., K)``.
        """
        onehot = torch.nn.functional.one_hot(labels.long(), self.num_components).to(self.data)
        counts = onehot.sum(-2)
        total = (onehot * self.data[:, None]).sum(-2)
        mean = total / counts.clamp(min=1)
        scatter = (onehot * (self.data[:, None] - mean[..., None, :]) ** 2).sum(-2)
        k0, m0 = self.prior_kappa, self.prior_mean
        kappa = k0 + counts
        loc = (k0 * m0 + total) / kappa
        shape = self.prior_shape + 0.5 * counts
        rate = self.prior_rate + 0.5 * scatter + 0.5 * k0 * counts * (mean - m0) ** 2 / kappa
        return NormalGammaPosterior(loc, kappa, shape, rate, self.concentration + counts)

    def log_marginal_given_labels(self, labels: Tensor) -> Tensor:
        """``log p(x, labels)`` with weights, means and precisions integrated out.

        Dirichlet-multinomial times a Normal-Gamma marginal likelihood per component;
        used to enumerate the exact posterior of the labels on small data sets.

        Shape:
            ``(..., N)`` -> ``(...)``.

        References:
            Murphy (2007), equation (95).
        """
        post = self.posterior_given_labels(labels)
        alpha = self.concentration
        n = self.data.numel()
        counts = post.concentration - alpha
        log_labels = (
            torch.lgamma(alpha.sum())
            - torch.lgamma(alpha.sum() + n)
            + (torch.lgamma(post.concentration) - torch.lgamma(alpha)).sum(-1)
        )
        a0, b0, k0 = self.prior_shape, self.prior_rate, self.prior_kappa
        log_data = (
            torch.lgamma(post.shape)
            - math.lgamma(a0)
            + a0 * math.log(b0)
            - post.shape * post.rate.log()
            + 0.5 * (math.log(k0) - post.kappa.log())
            - 0.5 * counts * math.log(2 * math.pi)
        ).sum(-1)
        return log_labels + log_data

    # -- full conditionals ------------------------------------------------------------------
    def sample_labels(self, position: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw every label from ``p(label_i | x_i, weights, means, precisions)`` (Gumbel-max).

        Shape:
            ``(chains, 3K + N) -> (chains, N)`` (float labels).
        """
        w, m, t, _ = self.unpack(position)
        logits = (
            w.log()[:, None, :]
            + 0.5 * t.log()[:, None, :]
            - 0.5 * t[:, None, :] * (self.data[None, :, None] - m[:, None, :]) ** 2
        )
        u = rand_open01(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        return (logits - (-u.log()).log()).argmax(-1).to(position.dtype)

    def _gamma(self, concentration: Tensor, generator: torch.Generator | None) -> Tensor:
        # torch's Gamma sampler takes no generator: draw() seeds a private RNG from it.
        return draw(Gamma(concentration, torch.ones_like(concentration)), generator=generator)

    def sample_weights(self, position: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw the weights from ``Dirichlet(alpha + counts)`` (normalised Gamma draws).

        Shape:
            ``(chains, 3K + N) -> (chains, K)``.
        """
        post = self.posterior_given_labels(self.unpack(position).labels)
        g = self._gamma(post.concentration, generator).clamp(min=torch.finfo(position.dtype).tiny)
        return g / g.sum(-1, keepdim=True)

    def sample_components(
        self, position: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw (means, precisions) jointly from their Normal-Gamma posterior given the labels.

        Shape:
            ``(chains, 3K + N) -> (chains, 2K)`` as ``[means, precisions]``.
        """
        post = self.posterior_given_labels(self.unpack(position).labels)
        precision = self._gamma(post.shape, generator) / post.rate
        precision = precision.clamp(min=torch.finfo(position.dtype).tiny)
        noise = torch.randn(
            post.loc.shape, generator=generator, device=position.device, dtype=position.dtype
        )
        mean = post.loc + noise / (post.kappa * precision).sqrt()
        return torch.cat([mean, precision], dim=-1)

    # -- sampler ----------------------------------------------------------------------------
    def gibbs_kernel(self, scan: str = "systematic") -> Gibbs:
        """The Gibbs kernel over blocks labels, weights, (means, precisions).

        Shape:
            positions ``(chains, 3K + N)``.
        """
        k, n = self.num_components, self.data.numel()
        blocks = [
            list(range(3 * k, 3 * k + n)),  # labels
            list(range(k)),  # weights
            list(range(k, 3 * k)),  # means and precisions
        ]
        conditionals = [self.sample_labels, self.sample_weights, self.sample_components]
        return Gibbs(blocks, conditionals, self.log_joint, scan=scan)

    def initial_position(
        self, chains: int, generator: torch.Generator | None = None, *, from_prior: bool = True
    ) -> Tensor:
        """Starting positions ``(chains, 3K + N)``; labels drawn from their conditional.

        ``from_prior=True`` draws weights, means and precisions from the prior (dispersed
        starts: chains may settle in different labellings of the components, the label
        switching of mixture posteriors); ``False`` starts every chain at equal weights,
        the prior means and the prior mean precision ``a0 / b0`` (one labelling, set by
        ``prior_mean``).
        """
        like = dict(dtype=self.data.dtype, device=self.data.device)
        k = self.num_components
        if from_prior:
            g = self._gamma(self.concentration.expand(chains, k), generator)
            weights = g / g.sum(-1, keepdim=True)
            precision = self._gamma(torch.full((chains, k), self.prior_shape, **like), generator)
            precision = precision / self.prior_rate
            noise = torch.randn((chains, k), generator=generator, **like)
            means = self.prior_mean + noise / (self.prior_kappa * precision).sqrt()
        else:
            weights = torch.full((chains, k), 1.0 / k, **like)
            means = self.prior_mean.expand(chains, k)
            precision = torch.full((chains, k), self.prior_shape / self.prior_rate, **like)
        labels = torch.zeros((chains, self.data.numel()), **like)
        position = self.pack(weights, means, precision, labels)
        return self.pack(weights, means, precision, self.sample_labels(position, generator))
