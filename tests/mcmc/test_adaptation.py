"""Warm-up building blocks: Stan's window schedule, Welford estimates, dual averaging."""

import torch

from bayestorch.mcmc.adaptation.dual_averaging import da_final, da_init, da_update
from bayestorch.mcmc.adaptation.mass_matrix import (
    warmup_windows,
    welford_covariance,
    welford_init,
    welford_update,
)

F64 = torch.float64


def test_window_schedule_matches_stan():
    # Stan's 1000-iteration warm-up: windows end at iterations 100, 150, 250, 450, 950 (1-based).
    assert warmup_windows(1000) == [99, 149, 249, 449, 949]
    assert warmup_windows(500) == [99, 149, 249, 449]
    assert warmup_windows(100) == [89]  # 15% / 75% / 10%
    assert warmup_windows(19) == []


def test_welford_pooled_and_per_chain_equal_batch_estimates(generator):
    x = torch.randn(50, 6, 3, generator=generator, dtype=F64) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0.0, 0.0, 0.5]], dtype=F64
    )  # (draws, chains, dim)
    for dense in (False, True):
        pooled = welford_init(x[0], dense, per_chain=False)
        per_chain = welford_init(x[0], dense, per_chain=True)
        for draw in x:
            pooled = welford_update(pooled, draw, dense, per_chain=False)
            per_chain = welford_update(per_chain, draw, dense, per_chain=True)
        flat = x.reshape(-1, 3)
        expected = torch.cov(flat.T) if dense else flat.var(0)
        torch.testing.assert_close(welford_covariance(pooled, dense, regularize=False), expected)
        for c in range(6):
            chain = x[:, c]
            expected = torch.cov(chain.T) if dense else chain.var(0)
            got = welford_covariance(per_chain, dense, regularize=False)[c]
            torch.testing.assert_close(got, expected)


def test_dual_averaging_finds_the_step_size_of_a_known_acceptance_curve():
    # Acceptance exp(-step^2) per chain; target 0.8 is reached at sqrt(-log 0.8).
    state = da_init(torch.ones(4, dtype=F64))
    for _ in range(2000):
        accept = torch.exp(-(state.log_step_size.exp() ** 2))
        state = da_update(state, accept, target=0.8)
    expected = torch.full((4,), (-torch.log(torch.tensor(0.8, dtype=F64))).sqrt().item(), dtype=F64)
    torch.testing.assert_close(da_final(state), expected, rtol=1e-2, atol=0)
