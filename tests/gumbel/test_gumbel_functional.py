"""Gumbel noise, Gumbel-max, Gumbel-softmax (relaxed and straight-through), Gumbel-top-k and the
truncated Gumbel.

Statistical tests follow tests/conftest.py. Checked by hand once: each fails for a broken
variant: ``gumbel_noise`` returning ``-log u`` (not Gumbel) fails the KS test and the Gumbel-max
chi-square; a top-k that sorts ascending (or draws with probabilities ``softmax(2 logits)``)
fails the enumeration test; a truncated Gumbel computed as ``min(G, T)`` fails its KS test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayestorch.gumbel import (
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    gumbel_top_k,
    log1mexp,
    shift_gumbels_to_max,
    truncated_gumbel,
)
from bayestorch.testing import assert_counts, assert_ks, categorical_counts


def _gen(device, seed=0):
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.statistical
def test_gumbel_noise_is_standard_gumbel(device):
    x = gumbel_noise((20000,), generator=_gen(device), device=device)
    assert x.device.type == device.type and torch.isfinite(x).all()
    assert_ks(x, lambda v: np.exp(-np.exp(-v)))


def test_gumbel_noise_is_finite_at_the_clamped_extremes(monkeypatch):
    # rand can return exactly 0; 1 - eps/2 is the largest float32 below 1.
    monkeypatch.setattr(
        torch, "rand", lambda *a, **k: torch.tensor([0.0, 1.0 - 2.0**-24, 0.5]).reshape(a[0])
    )
    assert torch.isfinite(gumbel_noise((3,))).all()


LOGITS = {
    "moderate": [0.0, 1.0, 2.0, -1.0, 0.5],
    "large": [1e4, 1e4 + 1.0, 1e4 - 2.0, 1e4 + 0.5],
    "very negative": [-1e4, -1e4 + 1.0, -1e4 - 0.5, -1e4 + 2.0],
    "with -inf": [0.0, float("-inf"), 1.0, -30.0, 0.3],
}


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(LOGITS))
def test_gumbel_max_frequencies_match_softmax(device, name):
    logits = torch.tensor(LOGITS[name], device=device)
    draws = gumbel_max(logits.expand(40000, -1), generator=_gen(device))
    assert draws.shape == (40000,) and draws.dtype == torch.int64
    probs = torch.softmax(logits.double(), -1)
    assert_counts(categorical_counts(draws, len(logits)), probs.cpu())


def test_gumbel_max_never_draws_minus_inf(device):
    logits = torch.tensor([0.0, float("-inf"), 0.0], device=device)
    assert (gumbel_max(logits.expand(5000, -1), generator=_gen(device)) != 1).all()


def test_gumbel_max_dim_argument(device):
    logits = torch.randn(4, 7, 3, device=device)
    assert gumbel_max(logits, dim=1, generator=_gen(device)).shape == (4, 3)


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.1, 0.01])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_softmax_is_finite_at_small_tau_and_huge_logits(device, tau, hard, dtype):
    base = torch.tensor([1e4, -1e4, 0.0, 1e4 - 0.001, -1e4 + 5.0], device=device, dtype=dtype)
    logits = base.expand(500, -1).clone().requires_grad_()
    y = gumbel_softmax(logits, tau, hard, generator=_gen(device))
    assert y.dtype == dtype and torch.isfinite(y).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(500, device=device, dtype=dtype))
    (y * torch.linspace(-1, 1, 5, device=device, dtype=dtype)).sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_gumbel_softmax_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="tau must be a finite temperature > 0"):
        gumbel_softmax(torch.zeros(3), tau)


def test_gumbel_softmax_rejects_tensor_tau_and_integer_logits():
    with pytest.raises(TypeError, match="tau must be a real number"):
        gumbel_softmax(torch.zeros(3), torch.tensor(1.0))
    with pytest.raises(TypeError, match="floating-point"):
        gumbel_softmax(torch.zeros(3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="out of range"):
        gumbel_softmax(torch.zeros(3), 1.0, dim=2)


@pytest.mark.parametrize("tau", [1.0, 0.5, 2.0])
def test_gumbel_softmax_equals_reference_with_the_same_noise(device, tau):
    # Forward and gradient equal autograd through softmax((logits + g) / tau), g the same draws.
    logits = torch.randn(64, 10, device=device, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(64, 10, device=device, dtype=torch.float64)
    y = gumbel_softmax(logits, tau, generator=_gen(device, 3))
    (y * weights).sum().backward()
    ref_logits = logits.detach().clone().requires_grad_()
    g = gumbel_noise(logits.shape, generator=_gen(device, 3), device=device, dtype=torch.float64)
    ref = torch.softmax((ref_logits + g) / tau, -1)
    (ref * weights).sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(logits.grad, ref_logits.grad)


def test_gumbel_softmax_generator_reproducible(device):
    logits = torch.randn(8, 5, device=device)
    first = gumbel_softmax(logits, 0.7, generator=_gen(device, 1))
    second = gumbel_softmax(logits, 0.7, generator=_gen(device, 1))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first, gumbel_softmax(logits, 0.7, generator=_gen(device, 2)))


def test_straight_through_is_exact_one_hot_of_gumbel_max(device):
    logits = torch.randn(300, 6, device=device, dtype=torch.float64)
    y = gumbel_softmax(logits, 0.5, hard=True, generator=_gen(device, 4))
    index = gumbel_max(logits, generator=_gen(device, 4))
    assert torch.equal(y, F.one_hot(index, 6).to(y.dtype))


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_straight_through_gradient_equals_relaxed_gradient(device, tau):
    logits = torch.randn(50, 7, device=device, requires_grad=True)
    weights = torch.randn(50, 7, device=device)
    grads = []
    for hard in (False, True):
        logits.grad = None
        y = gumbel_softmax(logits, tau, hard, generator=_gen(device, 5))
        (y * weights).sum().backward()
        grads.append(logits.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


def test_relaxed_sample_tends_to_the_gumbel_max_one_hot_as_tau_goes_to_zero(device):
    logits = torch.randn(2000, 5, device=device, dtype=torch.float64)
    g = gumbel_noise(logits.shape, generator=_gen(device, 6), device=device, dtype=torch.float64)
    top2 = (logits + g).topk(2, -1).values
    gap = top2[:, 0] - top2[:, 1]
    one_hot = F.one_hot(gumbel_max(logits, generator=_gen(device, 6)), 5).double()
    previous = None
    for tau in (1.0, 0.3, 0.1, 0.03, 0.01):
        y = gumbel_softmax(logits, tau, generator=_gen(device, 6))
        error = (y - one_hot).abs().sum(-1)
        # Exact bound: |y - one_hot|_1 = 2 (1 - y_max) <= 2 (K - 1) exp(-gap / tau).
        assert (error <= 2 * 4 * torch.exp(-gap / tau) + 1e-12).all()
        if previous is not None:  # the largest coordinate grows as tau falls
            assert (error <= previous + 1e-12).all()
        previous = error
    assert (previous[gap > 0.5] < 1e-15).all()


def _without_replacement_probs(probs: np.ndarray, k: int):
    tuples = list(itertools.permutations(range(len(probs)), k))
    exact = []
    for t in tuples:
        p, left = 1.0, 1.0
        for i in t:
            p *= probs[i] / left
            left -= probs[i]
        exact.append(p)
    return tuples, np.array(exact)


@pytest.mark.statistical
@pytest.mark.parametrize(
    "logits, k",
    [([0.0, 1.0, 2.0, -1.0], 2), ([0.5, -0.5, 1.5, 0.0, 1.0], 3), ([1.0, 0.0, 2.0], 3)],
)
def test_gumbel_top_k_matches_sampling_without_replacement(device, logits, k):
    logits = torch.tensor(logits, device=device)
    n = 60000
    draws = gumbel_top_k(logits.expand(n, -1), k, generator=_gen(device, 7))
    assert draws.shape == (n, k)
    tuples, exact = _without_replacement_probs(torch.softmax(logits.double(), -1).cpu().numpy(), k)
    code = {t: i for i, t in enumerate(tuples)}
    labels = torch.tensor([code[tuple(row)] for row in draws.cpu().tolist()])
    assert_counts(categorical_counts(labels, len(tuples)), exact / exact.sum())


def test_gumbel_top_k_distinct_and_validated(device):
    draws = gumbel_top_k(torch.randn(100, 6, device=device), 6, generator=_gen(device))
    assert (draws.sort(-1).values == torch.arange(6, device=device)).all()
    with pytest.raises(ValueError, match="k must be an integer in"):
        gumbel_top_k(torch.zeros(4), 5)


def _truncated_gumbel_cdf(location: float, truncation: float):
    def cdf(v):
        return np.where(
            v >= truncation, 1.0, np.exp(-np.exp(location - v) + np.exp(location - truncation))
        )

    return cdf


@pytest.mark.statistical
@pytest.mark.parametrize("location, truncation", [(0.0, 1.0), (0.0, -2.0), (3.0, -20.0)])
def test_truncated_gumbel_fits_its_cdf(device, location, truncation):
    loc = torch.full((20000,), location, device=device, dtype=torch.float64)
    x = truncated_gumbel(loc, truncation, generator=_gen(device, 8))
    assert torch.isfinite(x).all() and (x <= truncation).all()
    assert_ks(x, _truncated_gumbel_cdf(location, truncation))


def test_shift_gumbels_to_max_hits_the_target_exactly(device):
    g = torch.randn(500, 6, device=device, dtype=torch.float64) * 3
    g[:, 2] = float("-inf")
    target = torch.randn(500, 1, device=device, dtype=torch.float64) * 5
    shifted = shift_gumbels_to_max(g, target)
    assert torch.equal(shifted.amax(-1, keepdim=True), target)
    assert torch.equal(shifted.argmax(-1), g.argmax(-1))
    assert torch.isneginf(shifted[:, 2]).all() and torch.isfinite(shifted[:, [0, 1, 3]]).all()
    all_neg_inf = torch.full((3, 4), float("-inf"), device=device)
    assert torch.isneginf(shift_gumbels_to_max(all_neg_inf, torch.zeros(3, 1, device=device))).all()


@pytest.mark.statistical
def test_shift_gumbels_to_max_is_the_conditional_law(device):
    # Two Gumbels G1 ~ Gumbel(phi1), G2 ~ Gumbel(phi2) conditioned on max = T: the non-max one
    # is a Gumbel truncated at T. Compare the shifted second-largest against truncated_gumbel.
    n = 20000
    phi = torch.tensor([0.0, 0.0], device=device, dtype=torch.float64)
    g = phi + gumbel_noise((n, 2), generator=_gen(device, 9), device=device, dtype=torch.float64)
    shifted = shift_gumbels_to_max(g, torch.full((n, 1), 1.5, device=device, dtype=torch.float64))
    runner_up = shifted.min(-1).values
    assert_ks(runner_up, _truncated_gumbel_cdf(0.0, 1.5))


def test_log1mexp_accuracy():
    x = torch.tensor([-1e-20, -1e-5, -0.5, -0.7, -1.0, -30.0, -800.0, 0.0], dtype=torch.float64)
    expected = [math.log(-math.expm1(v)) if v != 0 else -math.inf for v in x.tolist()]
    torch.testing.assert_close(log1mexp(x), torch.tensor(expected, dtype=torch.float64))


def test_half_precision_logits_keep_their_dtype():
    # The noise is drawn in float32 (bfloat16 uniforms are too coarse); output and gradient
    # come back in the logits' dtype.
    logits = torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True)
    y = gumbel_softmax(logits, 0.5, generator=_gen("cpu"))
    y.sum().backward()
    assert y.dtype == torch.bfloat16 and logits.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_softmax_along_a_middle_dim(device, tau):
    logits = torch.randn(5, 4, 3, device=device, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 4, 3, device=device, dtype=torch.float64)
    y = gumbel_softmax(logits, tau, dim=1, generator=_gen(device, 10))
    (y * weights).sum().backward()
    ref_logits = logits.detach().clone().requires_grad_()
    g = gumbel_noise(logits.shape, generator=_gen(device, 10), device=device, dtype=torch.float64)
    ref = torch.softmax((ref_logits + g) / tau, 1)
    (ref * weights).sum().backward()
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(logits.grad, ref_logits.grad)
