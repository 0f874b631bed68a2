"""MCSE-scaled assertions for the accuracy of MCMC estimates.

An MCMC estimate of a posterior mean is compared with the truth in units of its Monte
Carlo standard error, ``z = (mean - truth) / mcse``, with ``mcse = sd / sqrt(ess)`` from
:mod:`bayestorch.mcmc.diagnostics`. By the Markov chain CLT ``z`` is approximately
standard normal for a correct, geometrically ergodic sampler, so the same two-sided
Bonferroni rule as :func:`bayestorch.testing.assert_z` gives a declared failure rate.
The rate is nominal: it assumes the CLT holds and the ESS estimate is accurate, which
needs chains long enough for a few hundred effective draws per coordinate.

References:
    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Bayesian Analysis 16(2).
    Flegal, Haran, Jones (2008). Statistical Science 23(2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from bayestorch.mcmc.diagnostics import effective_sample_size, mcse_mean
from bayestorch.testing.gof import (
    DEFAULT_FAILURE_RATE,
    _check_failure_rate,
    _format_index,
    _to_numpy,
    _worst_z,
    z_threshold,
)

__all__ = ["assert_mcmc_mean"]


def assert_mcmc_mean(
    samples: Tensor | np.ndarray, truth: Any, failure_rate: float = DEFAULT_FAILURE_RATE
) -> None:
    """Assert that MCMC draws estimate a known mean to within their MCSE.

    Computes the mean over chains and draws, its MCSE (split-chain ESS), and the
    two-sided z-test of :func:`bayestorch.testing.assert_z`: the failure rate is split
    evenly over the event coordinates (Bonferroni).

    Args:
        samples: draws of shape ``(chains, draws, *event)`` (tensor on any device or
            array), at least 4 draws.
        truth: the true mean, broadcastable to ``event``.
        failure_rate: the declared probability that a correct sampler fails.

    Raises:
        AssertionError: naming the worst coordinate, its estimate, truth, MCSE, ESS, z
            and the threshold.

    Shape:
        ``samples``: ``(chains, draws, *event)``; ``truth``: broadcastable to ``event``.

    References:
        Vehtari et al. (2021); Flegal, Haran, Jones (2008).
    """
    _check_failure_rate(failure_rate)
    x = samples if isinstance(samples, Tensor) else torch.as_tensor(np.asarray(samples))
    x = x.detach().to(torch.float64)
    mean = x.mean(dim=(0, 1))
    mcse = mcse_mean(x)
    ess = effective_sample_size(x)
    # A sampler that emits non-finite draws or never moves fails, rather than erroring.
    bad = ~torch.isfinite(x).all(dim=(0, 1)) | (mcse == 0)
    if bad.any():
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise AssertionError(
            f"MCMC draws at coordinate {_format_index(index)} of event shape "
            f"{tuple(mean.shape)} are non-finite or constant across all chains and draws "
            f"(mean={mean[index].item():.6g}): the mean has no Monte Carlo standard error"
        )
    est, tru, se, z, worst = _worst_z(mean, truth, mcse)
    if est.shape != tuple(mean.shape):
        raise ValueError(
            f"truth of shape {np.shape(_to_numpy(truth))} does not broadcast to the event "
            f"shape {tuple(mean.shape)} of samples {tuple(x.shape)}"
        )
    threshold = z_threshold(failure_rate, max(z.size, 1))
    if not np.abs(z[worst]) <= threshold:  # also catches NaN
        ess_np = np.broadcast_to(_to_numpy(ess), z.shape)
        raise AssertionError(
            f"MCMC mean differs from the truth at coordinate {_format_index(worst)} of event "
            f"shape {z.shape}: estimate={est[worst]:.6g}, truth={tru[worst]:.6g}, "
            f"mcse={se[worst]:.4g}, ess={ess_np[worst]:.1f}, z={z[worst]:.3g}, "
            f"|z| > {threshold:.3g} = threshold for failure_rate={failure_rate:g} over "
            f"{z.size} coordinate(s) (Bonferroni)"
        )
