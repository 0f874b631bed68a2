"""Greedy MAP (Chen, Zhang & Zhou 2018): agrees with naive greedy, optimal where greedy is."""

from __future__ import annotations

import itertools

import pytest
import torch

from bayestorch.dpp import greedy_map
from bayestorch.utils import NotPSDError
from tests.dpp.helpers import random_features, rbf_kernel


def _log_det(L, idx):
    return torch.linalg.slogdet(L[idx][:, idx])[1].item()


def _naive_greedy(L, k):
    chosen = []
    for _ in range(k):
        rest = [j for j in range(L.shape[0]) if j not in chosen]
        chosen.append(max(rest, key=lambda j: _log_det(L, chosen + [j])))
    return chosen


def _exhaustive(L, k):
    return max(itertools.combinations(range(L.shape[0]), k), key=lambda c: _log_det(L, list(c)))


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_greedy(seed):
    L = rbf_kernel(12, seed=seed, lengthscale=0.7)
    for k in (1, 3, 6):
        assert greedy_map(L, k).tolist() == _naive_greedy(L, k)


def test_gains_give_log_det_and_features_agree(device):
    phi = random_features(40, 10, device=device)
    idx, gains = greedy_map(phi @ phi.T, 8, return_gains=True)
    idx_f, gains_f = greedy_map(features=phi, k=8, return_gains=True)
    assert torch.equal(idx, idx_f)
    torch.testing.assert_close(gains, gains_f)
    L = phi @ phi.T
    torch.testing.assert_close(gains.log().sum(), torch.linalg.slogdet(L[idx][:, idx])[1])


def test_optimal_for_k_one_and_diagonal():
    g = torch.Generator().manual_seed(0)
    L = rbf_kernel(9, seed=1)
    assert greedy_map(L, 1).tolist() == [int(L.diagonal().argmax())]
    diag = torch.diag(torch.rand(9, generator=g, dtype=torch.float64) + 0.1)
    for k in range(1, 10):
        assert sorted(greedy_map(diag, k).tolist()) == sorted(_exhaustive(diag, k))


def test_optimal_for_orthogonal_groups():
    """Items in groups with orthogonal directions: the MAP takes the best item of the
    best groups, and greedy finds it (equals exhaustive search)."""
    g = torch.Generator().manual_seed(4)
    group = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0, 1])
    scale = torch.rand(10, generator=g, dtype=torch.float64) + 0.2
    phi = torch.nn.functional.one_hot(group, 4).double() * scale[:, None]
    L = phi @ phi.T
    for k in range(1, 5):
        assert sorted(greedy_map(L, k).tolist()) == sorted(_exhaustive(L, k))


def test_never_below_random_subsets():
    """Random quality-weighted RBF and Gaussian-feature kernels: greedy's log-det is never
    below any of 20 random subsets'. (With a constant diagonal and k = 2 greedy's first
    pick is a tie and it can lose to the best pair, so qualities are random.)"""
    g = torch.Generator().manual_seed(8)
    for case in range(40):
        k = 2 + case % 6
        if case % 2:
            quality = torch.rand(25, generator=g, dtype=torch.float64) + 0.5
            L = quality[:, None] * rbf_kernel(25, seed=100 + case, lengthscale=0.7) * quality
        else:
            phi = random_features(25, 10, seed=100 + case)
            L = phi @ phi.T
        greedy = _log_det(L, greedy_map(L, k).tolist())
        for _ in range(20):
            random_subset = torch.randperm(25, generator=g)[:k].tolist()
            assert greedy >= _log_det(L, random_subset)


def test_batched(device):
    L = torch.stack([rbf_kernel(15, seed=s, device=device) for s in range(3)])
    idx = greedy_map(L, 4)
    assert idx.shape == (3, 4)
    for b in range(3):
        assert torch.equal(idx[b], greedy_map(L[b], 4))


def test_bad_input():
    phi = random_features(10, 3)
    with pytest.raises(ValueError, match="numerical rank"):
        greedy_map(phi @ phi.T, 4)
    with pytest.raises(ValueError, match="rank bound"):
        greedy_map(features=phi, k=4)
    with pytest.raises(ValueError, match=r"\[1, N=10\]"):
        greedy_map(phi @ phi.T, 11)
    with pytest.raises(NotPSDError):
        greedy_map(rbf_kernel(6) - 2 * torch.eye(6, dtype=torch.float64), 2)
    L = rbf_kernel(6)
    L[1, 0] += 0.3
    with pytest.raises(ValueError, match="symmetric"):
        greedy_map(L, 2)
