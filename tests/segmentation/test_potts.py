"""Potts-prior segmentation with Gaussian labels: conjugate draws and recovery of regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bayestorch.mcmc.graph import lattice_edges
from bayestorch.segmentation import SwendsenWangSegmentation
from bayestorch.segmentation.potts import sample_gaussian_parameters
from bayestorch.testing import assert_ks

FAILURE_RATE = 1e-3


@pytest.mark.statistical
def test_conjugate_parameter_draws():
    gen = torch.Generator().manual_seed(13)
    data = torch.randn(50, 1, generator=gen, dtype=torch.float64) * 2 + 1
    labels = (torch.arange(50) % 2).expand(20_000, -1)  # label 0: even nodes
    m0, k0, a0, b0 = torch.tensor([0.5], dtype=torch.float64), 0.3, 2.0, torch.tensor([1.5])
    means, variances = sample_gaussian_parameters(
        data, labels, 2, prior_mean=m0, prior_precision=k0, prior_shape=a0,
        prior_scale=b0.double(), generator=gen,
    )  # fmt: skip
    y = data[0::2, 0].numpy()
    n, ybar = len(y), y.mean()
    kn, an = k0 + n, a0 + n / 2
    mn = (k0 * 0.5 + n * ybar) / kn
    bn = 1.5 + 0.5 * ((y - ybar) ** 2).sum() + k0 * n * (ybar - 0.5) ** 2 / (2 * kn)
    assert_ks(variances[:, 0, 0], stats.invgamma(an, scale=bn), FAILURE_RATE / 2)
    # Marginally mu is Student-t with 2 a_n dof, location m_n, scale sqrt(b_n / (a_n k_n)).
    assert_ks(
        means[:, 0, 0], stats.t(2 * an, loc=mn, scale=np.sqrt(bn / (an * kn))), FAILURE_RATE / 2
    )


def test_segmentation_recovers_two_regions(device):
    gen = torch.Generator(device=device).manual_seed(14)
    truth = torch.zeros(16, 16, dtype=torch.long, device=device)
    truth[:, 8:] = 1
    image = truth.double() + 0.3 * torch.randn(
        16, 16, generator=gen, device=device, dtype=torch.float64
    )
    edges = lattice_edges(16, 16, device=device)
    for method in ("sw", "gibbs", "hybrid"):
        seg = SwendsenWangSegmentation(image.reshape(-1), edges, 1.0, 2, method=method)
        state = seg.init(torch.randint(2, (4, 256), generator=gen, device=device), gen)
        for _ in range(30):
            state, info = seg.step(state, gen)
        agree = (state.labels == truth.reshape(1, -1)).double().mean(1)
        accuracy = torch.maximum(agree, 1 - agree)  # up to label switching
        assert bool((accuracy > 0.95).all()), (method, accuracy)
        assert info.energy.shape == (4,) and bool(torch.isfinite(info.energy).all())


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        SwendsenWangSegmentation(torch.rand(9), lattice_edges(3, 3), 1.0, 2, method="metropolis")
