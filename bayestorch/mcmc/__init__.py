"""Markov chain Monte Carlo: kernels, warm-up adaptation, diagnostics and the sampling runner.

Every kernel follows one protocol (``bayestorch.mcmc.base``): ``state = kernel.init(position)``
with ``position`` of shape ``(chains, dim)``, ``state, info = kernel.step(state, generator)``;
tuned values are buffers; ``sample()`` runs warm-up and draws for any of them.
"""

from __future__ import annotations

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
from bayestorch.mcmc.slice import SliceInfo, SliceSampler, SliceState, slice_step

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
    "IndependentMetropolis",
    "KERNELS",
    "Kernel",
    "MetropolisInfo",
    "NUTS",
    "NUTSInfo",
    "RWMState",
    "RandomWalkMetropolis",
    "SampleResult",
    "SliceInfo",
    "SliceSampler",
    "SliceState",
    "effective_sample_size",
    "ess_bulk",
    "ess_quantile",
    "ess_tail",
    "format_summary",
    "gibbs_step",
    "hmc_step",
    "imh_step",
    "mcse_mean",
    "mcse_sd",
    "mh_accept",
    "nuts_step",
    "rank_normalize",
    "rhat",
    "rwm_step",
    "sample",
    "slice_step",
    "summary",
]
