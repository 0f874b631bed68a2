"""Every MCMC kernel of bayestorch runs the shipped conformance suite
(bayestorch.testing.cases.KernelTestCase): shapes, reproducibility, exact resume, and
invariance of a correlated Gaussian. A kernel class missing from the registry fails."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

import bayestorch.mcmc as mcmc
import bayestorch.segmentation as segmentation
from bayestorch.mcmc.base import Kernel
from bayestorch.testing.cases import KernelTestCase, check_kernel_invariance, conformance_target


def _gaussian_of(log_prob_fn):
    """The GaussianTarget behind a bound ``target.log_prob`` (for exact conditionals)."""
    return log_prob_fn.__self__


def _exact_gibbs(log_prob_fn):
    """Coordinate-wise Gibbs with the Gaussian's exact conditionals."""
    target = _gaussian_of(log_prob_fn)

    def conditional(i):
        def draw(x, generator):
            precision = target.precision.to(x.dtype)
            rest = [j for j in range(target.dim) if j != i]
            var = 1.0 / precision[i, i]
            centred = x[:, rest] - target.mean.to(x.dtype)[rest]
            mean = target.mean.to(x.dtype)[i] - var * centred @ precision[i, rest]
            noise = torch.randn(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
            return (mean + var.sqrt() * noise)[:, None]

        return draw

    return mcmc.Gibbs([[i] for i in range(target.dim)], [conditional(i) for i in range(target.dim)])


def _imh(log_prob_fn):
    target = _gaussian_of(log_prob_fn)
    scale = 2.0 * target.variance.sqrt()
    return mcmc.IndependentMetropolis(log_prob_fn, Independent(Normal(target.mean, scale), 1))


# name -> factory(log_prob_fn); kernels are used without warm-up, at fixed settings.
KERNELS = {
    "HMC": lambda lp, compile=False: mcmc.HMC(lp, 5, step_size=0.3, compile=compile),
    "HMC-jitter": lambda lp, compile=False: mcmc.HMC(
        lp, 5, step_size=0.3, step_size_jitter=0.5, compile=compile
    ),
    "NUTS": lambda lp, compile=False: mcmc.NUTS(lp, step_size=0.4, compile=compile),
    "ChEESHMC": lambda lp, compile=False: mcmc.ChEESHMC(
        lp, step_size=0.3, trajectory_length=1.5, compile=compile
    ),
    "RandomWalkMetropolis": lambda lp: mcmc.RandomWalkMetropolis(lp, 0.8),
    "IndependentMetropolis": _imh,
    "SliceSampler": lambda lp: mcmc.SliceSampler(lp, 1.5),
    "SliceSampler-direction": lambda lp: mcmc.SliceSampler(lp, 1.5, method="random_direction"),
    "Gibbs": _exact_gibbs,
}

# Model-specific kernels that do not take a generic (chains, dim) log density (the
# discrete-state Potts and partition samplers have their own enumeration tests in
# tests/mcmc/test_swendsen_wang.py and tests/segmentation/).
NOT_GENERIC = {mcmc.BayesianGaussianMixture, segmentation.GeneralisedSwendsenWang}


def test_registry_is_complete():
    classes = {
        getattr(package, name)
        for package in (mcmc, segmentation)
        for name in package.__all__
        if isinstance(getattr(package, name), type)
        and issubclass(getattr(package, name), Kernel)
        and getattr(package, name) is not Kernel
    }
    target = conformance_target()
    covered = {type(factory(target.log_prob)) for factory in KERNELS.values()}
    assert classes - NOT_GENERIC <= covered, f"kernels missing: {classes - NOT_GENERIC - covered}"
    assert set(mcmc.KERNELS.values()) <= covered


# The HMC family (a compile= argument) runs the suite eager and compiled.
HMC_FAMILY = {"HMC", "HMC-jitter", "NUTS", "ChEESHMC"}


def _cases():
    for name in sorted(KERNELS):
        if name in HMC_FAMILY:
            yield pytest.param(name, False, id=f"{name}-eager")
            yield pytest.param(name, True, id=f"{name}-compiled", marks=pytest.mark.compiled)
        else:
            yield pytest.param(name, False, id=name)


@pytest.mark.parametrize("kernel_name, hmc_compile", list(_cases()), indirect=["hmc_compile"])
class TestKernels(KernelTestCase):
    num_chains = 2000
    num_steps = 4

    @pytest.fixture(autouse=True)
    def _select(self, kernel_name, hmc_compile):
        factory = KERNELS[kernel_name]
        self.factory = (lambda lp: factory(lp, compile=True)) if hmc_compile else factory

    def make_kernel(self, log_prob_fn):
        return self.factory(log_prob_fn)


def test_broken_kernel_fails_the_invariance_check():
    """The check has power: a random walk that always accepts drifts off the target."""

    class AlwaysAccept(mcmc.RandomWalkMetropolis):
        def step(self, state, generator=None):
            noise = torch.randn(
                state.position.shape, generator=generator, dtype=state.position.dtype
            )
            position = state.position + 0.5 * noise
            new, info = super().step(state, generator)
            return new._replace(position=position, log_prob=self.log_prob_fn(position)), info

    target = conformance_target()
    with pytest.raises(AssertionError, match="Kolmogorov"):
        check_kernel_invariance(
            AlwaysAccept(target.log_prob, 0.5), target, 2000, 4, torch.Generator().manual_seed(0)
        )
