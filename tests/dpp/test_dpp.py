"""DPP: normalisation, marginal kernel, exact samplers (chi-square / z-tests), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayestorch.dpp import (
    DPP,
    all_subsets,
    l_ensemble_spectrum,
    log_det_subsets,
    sample_cholesky,
    sample_projection_dpp,
)
from bayestorch.testing import assert_counts, assert_z, chisquare_pvalue
from bayestorch.utils import NotPSDError
from tests.dpp.helpers import exact_subset_probs, random_features, rbf_kernel, subset_codes

NUM_DRAWS = 20_000


def _sources(device):
    L = rbf_kernel(7, device=device)
    phi = random_features(7, 4, device=device)
    return {
        "L": DPP(L=L),
        "K": DPP(K=DPP(L=L).marginal_kernel),
        "features": DPP(features=phi),
    }


@pytest.mark.parametrize("source", ["L", "K", "features"])
def test_log_prob_sums_to_one(source, device):
    dpp = _sources(device)[source]
    total = exact_subset_probs(dpp).sum()
    torch.testing.assert_close(total, torch.ones((), dtype=total.dtype, device=device))


def test_sources_agree(device):
    L = rbf_kernel(7, device=device)
    masks = all_subsets(7, device=device)
    via_l, via_k = DPP(L=L).log_prob(masks), DPP(K=DPP(L=L).marginal_kernel).log_prob(masks)
    torch.testing.assert_close(via_k, via_l)
    phi = random_features(7, 4, device=device)
    p_feat = DPP(features=phi).log_prob(masks).exp()
    p_l = DPP(L=phi @ phi.T).log_prob(masks).exp()
    torch.testing.assert_close(p_feat, p_l)
    # |A| > d = 4 is impossible under L = Phi Phi^T
    assert bool((p_feat[masks.sum(-1) > 4] == 0).all())


@pytest.mark.parametrize("source", ["L", "K", "features"])
def test_marginals_match_enumeration(source, device):
    dpp = _sources(device)[source]
    masks = all_subsets(7, device=device).double()
    probs = exact_subset_probs(dpp)
    single = probs @ masks
    pairs = torch.einsum("s,si,sj->ij", probs, masks, masks)
    torch.testing.assert_close(dpp.inclusion_probs, single)
    torch.testing.assert_close(dpp.pair_inclusion_probs(), pairs)
    torch.testing.assert_close(dpp.expected_size, single.sum())
    torch.testing.assert_close(dpp.mean, single)


def test_marginal_kernel_formula(device):
    L = rbf_kernel(9, device=device)
    eye = torch.eye(9, dtype=L.dtype, device=device)
    torch.testing.assert_close(DPP(L=L).marginal_kernel, L @ torch.linalg.inv(L + eye))
    phi = random_features(9, 3, device=device)
    torch.testing.assert_close(
        DPP(features=phi).marginal_kernel, DPP(L=phi @ phi.T).marginal_kernel
    )


def _check_sampler(dpp, masks, failure_rate=1e-3):
    """Chi-square over all 2^N subsets, then z-tests of single and pair frequencies."""
    n = dpp.num_items
    probs = exact_subset_probs(dpp)
    counts = torch.bincount(subset_codes(masks), minlength=2**n)
    assert_counts(counts, probs / probs.sum(), failure_rate=failure_rate)
    x = masks.double()
    num = x.shape[0]
    single, pairs = x.mean(0), (x.T @ x) / num
    p1, p2 = dpp.inclusion_probs, dpp.pair_inclusion_probs()
    assert_z(single, p1, ((p1 * (1 - p1)) / num).sqrt().clamp_min(1e-12), failure_rate)
    iu = torch.triu_indices(n, n, 1)
    est, truth = pairs[iu[0], iu[1]], p2[iu[0], iu[1]]
    assert_z(est, truth, ((truth * (1 - truth)) / num).sqrt().clamp_min(1e-12), failure_rate)


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("source", "method"),
    [
        ("L", "spectral"),
        ("L", "cholesky"),
        ("K", "spectral"),
        ("K", "cholesky"),
        ("features", "dual"),
        ("features", "spectral"),
        ("features", "cholesky"),
    ],
)
def test_sampler_matches_exact_distribution(source, method, device):
    dpp = _sources(device)[source]
    g = torch.Generator(device=device).manual_seed(123)
    masks = dpp.sample((NUM_DRAWS,), generator=g, method=method)
    assert masks.shape == (NUM_DRAWS, 7) and masks.dtype == torch.bool
    _check_sampler(dpp, masks)


@pytest.mark.statistical
def test_dual_and_spectral_agree_two_sample(device):
    """Dual draws (from Phi) and spectral draws (from L = Phi Phi^T): same distribution."""
    scipy_stats = pytest.importorskip("scipy.stats")
    phi = random_features(6, 3, seed=5, device=device)
    g = torch.Generator(device=device).manual_seed(7)
    dual = DPP(features=phi).sample((NUM_DRAWS,), generator=g)
    spectral = DPP(L=phi @ phi.T).sample((NUM_DRAWS,), generator=g)
    table = np.stack(
        [torch.bincount(subset_codes(m), minlength=64).cpu().numpy() for m in (dual, spectral)]
    )
    table = table[:, table.sum(0) > 0]
    assert scipy_stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.statistical
def test_chisquare_rejects_wrong_kernel(device):
    """Power check: draws of the DPP of 1.3 L are rejected against the DPP of L."""
    L = rbf_kernel(7, device=device)
    g = torch.Generator(device=device).manual_seed(11)
    wrong = DPP(L=1.3 * L).sample((NUM_DRAWS,), generator=g)
    probs = exact_subset_probs(DPP(L=L))
    counts = torch.bincount(subset_codes(wrong), minlength=128)
    assert chisquare_pvalue(counts, probs / probs.sum()) < 1e-3


@pytest.mark.statistical
def test_large_dual_size_distribution(generator):
    """N = 10000 items from features (never N x N): sizes have mean tr K, variance
    sum mu (1 - mu)."""
    n, d, num = 10_000, 16, 200
    phi = torch.randn(n, d, generator=generator, dtype=torch.float64) / 60.0
    dpp = DPP(features=phi)
    sizes = dpp.sample((num,), generator=generator).sum(-1).double()
    mu = dpp.selection_probs
    assert_z(sizes.mean(), mu.sum(), ((mu * (1 - mu)).sum() / num).sqrt())


def test_batched_kernels_and_shapes(device):
    L = torch.stack([rbf_kernel(5, seed=s, device=device) for s in range(3)])
    dpp = DPP(L=L)
    assert dpp.batch_shape == (3,) and dpp.event_shape == (5,)
    g = torch.Generator(device=device).manual_seed(0)
    for method in ("spectral", "cholesky"):
        draws = dpp.sample((4, 2), generator=g, method=method)
        assert draws.shape == (4, 2, 3, 5)
        assert dpp.log_prob(draws).shape == (4, 2, 3)
    probs = dpp.log_prob(dpp.enumerate_support()).exp().sum(0)
    torch.testing.assert_close(probs, torch.ones(3, dtype=L.dtype, device=device))
    for b in range(3):
        torch.testing.assert_close(dpp.marginal_kernel[b], DPP(L=L[b]).marginal_kernel)


def test_generator_reproducible(device):
    dpp = DPP(L=rbf_kernel(30, device=device))
    for method in ("spectral", "cholesky"):
        a = dpp.sample((5,), generator=torch.Generator(device=device).manual_seed(3), method=method)
        b = dpp.sample((5,), generator=torch.Generator(device=device).manual_seed(3), method=method)
        assert torch.equal(a, b)


def test_float32_follows_dtype(device):
    dpp = DPP(L=rbf_kernel(40, device=device).float())
    g = torch.Generator(device=device).manual_seed(0)
    draw = dpp.sample(generator=g)
    assert draw.device.type == torch.device(device).type
    assert dpp.log_prob(draw).dtype == torch.float32
    assert torch.isfinite(dpp.log_prob(draw))


def test_cholesky_sampler_needs_no_spectrum():
    dpp = DPP(L=rbf_kernel(6), validate_args=False)
    draws = dpp.sample((3,), generator=torch.Generator().manual_seed(0), method="cholesky")
    assert draws.shape == (3, 6) and dpp._spectrum is None
    k = sample_cholesky(dpp.marginal_kernel.unsqueeze(0), 2)
    assert k.shape == (2, 1, 6)


def test_spectrum_of_features_is_orthonormal():
    phi = random_features(50, 6)
    lam, v = l_ensemble_spectrum(features=phi)
    torch.testing.assert_close(v.T @ v, torch.eye(6, dtype=v.dtype))
    torch.testing.assert_close((v * lam) @ v.T, phi @ phi.T)


# ------------------------------------------------------------------ bad input


def test_rejects_non_symmetric():
    L = rbf_kernel(5)
    L[0, 1] += 0.1
    with pytest.raises(ValueError, match="symmetric"):
        DPP(L=L)


def test_accepts_round_off_asymmetry():
    L = rbf_kernel(5)
    L[0, 1] += 1e-14
    DPP(L=L)


def test_rejects_non_psd():
    L = rbf_kernel(5) - 1.5 * torch.eye(5, dtype=torch.float64)
    with pytest.raises(NotPSDError, match="positive semi-definite"):
        DPP(L=L)


@pytest.mark.parametrize("shift", [1.5, -0.5])
def test_rejects_marginal_kernel_outside_unit_interval(shift):
    K = DPP(L=rbf_kernel(5)).marginal_kernel + shift * torch.eye(5, dtype=torch.float64)
    with pytest.raises(NotPSDError):
        DPP(K=K)


def test_rejects_bad_arguments():
    L = rbf_kernel(4)
    with pytest.raises(ValueError, match="exactly one"):
        DPP(L=L, K=L)
    with pytest.raises(ValueError, match="exactly one"):
        DPP()
    with pytest.raises(ValueError, match=r"\(\.\.\., N, N\)"):
        DPP(L=torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        DPP(features=torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="dual"):
        DPP(L=L).sample(method="dual")
    with pytest.raises(ValueError, match="method"):
        DPP(L=L).sample(method="magic")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        DPP(L=L).log_prob(torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        DPP(L=L).log_prob(torch.full((4,), 0.5))


@pytest.mark.statistical
@pytest.mark.parametrize("algorithm", ["rejection", "chain_rule"])
def test_projection_algorithms_exact(algorithm, device):
    """Both projection-phase algorithms, rows with different eigenvector selections in one
    batch: each row's subsets follow det(K_A) with K = V_s V_s^T (chi-square per row kind)."""
    n, num = 7, 12_000
    _, v = l_ensemble_spectrum(rbf_kernel(n, device=device))
    choices = torch.tensor(
        [[0, 0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1, 1]],
        dtype=torch.bool,
        device=device,
    )
    selected = choices.repeat(num, 1)
    g = torch.Generator(device=device).manual_seed(2)
    draws = sample_projection_dpp(v, selected, g, algorithm)
    assert bool((draws.sum(-1) == selected.sum(-1)).all())
    masks = all_subsets(n, device=device)
    for kind in range(3):
        vs = v[:, choices[kind]]
        kernel = vs @ vs.T
        m = int(choices[kind].sum())
        probs = torch.where(
            masks.sum(-1) == m,
            log_det_subsets(masks, L=kernel).exp(),
            torch.zeros((), dtype=kernel.dtype, device=device),
        )
        counts = torch.bincount(subset_codes(draws[kind::3]), minlength=2**n)
        keep = masks.sum(-1) == m
        assert_counts(counts[keep], probs[keep] / probs[keep].sum(), failure_rate=1e-3 / 3)


@pytest.mark.parametrize("algorithm", ["rejection", "chain_rule"])
def test_projection_algorithms_large(algorithm, generator):
    """N = 3000, rank 40: exactly 40 distinct items, and item frequencies follow diag(K)."""
    phi = torch.randn(3000, 40, generator=generator, dtype=torch.float64)
    _, v = l_ensemble_spectrum(features=phi)
    draws = sample_projection_dpp(v, torch.ones(300, 40, dtype=torch.bool), generator, algorithm)
    assert bool((draws.sum(-1) == 40).all())
    # pooled into 10 groups of items so the counts are large
    p = v.square().sum(-1).reshape(10, 300).sum(-1) / 40
    counts = draws.reshape(300, 10, 300).sum((0, 2))
    assert_counts(counts, p)


@pytest.mark.statistical
def test_projection_rejection_single_draws(generator):
    """The single-draw rejection path (one row per call): chi-square over all size-3
    subsets of 7 items, against det(K_A)."""
    _, v = l_ensemble_spectrum(rbf_kernel(7))
    vs = v[:, [1, 4, 6]]
    one = torch.ones(1, 3, dtype=torch.bool)
    draws = torch.cat([sample_projection_dpp(vs, one, generator, "rejection") for _ in range(600)])
    masks = all_subsets(7)
    keep = masks.sum(-1) == 3
    probs = log_det_subsets(masks[keep], L=vs @ vs.T).exp()
    counts = torch.bincount(subset_codes(draws), minlength=128)[keep]
    assert_counts(counts, probs / probs.sum())
