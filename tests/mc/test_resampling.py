"""Resampling schemes: unbiased counts on fixed weights, structure of each scheme, errors."""

from __future__ import annotations

import pytest
import torch

from bayestorch.mc.resampling import (
    RESAMPLING_SCHEMES,
    multinomial,
    resample,
    residual,
    stratified,
    systematic,
)
from bayestorch.testing import assert_counts, assert_z, categorical_counts

WEIGHTS = torch.tensor([0.05, 0.0, 0.33, 0.17, 0.02, 0.43], dtype=torch.float64)
NUM_DRAWS = 10  # M: N w_i are all non-integer, so every scheme has random counts
NUM_REPEATS = 4000


def counts_of(indices: torch.Tensor, num_particles: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(indices, num_particles).sum(-2).double()


def check_unbiased(scheme, generator):
    """z-test of mean counts against M w_i, the standard error estimated from the repeats."""
    indices = scheme(WEIGHTS.expand(NUM_REPEATS, -1), NUM_DRAWS, generator=generator)
    counts = counts_of(indices, len(WEIGHTS))
    positive = WEIGHTS > 0
    mean = counts[:, positive].mean(0)
    std_error = counts[:, positive].std(0) / NUM_REPEATS**0.5
    assert_z(mean, NUM_DRAWS * WEIGHTS[positive], std_error)


@pytest.mark.statistical
@pytest.mark.parametrize("name", sorted(RESAMPLING_SCHEMES))
def test_counts_are_unbiased(name, generator):
    check_unbiased(RESAMPLING_SCHEMES[name], generator)


def _biased_residual(weights, num_samples=None, *, generator=None):
    """Deliberately wrong: draws the remainder from the original weights, not the residuals."""
    w = weights / weights.sum(-1, keepdim=True)
    num = num_samples or w.shape[-1]
    copies = (num * w).floor()
    cumulative = copies.cumsum(-1)
    slots = torch.arange(num, dtype=w.dtype).expand(*w.shape[:-1], num)
    det = torch.searchsorted(cumulative, slots.contiguous(), right=True).clamp_max(w.shape[-1] - 1)
    rand = multinomial(w, num, generator=generator)
    return torch.where(slots < cumulative[..., -1:], det, rand)


@pytest.mark.statistical
def test_unbiasedness_test_rejects_a_biased_scheme(generator):
    with pytest.raises(AssertionError, match="z-test failed"):
        check_unbiased(_biased_residual, generator)


@pytest.mark.statistical
def test_multinomial_counts_are_multinomial(generator):
    indices = multinomial(WEIGHTS.expand(200, -1), 50, generator=generator)
    assert_counts(categorical_counts(indices, len(WEIGHTS)), WEIGHTS)


def test_structure_of_low_variance_schemes(generator):
    w = WEIGHTS.expand(500, -1)
    expected = NUM_DRAWS * WEIGHTS
    sys_counts = counts_of(systematic(w, NUM_DRAWS, generator=generator), len(WEIGHTS))
    # systematic: each count is floor or ceil of M w_i
    assert torch.all(sys_counts >= expected.floor()) and torch.all(sys_counts <= expected.ceil())
    res_counts = counts_of(residual(w, NUM_DRAWS, generator=generator), len(WEIGHTS))
    assert torch.all(res_counts >= expected.floor())
    strat = stratified(w, NUM_DRAWS, generator=generator)
    # stratified: one draw per stratum, so the indices are sorted
    assert torch.all(strat[:, 1:] >= strat[:, :-1])


@pytest.mark.parametrize("name", sorted(RESAMPLING_SCHEMES))
def test_shapes_zero_weights_and_reproducibility(name, device):
    scheme = RESAMPLING_SCHEMES[name]
    w = torch.rand(3, 4, 7, generator=torch.Generator().manual_seed(0)).to(device)
    w[..., 2] = 0.0
    g1 = torch.Generator(device=device).manual_seed(5)
    g2 = torch.Generator(device=device).manual_seed(5)
    a = scheme(w, 11, generator=g1)
    b = resample(w, 11, method=name, generator=g2)
    assert a.shape == (3, 4, 11) and a.dtype == torch.int64 and a.device.type == device.type
    assert torch.equal(a, b)
    assert torch.all((a >= 0) & (a < 7)) and not torch.any(a == 2)
    assert scheme(w, generator=g1).shape == (3, 4, 7)  # default M = N
    one_hot = torch.zeros(5, dtype=torch.float64, device=device)
    one_hot[3] = 2.0  # unnormalised, a single particle
    assert torch.all(scheme(one_hot, 9, generator=g1) == 3)


def test_bad_input():
    with pytest.raises(ValueError, match="weights must be a floating-point tensor"):
        systematic(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="at least one particle"):
        stratified(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        residual(torch.ones(3), 0)
    with pytest.raises(ValueError, match="method must be one of"):
        resample(torch.ones(3), method="roulette")
