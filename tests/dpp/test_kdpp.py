"""bayestorch/dpp/kdpp.py — k-DPP: elementary symmetric polynomials, normalisation,
inclusion probabilities, sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bayestorch.dpp import KDPP, all_subsets, eigenvector_marginals, log_elementary_symmetric
from bayestorch.testing import assert_counts, assert_z, chisquare_pvalue
from bayestorch.utils import NotPSDError
from tests.dpp.helpers import exact_subset_probs, random_features, rbf_kernel, subset_codes


def _brute_esp(values, k):
    return sum(math.prod(c) for c in itertools.combinations(values, k))


def test_log_elementary_symmetric_matches_brute_force():
    lam = torch.tensor([0.3, 2.0, 0.0, 5.0, 1e-3, 0.7], dtype=torch.float64)
    table = log_elementary_symmetric(lam, 4)
    assert table.shape == (5, 7)
    for level in range(5):
        for n in range(7):
            want = _brute_esp(lam[:n].tolist(), level)
            got = table[level, n].exp().item()
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300)


def test_log_elementary_symmetric_wide_dynamic_range():
    """Eigenvalues from 1e-200 to 1e200 (RBF-like decay): finite, accurate logs."""
    lam = torch.logspace(-200, 200, 41, dtype=torch.float64)
    table = log_elementary_symmetric(lam, 3)
    # e_3 is dominated by the three largest: 1e200 * 1e190 * 1e180
    expected = math.log(10) * (200 + 190 + 180)
    assert table[3, -1].item() == pytest.approx(expected, rel=1e-12)
    assert bool(torch.isfinite(table[:, 3:]).all())


def test_eigenvector_marginals():
    lam = torch.tensor([0.3, 2.0, 0.0, 5.0, 1e-3, 0.7], dtype=torch.float64)
    k = 3
    p = eigenvector_marginals(lam, k)
    torch.testing.assert_close(p.sum(), torch.tensor(float(k), dtype=torch.float64))
    total = _brute_esp(lam.tolist(), k)
    for n in range(6):
        rest = lam[torch.arange(6) != n].tolist()
        want = lam[n].item() * _brute_esp(rest, k - 1) / total
        assert p[n].item() == pytest.approx(want, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("source", ["L", "features"])
def test_log_prob_normalised_on_size_k(source, device):
    k = 3
    dist = (
        KDPP(rbf_kernel(8, device=device), k)
        if source == "L"
        else KDPP(k=k, features=random_features(8, 4, device=device))
    )
    masks = all_subsets(8, device=device)
    probs = dist.log_prob(masks).exp()
    sizes = masks.sum(-1)
    assert bool((probs[sizes != k] == 0).all())
    torch.testing.assert_close(probs.sum(), torch.ones((), dtype=probs.dtype, device=device))
    # inclusion probabilities by enumeration
    torch.testing.assert_close(dist.inclusion_probs, probs @ masks.double())
    torch.testing.assert_close(dist.inclusion_probs.sum(), probs.new_tensor(float(k)))


def test_features_and_l_agree():
    phi = random_features(8, 5, seed=3)
    masks = all_subsets(8)
    a, b = KDPP(k=4, features=phi), KDPP(phi @ phi.T, 4)
    torch.testing.assert_close(a.log_prob(masks).exp(), b.log_prob(masks).exp())
    torch.testing.assert_close(a.inclusion_probs, b.inclusion_probs)


@pytest.mark.statistical
@pytest.mark.parametrize("source", ["L", "features"])
def test_sampler_matches_enumeration(source, device):
    """Chi-square of the draws over all C(8, 3) = 56 subsets, and inclusion z-tests."""
    k, num = 3, 20_000
    dist = (
        KDPP(rbf_kernel(8, device=device), k)
        if source == "L"
        else KDPP(k=k, features=random_features(8, 4, device=device))
    )
    g = torch.Generator(device=device).manual_seed(99)
    draws = dist.sample((num,), generator=g)
    assert draws.shape == (num, 8) and bool((draws.sum(-1) == k).all())
    probs = exact_subset_probs(dist)
    counts = torch.bincount(subset_codes(draws), minlength=256)
    size_k = all_subsets(8, device=device).sum(-1) == k
    assert_counts(counts[size_k], probs[size_k] / probs[size_k].sum())
    p = dist.inclusion_probs
    assert_z(draws.double().mean(0), p, (p * (1 - p) / num).sqrt())


@pytest.mark.statistical
def test_chisquare_rejects_plain_dpp_conditioned_wrongly(device):
    """Power check: draws of the k-DPP of L^2 are rejected against the k-DPP of L."""
    k, num = 3, 20_000
    L = rbf_kernel(8, device=device)
    g = torch.Generator(device=device).manual_seed(5)
    wrong = KDPP(L @ L, k).sample((num,), generator=g)
    probs = exact_subset_probs(KDPP(L, k))
    size_k = all_subsets(8, device=device).sum(-1) == k
    counts = torch.bincount(subset_codes(wrong), minlength=256)[size_k]
    assert chisquare_pvalue(counts, probs[size_k] / probs[size_k].sum()) < 1e-3


def test_low_rank_large(generator):
    phi = torch.randn(10_000, 64, generator=generator)
    dist = KDPP(k=64, features=phi)
    draws = dist.sample((2,), generator=generator)
    assert draws.shape == (2, 10_000) and bool((draws.sum(-1) == 64).all())
    torch.testing.assert_close(dist.inclusion_probs.sum(), torch.tensor(64.0), rtol=1e-4, atol=0)


def test_batched_and_reproducible(device):
    L = torch.stack([rbf_kernel(6, seed=s, device=device) for s in range(2)])
    dist = KDPP(L, 2)
    a = dist.sample((3,), generator=torch.Generator(device=device).manual_seed(1))
    b = dist.sample((3,), generator=torch.Generator(device=device).manual_seed(1))
    assert a.shape == (3, 2, 6) and torch.equal(a, b)
    assert bool((a.sum(-1) == 2).all())
    assert dist.log_prob(a).shape == (3, 2)
    for i in range(2):
        torch.testing.assert_close(dist.inclusion_probs[i], KDPP(L[i], 2).inclusion_probs)


def test_bad_input():
    phi = random_features(6, 2)
    with pytest.raises(ValueError, match="numerical rank"):
        KDPP(phi @ phi.T, 3)
    with pytest.raises(ValueError, match="rank bound"):
        KDPP(k=3, features=phi)
    with pytest.raises(ValueError, match="exceeds the number of items"):
        KDPP(rbf_kernel(4), 5)
    with pytest.raises(ValueError, match="positive int"):
        KDPP(rbf_kernel(4), 0)
    with pytest.raises(ValueError, match="exactly one"):
        KDPP(rbf_kernel(4), 2, features=phi)
    L = rbf_kernel(4)
    L[0, 2] += 0.5
    with pytest.raises(ValueError, match="symmetric"):
        KDPP(L, 2)
    with pytest.raises(NotPSDError):
        KDPP(rbf_kernel(4) - 2 * torch.eye(4, dtype=torch.float64), 2)


@pytest.mark.statistical
def test_k_equal_to_rank_is_the_projection_dpp(device):
    """k = d for features: phase one keeps every eigenvector; the draws still follow the
    enumerated k-DPP (chi-square over all size-3 subsets)."""
    dist = KDPP(k=3, features=random_features(7, 3, seed=9, device=device))
    g = torch.Generator(device=device).manual_seed(4)
    draws = dist.sample((10_000,), generator=g)
    probs = exact_subset_probs(dist)
    keep = all_subsets(7, device=device).sum(-1) == 3
    counts = torch.bincount(subset_codes(draws), minlength=128)[keep]
    assert_counts(counts, probs[keep] / probs[keep].sum())
