"""A GAN that owns its optimizers: one call trains one step; any latent prior plugs in.

Talk section "GANs". ``GAN(generator, discriminator, prior)`` trains by alternating Adam
updates: ``d_steps`` discriminator updates on the real batch against fresh fakes, then one
generator update. The prior's parameters (mixture means, scales, weights or sticks) and the
optional responsibility network are trained with the generator, by the same optimizer.

References:
    Goodfellow et al. (2014). Generative Adversarial Nets. NeurIPS.
    Gulrajani et al. (2017). Improved Training of Wasserstein GANs. NeurIPS.
    Huang, Xu et al. (2021). GAN-based Gaussian Mixture Model Responsibility Learning. ICPR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayestorch.gan.losses import (
    check_loss,
    discriminator_loss,
    flatten_logits,
    generator_loss,
    gradient_penalty,
)
from bayestorch.gan.priors import LatentPrior
from bayestorch.gan.responsibility import responsibility_loss

__all__ = ["GAN", "check_components", "check_latent_dim"]


def check_latent_dim(generator: nn.Module, prior: LatentPrior, name: str = "generator") -> None:
    """Raise ``ValueError`` when the generator's first ``nn.Linear`` does not take ``prior.dim``
    inputs (generators without a Linear layer are not checked)."""
    if not (isinstance(prior, nn.Module) and hasattr(prior, "rsample") and hasattr(prior, "dim")):
        raise TypeError(
            f"prior must be a latent prior Module with rsample and dim (GaussianPrior, "
            f"GaussianMixturePrior, DirichletProcessPrior, EnergyPrior), got "
            f"{type(prior).__name__}"
        )
    first = next((m for m in generator.modules() if isinstance(m, nn.Linear)), None)
    if first is not None and first.in_features != prior.dim:
        raise ValueError(
            f"latent dimensions do not match: the prior draws z of dim={prior.dim} but the "
            f"{name}'s first Linear layer takes in_features={first.in_features}"
        )


def check_components(responsibility: nn.Module | None, prior: LatentPrior) -> None:
    """Raise ``ValueError`` when a responsibility net's ``num_components`` is not the prior's."""
    if responsibility is None:
        return
    k = getattr(responsibility, "num_components", None)
    if k is not None and k != prior.num_components:
        raise ValueError(
            f"responsibility.num_components={k} must equal prior.num_components="
            f"{prior.num_components}"
        )


def _check_betas(betas: Sequence[float]) -> tuple[float, float]:
    betas = tuple(float(b) for b in betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    return betas


class GANBase(nn.Module):
    """What :class:`GAN` and :class:`~bayestorch.gan.bayesian_gan.BayesianGAN` share:
    responsibilities and exact checkpoints of the module plus its optimizers/samplers
    (subclasses list those in :meth:`_optimizers`)."""

    responsibility: nn.Module | None

    def _optimizers(self) -> dict[str, torch.optim.Optimizer | None]:
        raise NotImplementedError

    @torch.no_grad()
    def responsibilities(self, x: Tensor) -> Tensor:
        """``q(k | x)`` from the responsibility network.

        Shape:
            ``(n, ...)`` -> ``(n, K)``.
        """
        if self.responsibility is None:
            raise ValueError(
                f"this {type(self).__name__} has no responsibility network (responsibility=None)"
            )
        return torch.softmax(self.responsibility(x), -1)

    def checkpoint_state(self) -> dict:
        """Everything needed to resume exactly: ``{"module": state_dict, "optimizers": ...}``."""
        return {
            "module": self.state_dict(),
            "optimizers": {
                name: None if opt is None else opt.state_dict()
                for name, opt in self._optimizers().items()
            },
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what :meth:`checkpoint_state` returned."""
        self.load_state_dict(state["module"])
        for name, opt in self._optimizers().items():
            if opt is not None:
                opt.load_state_dict(state["optimizers"][name])


class GAN(GANBase):
    """A GAN with a pluggable latent prior, trained by :meth:`training_step`.

    Args:
        generator: ``(n, prior.dim) -> (n, ...)`` data.
        discriminator: ``(n, ...) -> (n,)`` or ``(n, 1)`` logits (critic values for WGAN).
        prior: a :class:`~bayestorch.gan.priors.LatentPrior`.
        loss: ``"ns"`` (non-saturating) or ``"wgan-gp"``.
        lr, betas: Adam's, for both players.
        responsibility: optional q(k | x) network (``(n, ...) -> (n, K)`` logits), trained with
            the generator on ``cross_entropy(q(G(z)), k)``.
        responsibility_weight: weight of that cross-entropy in the generator's loss.
        gp_weight: gradient-penalty weight (``wgan-gp`` only).
        d_steps: discriminator updates per generator update (each on the same real batch,
            against fresh fakes).

    State: :meth:`checkpoint_state` returns the module's ``state_dict`` and both optimizers'
    states; :meth:`load_checkpoint_state` restores them, after which training continues
    exactly as without the interruption (given the same data and generator states).

    Shape:
        ``training_step(real)``: ``real`` ``(n, ...)``; ``sample(n)``: ``(n, ...)``.

    References:
        Goodfellow et al. (2014); Gulrajani et al. (2017); Huang, Xu et al. (2021).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        prior: LatentPrior,
        loss: str = "ns",
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        responsibility: nn.Module | None = None,
        responsibility_weight: float = 1.0,
        gp_weight: float = 10.0,
        d_steps: int = 1,
    ):
        super().__init__()
        check_latent_dim(generator, prior)
        check_components(responsibility, prior)
        self.loss = check_loss(loss)
        if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
            raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.generator, self.discriminator, self.prior = generator, discriminator, prior
        self.responsibility = responsibility
        self.responsibility_weight = float(responsibility_weight)
        self.gp_weight = float(gp_weight)
        self.d_steps = d_steps
        betas = _check_betas(betas)
        g_params = list(generator.parameters()) + list(prior.parameters())
        if responsibility is not None:
            g_params += list(responsibility.parameters())
        self.g_optimizer = torch.optim.Adam(g_params, lr=lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    # -- training --------------------------------------------------------------------------
    def discriminator_step(self, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One discriminator update on ``real`` against fresh fakes; returns its loss."""
        n = real.shape[0]
        with torch.no_grad():
            fake = self.generator(self.prior.rsample((n,), generator))
        real_logits = flatten_logits(self.discriminator(real), n)
        fake_logits = flatten_logits(self.discriminator(fake), n)
        loss = discriminator_loss(real_logits, fake_logits, self.loss)
        if self.loss == "wgan-gp":
            loss = loss + self.gp_weight * gradient_penalty(
                self.discriminator, real, fake, generator
            )
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return loss.detach()

    def generator_step(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """One generator (+ prior, + responsibility) update on ``n`` fakes; returns the
        generator loss and the responsibility cross-entropy (``None`` without one)."""
        z, component = self.prior.rsample((n,), generator, return_component=True)
        fake = self.generator(z)
        fake_logits = flatten_logits(self.discriminator(fake), n)
        g_loss = generator_loss(fake_logits, self.loss)
        total, r_loss = g_loss, None
        surrogate_loss = getattr(self.prior, "surrogate_loss", None)
        if surrogate_loss is not None:
            # a prior drawn without reparameterisation (EnergyPrior) learns by score function
            per_sample = F.softplus(-fake_logits) if self.loss == "ns" else -fake_logits
            total = total + surrogate_loss(z, per_sample)
        if self.responsibility is not None:
            r_loss = responsibility_loss(self.responsibility(fake), component)
            total = g_loss + self.responsibility_weight * r_loss
        self.g_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.g_optimizer.step()
        return g_loss.detach(), None if r_loss is None else r_loss.detach()

    def training_step(
        self, real: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """``d_steps`` discriminator updates then one generator update on a real batch.

        Returns:
            ``{"d_loss", "g_loss"[, "responsibility_loss"]}`` as floats (one device sync).

        Shape:
            ``real``: ``(n, ...)``.
        """
        for _ in range(self.d_steps):
            d_loss = self.discriminator_step(real, generator)
        g_loss, r_loss = self.generator_step(real.shape[0], generator)
        self.num_steps += 1
        names = ["d_loss", "g_loss"]
        values = [d_loss, g_loss]
        if r_loss is not None:
            names.append("responsibility_loss")
            values.append(r_loss)
        return dict(zip(names, torch.stack(values).tolist(), strict=True))

    # -- generation and inference ------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, return_component: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` generated samples (no gradient; the modules' train/eval mode is left as is).

        Shape:
            ``(n, ...)``, and ``(n,)`` component indices with ``return_component``.
        """
        z, component = self.prior.rsample((n,), generator, return_component=True)
        x = self.generator(z)
        return (x, component) if return_component else x

    def _optimizers(self) -> dict[str, torch.optim.Optimizer | None]:
        return {"generator": self.g_optimizer, "discriminator": self.d_optimizer}
