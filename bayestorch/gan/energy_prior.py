"""An HMC-sampled latent prior: ``p(z) ∝ exp(-energy(z)) N(z; 0, I)`` with a learned energy.

Talk section "GANs" (work 3: drawing z from a complex, learned p(z)). The draws come from
persistent HMC chains (:func:`bayestorch.mcmc.hmc.hmc_step`, one chain per requested draw):
each call to :meth:`EnergyPrior.rsample` advances the chains ``num_transitions`` HMC
transitions (``warmup_transitions`` when the number of draws changes and the chains restart
from N(0, I)), as persistent contrastive divergence does (Tieleman 2008).

The draws are not reparameterised: the energy learns from the GAN's generator loss ``l(z)``
through the score-function identity ``grad_phi E_p[l] = -Cov_p(l, grad_phi energy)``, whose
Monte Carlo surrogate is :meth:`EnergyPrior.surrogate_loss` (the GAN adds it to the
generator's loss when the prior has one).

References:
    Neal (2011). MCMC using Hamiltonian dynamics. Handbook of MCMC.
    Tieleman (2008). Training restricted Boltzmann machines using approximations to the
    likelihood gradient. ICML.
    Pang, Han, Nijkamp, Zhu & Wu (2020). Learning Latent Space Energy-Based Prior Model.
    NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bayestorch.gan.priors import _check_positive_float, _check_positive_int, _sample_shape
from bayestorch.mcmc.hmc import hmc_init, hmc_step

__all__ = ["EnergyPrior"]


class EnergyPrior(nn.Module):
    """``p(z) ∝ exp(-energy(z)) N(z; 0, I)``, drawn by HMC from persistent chains.

    Args:
        energy: ``(n, dim) -> (n,)`` or ``(n, 1)`` (an ``nn.Module``; its parameters learn
            through :meth:`surrogate_loss`).
        dim: latent dimension.
        step_size, num_leapfrog: HMC's (identity mass).
        num_transitions: HMC transitions per call (persistent chains).
        warmup_transitions: transitions after a (re)start of the chains from N(0, I).

    Shape:
        ``rsample((n,))``: ``(n, dim)``; ``log_prob``: ``(n,)`` (unnormalised).

    References:
        Neal (2011); Tieleman (2008); Pang et al. (2020).
    """

    num_components = 1

    def __init__(
        self,
        energy: nn.Module,
        dim: int,
        step_size: float = 0.2,
        num_leapfrog: int = 5,
        num_transitions: int = 2,
        warmup_transitions: int = 30,
    ):
        super().__init__()
        self.energy = energy
        self.dim = _check_positive_int("dim", dim)
        self.num_leapfrog = _check_positive_int("num_leapfrog", num_leapfrog)
        self.num_transitions = _check_positive_int("num_transitions", num_transitions)
        self.warmup_transitions = _check_positive_int("warmup_transitions", warmup_transitions)
        self.register_buffer(
            "step_size", torch.tensor(_check_positive_float("step_size", step_size))
        )
        self.register_buffer("chains", torch.zeros(0, dim))

    @property
    def weights(self) -> Tensor:
        return torch.ones(1, device=self.chains.device)

    mixture_weights = weights

    def log_prob(self, z: Tensor) -> Tensor:
        """Unnormalised ``-energy(z) - |z|^2 / 2``.

        Shape:
            ``(n, dim)`` -> ``(n,)``.
        """
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(
                f"z must have shape (..., dim) with dim={self.dim}, got {tuple(z.shape)}"
            )
        flat = z.reshape(-1, self.dim)
        energy = self.energy(flat).reshape(flat.shape[0])
        return (-energy - 0.5 * flat.square().sum(-1)).reshape(z.shape[:-1])

    def rsample(
        self,
        sample_shape: Sequence[int] | int = (),
        generator: torch.Generator | None = None,
        return_component: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Advance the persistent chains and return their positions (no gradient: not
        reparameterised).

        Shape:
            ``sample_shape + (dim,)``; component ``sample_shape`` (all 0).
        """
        shape = _sample_shape(sample_shape)
        n = math.prod(shape)
        transitions = self.num_transitions
        like = dict(device=self.step_size.device, dtype=self.step_size.dtype)
        if self.chains.shape[0] != n:
            self.chains = torch.randn(n, self.dim, generator=generator, **like)
            transitions = self.warmup_transitions
        state = hmc_init(self.chains, self.log_prob)
        inverse_mass = torch.ones(self.dim, **like)
        for _ in range(transitions):
            state, _ = hmc_step(
                state,
                self.log_prob,
                step_size=self.step_size,
                inverse_mass_matrix=inverse_mass,
                num_steps=self.num_leapfrog,
                generator=generator,
            )
        self.chains = state.position.detach()
        z = self.chains.reshape(shape + (self.dim,))
        if return_component:
            return z, torch.zeros(shape, dtype=torch.long, device=z.device)
        return z

    forward = rsample

    def sample(self, sample_shape=(), generator=None, return_component=False):
        return self.rsample(sample_shape, generator, return_component)

    def surrogate_loss(self, z: Tensor, loss_per_sample: Tensor) -> Tensor:
        """A loss whose gradient in the energy's parameters estimates ``grad E_p[loss(z)]``.

        ``-mean((l_i - mean l) * energy(z_i))``: its gradient is ``-Cov(l, grad energy)``,
        the score-function gradient of ``E_p[l]`` (the normaliser's gradient is the
        ``- mean l`` baseline).

        Shape:
            ``z``: ``(n, dim)``; ``loss_per_sample``: ``(n,)`` -> scalar.
        """
        centred = (loss_per_sample - loss_per_sample.mean()).detach()
        energy = self.energy(z.detach()).reshape(centred.shape)
        return -(centred * energy).mean()
