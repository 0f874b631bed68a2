"""Statistical test helpers: goodness of fit and MCSE-scaled accuracy, with a declared
failure rate.

The contract every helper follows (and every statistical test in bayestorch's suite):

* A statistical assertion declares its **failure rate**: the probability that a
  *correct* sampler fails it (default ``1e-3``).
* It computes a p-value (KS, chi-square) or a z-score (estimate against truth in units of
  a standard error or an MCSE) and compares it against that rate — never a hand-tuned
  tolerance. Several coordinates tested at once share the rate (Bonferroni).
* The sample size decides the power: size it so that a subtly wrong sampler fails,
  and fix the seed so the outcome is reproducible.

Conformance suites (:mod:`bayestorch.testing.cases`): subclass :class:`KernelTestCase`
(MCMC) or :class:`GPKernelTestCase` (GP kernels) to run bayestorch's generic checks on
your own kernels.

``assert_*`` functions raise :class:`AssertionError` with a message naming the test,
its statistic, the p-value or z and the declared failure rate; ``*_pvalue`` functions
return the p-value (Uniform(0, 1) under a correct sampler) for custom use.

scipy is needed for the p-values (``pip install bayestorch[test]``); it is imported
only when a helper runs.
"""

from __future__ import annotations

from bayestorch.testing.cases import (
    GPKernelTestCase,
    KernelTestCase,
    check_gp_kernel_batching,
    check_gp_kernel_gradients,
    check_gp_kernel_matrix,
    check_kernel_invariance,
    check_kernel_reproducible,
    check_kernel_resume,
    check_kernel_shapes,
)
from bayestorch.testing.gof import (
    DEFAULT_FAILURE_RATE,
    assert_counts,
    assert_ks,
    assert_ks_2samp,
    assert_z,
    categorical_counts,
    chisquare_pvalue,
    ks_2samp_pvalue,
    ks_pvalue,
    z_threshold,
)
from bayestorch.testing.kernels import run_kernel
from bayestorch.testing.mcse import assert_mcmc_mean

__all__ = [
    "DEFAULT_FAILURE_RATE",
    "GPKernelTestCase",
    "KernelTestCase",
    "check_gp_kernel_batching",
    "check_gp_kernel_gradients",
    "check_gp_kernel_matrix",
    "check_kernel_invariance",
    "check_kernel_reproducible",
    "check_kernel_resume",
    "check_kernel_shapes",
    "assert_counts",
    "assert_ks",
    "assert_ks_2samp",
    "assert_mcmc_mean",
    "assert_z",
    "categorical_counts",
    "chisquare_pvalue",
    "ks_2samp_pvalue",
    "ks_pvalue",
    "run_kernel",
    "z_threshold",
]
