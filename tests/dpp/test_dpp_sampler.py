"""DPPBatchSampler: sizes, no duplicates, reproducibility, DataLoader, ranks, HT weights."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bayestorch.dpp import DPPBatchSampler, random_fourier_features
from bayestorch.testing import assert_z
from tests.dpp.helpers import random_features


def test_batches_have_size_and_no_duplicates():
    phi = random_features(200, 24)
    sampler = DPPBatchSampler(phi, 16, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 200 // 16
    for batch in batches:
        assert len(batch) == 16 and len(set(batch)) == 16
        assert all(0 <= i < 200 for i in batch)


def test_reproducible_with_generator_and_seed():
    phi = random_features(100, 12)

    def run(**kwargs):
        return list(DPPBatchSampler(phi, 8, num_batches=5, **kwargs))

    g = torch.Generator
    assert run(generator=g().manual_seed(1)) == run(generator=g().manual_seed(1))
    assert run(generator=g().manual_seed(1)) != run(generator=g().manual_seed(2))
    assert run(seed=3) == run(seed=3)
    sampler = DPPBatchSampler(phi, 8, num_batches=5, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_dataloader():
    x = torch.randn(120, 5)
    y = torch.arange(120)
    feats = random_fourier_features(
        x, 32, lengthscale=2.0, generator=torch.Generator().manual_seed(0)
    )
    sampler = DPPBatchSampler(feats, 10, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    seen = [labels for _, labels in loader]
    assert len(seen) == 12
    assert all(labels.shape == (10,) and labels.unique().numel() == 10 for labels in seen)


def test_ranks_get_disjoint_batches():
    phi = random_features(300, 40)
    world = 3
    per_rank = [
        list(DPPBatchSampler(phi, 8, seed=5, rank=r, world_size=world)) for r in range(world)
    ]
    assert {len(b) for b in per_rank} == {300 // 24}
    for step in range(len(per_rank[0])):
        union = set().union(*(set(per_rank[r][step]) for r in range(world)))
        assert len(union) == 8 * world


def test_refresh_every_calls_features_again():
    calls = []
    base = random_features(60, 10)

    def features():
        calls.append(1)
        return base + 0.01 * len(calls)

    sampler = DPPBatchSampler(features, 5, num_batches=7, refresh_every=2, seed=0)
    assert len(calls) == 1
    assert len(list(sampler)) == 7
    assert len(calls) == 1 + 3  # refreshed before batches 3, 5 and 7


@pytest.mark.statistical
def test_inclusion_frequencies_and_unbiased_ht_estimate():
    """Empirical inclusion frequencies match the k-DPP's pi_i (z-test), and the
    Horvitz-Thompson estimate sum w_i f_i is unbiased for the mean of f."""
    n, k, num = 30, 4, 6000
    phi = random_features(n, 8, seed=2)
    quality = torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    sampler = DPPBatchSampler(
        phi, k, num_batches=num, quality=quality, generator=torch.Generator().manual_seed(0)
    )
    batches = torch.tensor(list(sampler))
    freq = (
        torch.zeros(n, dtype=torch.float64).index_add_(
            0, batches.flatten(), torch.ones(batches.numel(), dtype=torch.float64)
        )
        / num
    )
    pi = sampler.inclusion_probs
    assert_z(freq, pi, (pi * (1 - pi) / num).sqrt())
    f = torch.linspace(-1.0, 3.0, n, dtype=torch.float64) ** 2
    estimates = (sampler.weights[batches] * f[batches]).sum(-1)
    assert_z(estimates.mean(), f.mean(), estimates.std() / num**0.5)


def test_bad_input():
    phi = random_features(50, 6)
    with pytest.raises(ValueError, match="needs rank >= k"):
        DPPBatchSampler(phi, 8)
    with pytest.raises(ValueError, match="rank must"):
        DPPBatchSampler(phi, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DPPBatchSampler(phi, 0)
    with pytest.raises(ValueError, match="quality"):
        DPPBatchSampler(phi, 2, quality=-torch.ones(50, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        DPPBatchSampler(phi.unsqueeze(0), 2)
