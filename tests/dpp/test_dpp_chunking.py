"""Chunked DPP / k-DPP sampling and log-probabilities (issue 21, bounded memory): the chunk
changes peak memory, not the result (or, for the rejection sampler, not the law).

The peak-memory measurements themselves are in tests/memory/test_bounded_memory.py."""

from __future__ import annotations

import pytest
import torch

from bayestorch.dpp import (
    DPP,
    KDPP,
    all_subsets,
    l_ensemble_spectrum,
    log_det_subsets,
    sample_projection_dpp,
)
from bayestorch.testing import assert_counts
from tests.dpp.helpers import random_features, rbf_kernel, subset_codes


def _draw(dist, chunk_size, seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return dist.sample((37,), g, chunk_size=chunk_size, **kwargs)


@pytest.mark.parametrize("method", ["cholesky", "spectral"])
@pytest.mark.parametrize("batched", [False, True])
def test_chunked_dpp_draws_equal_unchunked(method, batched):
    L = rbf_kernel(12)
    if batched:
        L = torch.stack([L, rbf_kernel(12, seed=1)])
    dpp = DPP(L=L)
    whole = _draw(dpp, None, method=method)
    assert whole.shape == (37, *L.shape[:-1])
    for chunk in (1, 5, 36):
        assert torch.equal(_draw(dpp, chunk, method=method), whole), chunk


def test_chunked_dual_and_kdpp_draws_equal_unchunked():
    phi = random_features(30, 6)
    for dist in (DPP(features=phi), KDPP(k=3, features=phi), KDPP(rbf_kernel(12), 4)):
        whole = _draw(dist, None)
        for chunk in (1, 8):
            assert torch.equal(_draw(dist, chunk), whole), (dist, chunk)


@pytest.mark.parametrize("source", ["L", "K", "features"])
def test_chunked_log_prob_equals_unchunked(source):
    L = rbf_kernel(8)
    dpp = {
        "L": DPP(L=L),
        "K": DPP(K=DPP(L=L).marginal_kernel),
        "features": DPP(features=random_features(8, 5)),
    }[source]
    masks = all_subsets(8).reshape(16, 16, 8)
    whole = dpp.log_prob(masks)
    assert whole.shape == (16, 16)
    torch.testing.assert_close(dpp.log_prob(masks, chunk_size=7), whole, rtol=1e-13, atol=0)
    # a single mask broadcasting against a batch of kernels (no sample dims)
    batch = DPP(L=torch.stack([L, 2 * L]))
    single = batch.log_prob(masks[3, 5], chunk_size=1)
    assert single.shape == (2,)
    torch.testing.assert_close(single[1], DPP(L=2 * L).log_prob(masks[3, 5]))
    kdpp = KDPP(L, 3)
    torch.testing.assert_close(kdpp.log_prob(masks, chunk_size=5), kdpp.log_prob(masks))


@pytest.mark.statistical
def test_chunked_rejection_sampler_is_exact(generator):
    """The rejection sampler draws chunk after chunk: same law (chi-square over subsets)."""
    n, num = 7, 6000
    _, v = l_ensemble_spectrum(rbf_kernel(n))
    choice = torch.tensor([0, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    draws = sample_projection_dpp(v, choice.repeat(num, 1), generator, "rejection", chunk_size=700)
    masks = all_subsets(n)
    keep = masks.sum(-1) == 3
    vs = v[:, choice]
    probs = log_det_subsets(masks[keep], L=vs @ vs.T).exp()
    counts = torch.bincount(subset_codes(draws), minlength=2**n)[keep]
    assert_counts(counts, probs / probs.sum())


def test_bad_chunk_size_names_the_argument():
    dpp = DPP(L=rbf_kernel(5))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        dpp.sample((3,), method="cholesky", chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an int"):
        dpp.sample((3,), chunk_size=2.5)
