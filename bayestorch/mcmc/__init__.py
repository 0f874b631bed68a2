"""Markov chain Monte Carlo: kernels, warm-up adaptation, diagnostics and the sampling runner.

Every kernel follows one protocol (``bayestorch.mcmc.base``): ``state = kernel.init(position)``
with ``position`` of shape ``(chains, dim)``, ``state, info = kernel.step(state, generator)``;
tuned values are buffers; ``sample()`` runs warm-up and draws for any of them (and splits
chains over ``torch.distributed`` ranks). Also here: discrete-state samplers on graphs
(Swendsen–Wang and heat-bath Gibbs for Potts models), a conjugate Gibbs sampler for
Bayesian Gaussian mixtures, and SGHMC, a ``torch.optim``-style sampler over any network's
parameters. The image-segmentation models built on the graph kernels live in
:mod:`bayestorch.segmentation`.
"""

from __future__ import annotations

from bayestorch._deprecation import moved_attributes
from bayestorch.mcmc.base import Kernel
from bayestorch.mcmc.chees import ChEESHMC, ChEESInfo
from bayestorch.mcmc.diagnostics import (
    effective_sample_size,
    ess_bulk,
    ess_quantile,
    ess_tail,
    format_summary,
    mcse_mean,
    mcse_sd,
    rank_normalize,
    rhat,
    summary,
)
from bayestorch.mcmc.gaussian_mixture import BayesianGaussianMixture
from bayestorch.mcmc.gibbs import Gibbs, GibbsInfo, GibbsState, gibbs_step
from bayestorch.mcmc.graph import connected_components, lattice_edges
from bayestorch.mcmc.hmc import HMC, HMCInfo, HMCState, hmc_step
from bayestorch.mcmc.metropolis import (
    IMHState,
    IndependentMetropolis,
    MetropolisInfo,
    RandomWalkMetropolis,
    RWMState,
    imh_step,
    rwm_step,
)
from bayestorch.mcmc.nuts import NUTS, NUTSInfo, nuts_step
from bayestorch.mcmc.proposal import mh_accept
from bayestorch.mcmc.sample import KERNELS, SampleResult, sample
from bayestorch.mcmc.sghmc import SGHMC
from bayestorch.mcmc.slice import SliceInfo, SliceSampler, SliceState, slice_step
from bayestorch.mcmc.swendsen_wang import (
    ISING_CRITICAL_TEMPERATURE,
    PottsGibbs,
    PottsGibbsInfo,
    PottsState,
    SwendsenWang,
    SwendsenWangInfo,
    cluster_statistics,
    integrated_autocorrelation_time,
    ising_exact_energy,
    ising_exact_magnetisation,
    magnetisation,
    potts_energy,
)

__all__ = [
    "BayesianGaussianMixture",
    "ChEESHMC",
    "ChEESInfo",
    "Gibbs",
    "GibbsInfo",
    "GibbsState",
    "HMC",
    "HMCInfo",
    "HMCState",
    "IMHState",
    "ISING_CRITICAL_TEMPERATURE",
    "IndependentMetropolis",
    "KERNELS",
    "Kernel",
    "MetropolisInfo",
    "NUTS",
    "NUTSInfo",
    "PottsGibbs",
    "PottsGibbsInfo",
    "PottsState",
    "RWMState",
    "RandomWalkMetropolis",
    "SGHMC",
    "SampleResult",
    "SliceInfo",
    "SliceSampler",
    "SliceState",
    "SwendsenWang",
    "SwendsenWangInfo",
    "cluster_statistics",
    "connected_components",
    "effective_sample_size",
    "ess_bulk",
    "ess_quantile",
    "ess_tail",
    "format_summary",
    "gibbs_step",
    "hmc_step",
    "imh_step",
    "integrated_autocorrelation_time",
    "ising_exact_energy",
    "ising_exact_magnetisation",
    "lattice_edges",
    "magnetisation",
    "mcse_mean",
    "mcse_sd",
    "mh_accept",
    "nuts_step",
    "potts_energy",
    "rank_normalize",
    "rhat",
    "rwm_step",
    "sample",
    "slice_step",
    "summary",
]

# The segmentation models moved to bayestorch.segmentation; their names here warn
# (DeprecationWarning) for one release.
__getattr__ = moved_attributes(__name__, "bayestorch.segmentation")
