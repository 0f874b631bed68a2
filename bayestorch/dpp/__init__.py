"""Determinantal point processes: exact and low-rank sampling, k-DPPs, greedy MAP, and
diversified mini-batches for SGD.

* :class:`DPP` — a ``torch.distributions.Distribution`` over subsets (bool masks ``(N,)``)
  from an L-ensemble, a marginal kernel or features; spectral, dual and Cholesky samplers.
* :class:`KDPP` — the fixed-size k-DPP (elementary symmetric polynomials in log space).
* :func:`greedy_map` — Chen, Zhang & Zhou's ``O(N k^2)`` greedy MAP.
* :class:`DPPBatchSampler` — a ``torch.utils.data`` batch sampler of k-DPP mini-batches with
  Horvitz-Thompson weights, fixed or refreshable features, and per-rank splits.

References:
    Kulesza & Taskar (2012). Determinantal point processes for machine learning.
"""

from bayestorch.dpp.dpp import (
    DPP,
    Spectrum,
    all_subsets,
    l_ensemble_spectrum,
    log_det_subsets,
    sample_cholesky,
    sample_projection_dpp,
)
from bayestorch.dpp.kdpp import KDPP, eigenvector_marginals, log_elementary_symmetric
from bayestorch.dpp.map import greedy_map
from bayestorch.dpp.sampler import DPPBatchSampler, random_fourier_features

__all__ = [
    "DPP",
    "KDPP",
    "DPPBatchSampler",
    "Spectrum",
    "all_subsets",
    "eigenvector_marginals",
    "greedy_map",
    "l_ensemble_spectrum",
    "log_det_subsets",
    "log_elementary_symmetric",
    "random_fourier_features",
    "sample_cholesky",
    "sample_projection_dpp",
]
