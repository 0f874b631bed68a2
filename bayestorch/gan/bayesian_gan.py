"""The Bayesian GAN: SGHMC over several generator and discriminator weight samples.

Talk section "Bayesian GANs". Saatchi & Wilson (2017) put priors on the generator's weights
``theta_g`` and the discriminator's ``theta_d`` and sample the conditional posteriors
alternately (their eqs. 1-2), marginalising ``z`` by simple Monte Carlo::

    p(theta_g | z, theta_d) ∝ prod_i D(G(z_i; theta_g); theta_d) p(theta_g)
    p(theta_d | x, z, theta_g) ∝ prod_i D(x_i; theta_d)
                                 * prod_i (1 - D(G(z_i; theta_g); theta_d)) p(theta_d)

with ``num_generators`` samples of ``theta_g`` and ``num_discriminators`` of ``theta_d``,
each moved by SGHMC (:class:`bayestorch.mcmc.sghmc.SGHMC`).

What this implementation does (the paper, not the authors' released code):

* True SGHMC (Chen, Fox & Guestrin 2014): momentum, friction and injected Gaussian noise of
  variance ``2 * friction * lr / num_data``. The released code instead runs Adam with added
  noise, which does not sample the posterior.
* Gaussian priors ``N(0, prior_std^2)`` on all weights, scaled correctly against the
  likelihood: the energy is ``num_data * mean mini-batch loss + |theta|^2 / (2 prior_std^2)``
  (the released code divides the prior by the data size, i.e. mis-scales it).
* Monte Carlo over ``z``: each generator sample draws ``num_z_samples * n`` latents a step.
* Feature matching is *off* by default (the released code adds it to the generator loss); set
  ``feature_matching=True`` to use it (the discriminator must have a ``features(x)`` method).
* The sums over the other player's samples are estimated without bias at linear cost: each
  discriminator sees real data against fakes pooled evenly from all generators, and each
  generator's fakes are split evenly across all discriminators. A step therefore costs about
  ``num_generators + num_discriminators`` forward/backward passes, not their product.
* The likelihood counts ``num_data`` generated points against ``num_data`` real ones (the
  mini-batch means are scaled by ``num_data``).
* The latent prior's parameters (mixture means, scales, weights, sticks) and an optional
  responsibility network are point-estimated by Adam on the same generator loss: any
  :class:`~bayestorch.gan.priors.LatentPrior` plugs in unchanged.

Every ``keep_every`` steps after ``burn_in`` the generators' current weights are kept (the
last ``max_kept`` of them); :meth:`BayesianGAN.sample` draws each output from a uniformly
chosen kept weight sample (the current ones before anything is kept).

References:
    Saatchi & Wilson (2017). Bayesian GAN. NeurIPS.
    Chen, Fox & Guestrin (2014). Stochastic Gradient Hamiltonian Monte Carlo. ICML.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from bayestorch.gan.gan import GANBase, _check_betas, check_components, check_latent_dim
from bayestorch.gan.losses import discriminator_loss, flatten_logits
from bayestorch.gan.priors import LatentPrior
from bayestorch.gan.responsibility import responsibility_loss
from bayestorch.mcmc.sghmc import SGHMC

__all__ = ["BayesianGAN"]


def _fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy with every submodule's ``reset_parameters`` re-run (a new initialisation
    from the global RNG), so weight samples start apart."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return clone


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class BayesianGAN(GANBase):
    """Bayesian GAN (Saatchi & Wilson 2017) with true SGHMC and any latent prior.

    Args:
        generator, discriminator: templates; sample 0 is the module given, the others are
            re-initialised copies.
        prior: a :class:`~bayestorch.gan.priors.LatentPrior`.
        num_generators, num_discriminators: ``J_g``, ``J_d`` weight samples (chains).
        num_data: ``N``, the size of the real data set.
        lr, friction: SGHMC's (see :class:`~bayestorch.mcmc.sghmc.SGHMC`).
        prior_std: standard deviation of the Gaussian prior on every weight.
        num_z_samples: Monte Carlo batches of ``z`` per generator sample and step.
        feature_matching: replace the generator's likelihood by feature matching (off, as in
            the paper; needs ``discriminator.features``).
        loss: only ``"ns"`` (the paper's likelihood).
        responsibility, responsibility_weight: as in :class:`~bayestorch.gan.GAN`.
        keep_every, max_kept, burn_in: which generator weight samples are kept for
            :meth:`sample` (``max_kept`` counts single generators' weights).
        aux_lr, aux_betas: Adam for the prior's and responsibility net's parameters.
        noise_estimate: SGHMC's mini-batch noise handling, ``"none"`` or ``"bhat"``.
        preconditioner: SGHMC's mass matrix: ``None`` (identity, the paper's) or
            ``"rmsprop"`` (adaptive diagonal, frozen automatically after ``burn_in`` steps so
            that the kept samples come from exact SGHMC with that mass).
        precond_eps: floor of the preconditioner's denominator, in mean-loss gradient units:
            it caps the inverse mass at ``1 / precond_eps``. Weights with near-zero gradient
            (dead units) otherwise get a huge inverse mass, hence a huge step and noise, and
            the chains blow up (seen at 1e-8 on the ring data).

    Shape:
        ``training_step(real)``: ``real`` ``(n, ...)``; ``sample(n)``: ``(n, ...)``.

    References:
        Saatchi & Wilson (2017); Chen, Fox & Guestrin (2014).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        prior: LatentPrior,
        num_generators: int = 2,
        num_discriminators: int = 2,
        num_data: int = 1,
        lr: float = 1e-3,
        friction: float = 0.1,
        prior_std: float = 1.0,
        num_z_samples: int = 1,
        feature_matching: bool = False,
        loss: str = "ns",
        responsibility: nn.Module | None = None,
        responsibility_weight: float = 1.0,
        keep_every: int = 10,
        max_kept: int = 20,
        burn_in: int = 0,
        aux_lr: float = 2e-4,
        aux_betas: Sequence[float] = (0.5, 0.999),
        noise_estimate: str = "none",
        preconditioner: str | None = None,
        precond_eps: float = 1e-4,
    ):
        super().__init__()
        check_latent_dim(generator, prior)
        check_components(responsibility, prior)
        if loss != "ns":
            raise ValueError(
                f"loss must be 'ns' for the Bayesian GAN (its likelihood is the discriminator's "
                f"Bernoulli), got {loss!r}"
            )
        self.loss = loss
        num_generators = _positive_int("num_generators", num_generators)
        num_discriminators = _positive_int("num_discriminators", num_discriminators)
        self.num_z_samples = _positive_int("num_z_samples", num_z_samples)
        self.keep_every = _positive_int("keep_every", keep_every)
        self.max_kept = _positive_int("max_kept", max_kept)
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
            raise ValueError(f"burn_in must be a non-negative integer, got {burn_in!r}")
        self.burn_in = burn_in
        self.feature_matching = bool(feature_matching)
        if self.feature_matching and not hasattr(discriminator, "features"):
            raise ValueError(
                "feature_matching=True needs a discriminator with a features(x) method"
            )
        self.generators = nn.ModuleList(
            [generator] + [_fresh_copy(generator) for _ in range(num_generators - 1)]
        )
        self.discriminators = nn.ModuleList(
            [discriminator] + [_fresh_copy(discriminator) for _ in range(num_discriminators - 1)]
        )
        self.prior = prior
        self.responsibility = responsibility
        self.responsibility_weight = float(responsibility_weight)
        sampler_args = dict(
            lr=lr,
            friction=friction,
            num_data=num_data,
            prior_std=prior_std,
            noise_estimate=noise_estimate,
            preconditioner=preconditioner,
            precond_eps=precond_eps,
        )
        self.g_sampler = SGHMC(self.generators.parameters(), **sampler_args)
        self.d_sampler = SGHMC(self.discriminators.parameters(), **sampler_args)
        aux = list(prior.parameters())
        if responsibility is not None:
            aux += list(responsibility.parameters())
        self.aux_optimizer = (
            torch.optim.Adam(aux, lr=aux_lr, betas=_check_betas(aux_betas)) if aux else None
        )
        self.kept: list[dict[str, Tensor]] = []
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    @property
    def num_generators(self) -> int:
        return len(self.generators)

    @property
    def num_discriminators(self) -> int:
        return len(self.discriminators)

    # -- training ------------------------------------------------------------------------------
    def _fake_batches(self, n: int, generator) -> tuple[Tensor, Tensor]:
        """``n`` fakes from each generator sample: ``(J_g, n, ...)``, components ``(J_g, n)``."""
        z, component = self.prior.rsample(
            (self.num_generators, n), generator, return_component=True
        )
        fakes = torch.stack([g(z[j]) for j, g in enumerate(self.generators)])
        return fakes, component

    def discriminator_step(self, real: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One SGHMC step of every discriminator sample; returns their mean loss."""
        n = real.shape[0]
        per_generator = -(-n // self.num_generators)  # ceil: about n fakes in all
        with torch.no_grad():
            fakes, _ = self._fake_batches(per_generator, generator)
        fakes = fakes.flatten(0, 1)
        losses = torch.stack(
            [
                discriminator_loss(
                    flatten_logits(d(real), n), flatten_logits(d(fakes), fakes.shape[0])
                )
                for d in self.discriminators
            ]
        )
        self.d_sampler.zero_grad(set_to_none=True)
        losses.sum().backward()  # each sample's energy is its own loss (times num_data)
        self.d_sampler.step(generator=generator)
        return losses.detach().mean()

    def _generator_energy(self, fakes: Tensor, real: Tensor | None) -> Tensor:
        """Sum over generator samples of each one's mean loss, its fakes split evenly across
        the discriminator samples."""
        num_fakes = fakes.shape[1]
        total = fakes.new_zeros(())
        for d, chunk in zip(
            self.discriminators, fakes.tensor_split(self.num_discriminators, dim=1), strict=True
        ):
            if chunk.shape[1] == 0:
                continue
            flat = chunk.flatten(0, 1)
            if self.feature_matching:
                fake_features = d.features(flat).reshape(self.num_generators, chunk.shape[1], -1)
                real_features = d.features(real).reshape(real.shape[0], -1).mean(0)
                gap = (fake_features.mean(1) - real_features).square().sum(-1)
                total = total + gap.sum() * (chunk.shape[1] / num_fakes)
            else:
                logits = flatten_logits(d(flat), flat.shape[0])
                total = total + F.softplus(-logits).sum() / num_fakes
        return total

    def generator_step(
        self, n: int, real: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """One SGHMC step of every generator sample (and an Adam step of the prior and the
        responsibility net); returns the mean generator loss and the cross-entropy."""
        fakes, component = self._fake_batches(n * self.num_z_samples, generator)
        energy = self._generator_energy(fakes, real)
        total, r_loss = energy, None
        if self.responsibility is not None:
            logits = self.responsibility(fakes.flatten(0, 1))
            r_loss = responsibility_loss(logits, component.flatten())
            total = total + self.responsibility_weight * self.num_generators * r_loss
        self.g_sampler.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.g_sampler.step(generator=generator)
        if self.aux_optimizer is not None:
            self.aux_optimizer.step()
        g_loss = energy.detach() / self.num_generators
        return g_loss, None if r_loss is None else r_loss.detach()

    def training_step(
        self, real: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """One SGHMC step of the discriminators, then of the generators; keeps a weight sample
        every ``keep_every`` steps after ``burn_in``.

        Returns:
            ``{"d_loss", "g_loss"[, "responsibility_loss"]}`` (means over samples) as floats.

        Shape:
            ``real``: ``(n, ...)``.
        """
        d_loss = self.discriminator_step(real, generator)
        g_loss, r_loss = self.generator_step(
            real.shape[0], real if self.feature_matching else None, generator
        )
        self.num_steps += 1
        step = int(self.num_steps)
        if step == self.burn_in:
            self.freeze_preconditioner()  # adapted during burn-in, fixed while sampling
        if step > self.burn_in and (step - self.burn_in) % self.keep_every == 0:
            self.keep_current()
        names, values = ["d_loss", "g_loss"], [d_loss, g_loss]
        if r_loss is not None:
            names.append("responsibility_loss")
            values.append(r_loss)
        return dict(zip(names, torch.stack(values).tolist(), strict=True))

    def freeze_preconditioner(self, frozen: bool = True) -> None:
        """Stop adapting both samplers' ``"rmsprop"`` mass matrices (a no-op without one)."""
        self.g_sampler.freeze_preconditioner(frozen)
        self.d_sampler.freeze_preconditioner(frozen)

    def keep_current(self) -> None:
        """Keep a copy of every generator sample's current weights (oldest dropped beyond
        ``max_kept``)."""
        for g in self.generators:
            self.kept.append({k: v.detach().clone() for k, v in g.state_dict().items()})
        del self.kept[: max(0, len(self.kept) - self.max_kept)]

    # -- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, return_component: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` samples, each from a uniformly chosen kept generator weight sample (the
        current generators while none is kept).

        Shape:
            ``(n, ...)``, and ``(n,)`` component indices with ``return_component``.
        """
        z, component = self.prior.rsample((n,), generator, return_component=True)
        template = self.generators[0]
        pool = self.kept or [None] * self.num_generators
        which = torch.randint(len(pool), (n,), generator=generator, device=z.device)
        order = torch.argsort(which)
        counts = torch.bincount(which, minlength=len(pool)).tolist()
        outputs = []
        for i, chunk in enumerate(z[order].split(counts)):
            if chunk.shape[0] == 0:
                continue
            if self.kept:
                outputs.append(functional_call(template, self.kept[i], (chunk,)))
            else:
                outputs.append(self.generators[i](chunk))
        x = torch.empty_like(torch.cat(outputs))
        x[order] = torch.cat(outputs)
        return (x, component) if return_component else x

    # -- checkpoints -------------------------------------------------------------------------------
    def _optimizers(self) -> dict[str, torch.optim.Optimizer | None]:
        return {
            "generator": self.g_sampler,
            "discriminator": self.d_sampler,
            "aux": self.aux_optimizer,
        }

    def checkpoint_state(self) -> dict:
        """Module state, sampler/optimizer states and the kept weight samples."""
        state = super().checkpoint_state()
        state["kept"] = [{k: v.clone() for k, v in s.items()} for s in self.kept]
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what :meth:`checkpoint_state` returned."""
        super().load_checkpoint_state(state)
        device = self.num_steps.device
        self.kept = [{k: v.to(device) for k, v in s.items()} for s in state["kept"]]
