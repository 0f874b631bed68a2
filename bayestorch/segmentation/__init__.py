"""Bayesian image segmentation: Potts and partition-prior models sampled by Swendsen–Wang.

* :class:`SwendsenWangSegmentation` — ``K`` labels, Potts prior, Gaussian likelihood per
  label with conjugate parameter draws, data-driven Swendsen–Wang sweeps (Higdon 1998).
* :class:`GeneralisedSwendsenWang` — Bayesian nonparametric segmentation (Xu, Caron &
  Doucet 2016): a Gibbs-type partition prior (:class:`GibbsPartitionPrior`: Dirichlet
  process, Pitman–Yor, finite) times the Potts smoothness term, with each segment's
  Gaussian parameters integrated out (:class:`NormalInverseGamma`,
  :class:`NormalInverseWishart`).
* Partition summaries: :func:`adjusted_rand_index`, :func:`variation_of_information`,
  :func:`binder_loss`, :func:`coclustering`, :func:`partition_point_estimate`.

The generic kernels on graphs these models use (:class:`bayestorch.mcmc.SwendsenWang`,
:class:`bayestorch.mcmc.PottsGibbs`, :func:`bayestorch.mcmc.connected_components`,
:func:`bayestorch.mcmc.lattice_edges`) live in :mod:`bayestorch.mcmc`. Every model here
follows the kernel protocol: ``state = model.init(labels)``,
``state, info = model.step(state, generator)``.
"""

from __future__ import annotations

from bayestorch.segmentation.conjugate import NormalInverseGamma, NormalInverseWishart
from bayestorch.segmentation.generalised_sw import GeneralisedSwendsenWang, GSWInfo, GSWState
from bayestorch.segmentation.partition_estimates import (
    adjusted_rand_index,
    binder_loss,
    coclustering,
    partition_point_estimate,
    variation_of_information,
)
from bayestorch.segmentation.partitions import GibbsPartitionPrior, set_partitions
from bayestorch.segmentation.potts import (
    SegmentationInfo,
    SegmentationState,
    SwendsenWangSegmentation,
)

__all__ = [
    "GSWInfo",
    "GSWState",
    "GeneralisedSwendsenWang",
    "GibbsPartitionPrior",
    "NormalInverseGamma",
    "NormalInverseWishart",
    "SegmentationInfo",
    "SegmentationState",
    "SwendsenWangSegmentation",
    "adjusted_rand_index",
    "binder_loss",
    "coclustering",
    "partition_point_estimate",
    "set_partitions",
    "variation_of_information",
]
