"""Tests of bayestorch.mcmc.diagnostics: exact agreement with ArviZ's non-rank-normalised
ESS and MCSE (every branch of Geyer's truncation), shapes, dtypes, devices, edge cases,
and the ESS of AR(1) chains against its known value."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from bayestorch.mcmc.diagnostics import (
    effective_sample_size,
    ess_bulk,
    ess_quantile,
    ess_tail,
    format_summary,
    mcse_mean,
    mcse_sd,
    rank_normalize,
    rhat,
    summary,
)
from bayestorch.testing import assert_z


def _arviz():
    # arviz emits a FutureWarning on import; the suite runs with -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("arviz")


def ar1(phi, num_chains, num_draws, event_shape=(), *, seed, dtype=torch.float64, device="cpu"):
    """Stationary AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t with unit variance.

    Their ESS for the mean is N (1 - phi) / (1 + phi) asymptotically.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_draws, num_chains, *event_shape, generator=g, dtype=torch.float64)
    signal = pytest.importorskip("scipy.signal")
    # The recursion as a linear filter over time, started from the stationary x_0 = e_0.
    e = noise.numpy()
    x = np.empty_like(e)
    x[0] = e[0]
    x[1:], _ = signal.lfilter([math.sqrt(1.0 - phi**2)], [1.0, -phi], e[1:], axis=0, zi=phi * e[:1])
    return torch.from_numpy(x).movedim(0, 1).to(device=device, dtype=dtype)


def _arviz_per_coordinate(az, x, method):
    """ArviZ on each event coordinate of (chains, draws, *event), as float64 numpy."""
    x = x.detach().cpu().to(torch.float64).numpy()
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    values = [method(az, flat[:, :, i]) for i in range(flat.shape[2])]
    return np.array(values).reshape(x.shape[2:])


def _az_ess(az, x):
    return az.ess(x, method="mean")


def _az_mcse(az, x):
    return az.mcse(x, method="mean")


def _random_cases():
    """Chains covering every branch of the truncation: antithetic (first pair sum <= 0),
    i.i.d., AR(1), random walks (all pairs positive to the end of the chain), 1 chain, odd
    and tiny numbers of draws."""
    rng = np.random.default_rng(0)
    for i in range(40):
        num_chains = int(rng.integers(1, 5))
        num_draws = int(rng.integers(4, 12)) if i % 4 == 0 else int(rng.integers(12, 400))
        phi = float(rng.choice([-0.8, -0.3, 0.0, 0.5, 0.9, 0.99]))
        kind = ["random_walk", "alternating", "ar1", "ar1", "ar1"][i % 5]
        yield pytest.param(
            i, num_chains, num_draws, phi, kind, id=f"{kind}-c{num_chains}-n{num_draws}-phi{phi}"
        )


@pytest.mark.parametrize(("seed", "num_chains", "num_draws", "phi", "kind"), list(_random_cases()))
def test_ess_and_mcse_match_arviz_mean_method(seed, num_chains, num_draws, phi, kind):
    az = _arviz()
    x = ar1(phi, num_chains, num_draws, seed=seed)
    if kind == "random_walk":
        x = x.cumsum(dim=1)
    elif kind == "alternating":
        x = x + 3.0 * (-1.0) ** torch.arange(num_draws, dtype=torch.float64)
    ess, mcse = effective_sample_size(x), mcse_mean(x)
    np.testing.assert_allclose(ess.numpy(), _arviz_per_coordinate(az, x, _az_ess), rtol=1e-9)
    np.testing.assert_allclose(mcse.numpy(), _arviz_per_coordinate(az, x, _az_mcse), rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ess_with_event_dims_matches_arviz_on_device(device, dtype):
    az = _arviz()
    x = ar1(0.9, 4, 2000, (3, 2), seed=1, dtype=dtype, device=device)
    ess, mcse = effective_sample_size(x), mcse_mean(x)
    assert ess.shape == (3, 2) and mcse.shape == (3, 2)
    assert ess.dtype == dtype and mcse.dtype == dtype
    assert ess.device == x.device and mcse.device == x.device
    # The computation runs in float64 whatever the input dtype, so the float32 result
    # equals ArviZ on the same (float32-rounded) draws up to float32 output rounding.
    rtol = 1e-6 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(ess.cpu().double(), _arviz_per_coordinate(az, x, _az_ess), rtol)
    np.testing.assert_allclose(mcse.cpu().double(), _arviz_per_coordinate(az, x, _az_mcse), rtol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ess_on_device_equals_cpu(device, dtype):
    # Needs no ArviZ: the CPU result is checked against ArviZ above.
    x = ar1(0.9, 4, 2000, (5,), seed=8, dtype=dtype)
    x[:, :, 0] = 0.5  # a constant coordinate
    on_device = effective_sample_size(x.to(device)), mcse_mean(x.to(device))
    for result, expected in zip(on_device, (effective_sample_size(x), mcse_mean(x))):
        assert result.device.type == device.type and result.dtype == dtype
        torch.testing.assert_close(result.cpu(), expected, rtol=1e-6, atol=0.0)


def test_split_false_uses_chains_as_given():
    az = _arviz()
    x = ar1(0.5, 3, 200, seed=2)
    # Splitting the chains by hand and not splitting again is ArviZ's split ESS.
    halves = torch.cat([x[:, :100], x[:, 100:]], dim=0)
    expected = az.ess(x.numpy(), method="mean")
    assert effective_sample_size(halves, split=False).item() == pytest.approx(expected, rel=1e-9)
    # A trend within each chain is caught by splitting only.
    trend = x + torch.linspace(0, 3, 200, dtype=torch.float64)
    assert effective_sample_size(trend) < effective_sample_size(trend, split=False) / 2


@pytest.mark.statistical
def test_ess_of_ar1_chains_is_close_to_theory(device):
    # 100 independent replicates (event dim) of 4 chains x 5000 draws, phi = 0.9: the mean
    # ESS over replicates, against N (1 - phi) / (1 + phi) = 1052.6 with its standard
    # error from the replicate spread. (The estimator's bias here is about -3, a third
    # of that standard error.)
    phi, num_replicates = 0.9, 100
    ess = effective_sample_size(ar1(phi, 4, 5000, (num_replicates,), seed=3, device=device))
    theory = 4 * 5000 * (1 - phi) / (1 + phi)
    assert_z(ess.mean(), theory, ess.std() / math.sqrt(num_replicates))


@pytest.mark.statistical
def test_ess_of_ar1_chains_rejects_a_wrong_autocorrelation():
    # The same test is decisive: the ESS of phi = 0.85 chains is not that of phi = 0.9.
    phi, num_replicates = 0.85, 100
    ess = effective_sample_size(ar1(phi, 4, 5000, (num_replicates,), seed=4))
    theory = 4 * 5000 * (1 - 0.9) / (1 + 0.9)
    with pytest.raises(AssertionError):
        assert_z(ess.mean(), theory, ess.std() / math.sqrt(num_replicates))


def test_ess_of_iid_draws_is_about_the_number_of_draws():
    az = _arviz()
    x = torch.randn(4, 5000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ess = effective_sample_size(x).item()
    assert ess == pytest.approx(az.ess(x.numpy(), method="mean"), rel=1e-9)
    # Geyer's truncation biases the i.i.d. ESS down by about 1% (spread about 2%), too
    # much for a z-test over many replicates; tests/testing/test_mcse.py checks instead
    # that the MCSE built on it is calibrated for i.i.d. draws.


def test_constant_non_finite_and_integer_input():
    x = torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x[:, :, 0] = 1.5
    x[1, 7, 2] = float("nan")
    ess = effective_sample_size(x)
    assert ess[0] == 100  # constant: ESS is the number of (split) draws, as in ArviZ
    assert torch.isfinite(ess[1]) and torch.isnan(ess[2])
    counts = torch.randint(0, 5, (2, 50), generator=torch.Generator().manual_seed(7))
    assert effective_sample_size(counts).dtype == torch.float64


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="chains, draws"):
        effective_sample_size(torch.zeros(10))
    with pytest.raises(ValueError, match="4 draws"):
        mcse_mean(torch.zeros(2, 3))


# ---------------------------------------------------------------------------------------
# Rank-normalised diagnostics (Vehtari et al. 2021) against ArviZ 0.23.
# ---------------------------------------------------------------------------------------


def _fixed_cases():
    """Named fixed arrays (chains, draws, *event) covering every convention of ArviZ."""
    rng = np.random.default_rng(2021)

    def normal(*shape):
        return torch.from_numpy(rng.normal(size=shape))

    constant = normal(3, 60, 3)
    constant[:, :, 1] = 0.25
    discrete = torch.from_numpy(rng.poisson(1.5, size=(4, 75, 2))).to(torch.float64)
    return {
        # AR(1) chains, several event dims: the common case.
        "ar1-event2x3": ar1(0.9, 4, 300, (2, 3), seed=11),
        # Chains with different means: R-hat >> 1, tiny ESS.
        "shifted-means": normal(4, 200, 2) + torch.tensor([0.0, 0.0, 0.0, 3.0])[:, None, None],
        # Equal means, one chain 4x wider: only the folded (tail) R-hat sees it.
        "different-scales": normal(4, 400) * torch.tensor([1.0, 1.0, 1.0, 4.0])[:, None],
        # Heavy tails and an odd number of draws (the middle draw is dropped on splitting).
        "cauchy-odd": torch.from_numpy(rng.standard_cauchy(size=(4, 301, 2))),
        # Ties: discrete values, including a quantile that lands on tied draws.
        "discrete-ties": discrete,
        "rounded-ties": torch.round(2.0 * normal(2, 41, 3)) / 2.0,
        # A constant coordinate (ESS = number of draws, R-hat and mcse_sd NaN).
        "constant-coordinate": constant,
        # One chain (R-hat NaN), few and odd numbers of draws.
        "one-chain": ar1(0.5, 1, 120, (2,), seed=12),
        "four-draws": normal(3, 4, 2),
        "five-draws": normal(2, 5),
        # A random walk: non-stationary, all Geyer pairs positive.
        "random-walk": normal(3, 250).cumsum(dim=1),
        # Odd draws where arviz.rhat (folds around the median of the split chains) and
        # arviz.summary (around the median of all draws) differ: 1.155 against 1.019.
        "odd-fold": torch.from_numpy(np.random.default_rng(1).normal(size=(3, 7))),
        # Chains stuck at +-1 for half their length: bulk R-hat inf, folded R-hat 0 / 0;
        # ArviZ takes Python's max(inf, nan) = inf.
        "stuck-halves": torch.tensor(
            [[-1.0, -1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]], dtype=torch.float64
        ),
        # Integer input (float64 output).
        "integer": torch.from_numpy(rng.integers(0, 6, size=(3, 50, 2))),
    }


_CASES = _fixed_cases()


def _quiet(function, *args, **kwargs):
    # ArviZ (and numpy inside it) warns on constant arrays and single chains; the suite
    # runs with -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def _assert_equal_arviz(actual, expected, rtol=1e-10):
    np.testing.assert_allclose(actual.cpu().numpy(), expected, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("case", list(_CASES))
def test_rank_normalize_matches_scipy(case):
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    x = _CASES[case]
    pooled = x.double().numpy().reshape(x.shape[0] * x.shape[1], -1)
    ranks = stats.rankdata(pooled, method="average", axis=0)
    expected = special.ndtri((ranks - 3.0 / 8.0) / (pooled.shape[0] + 0.25)).reshape(x.shape)
    _assert_equal_arviz(rank_normalize(x), expected, rtol=1e-13)


@pytest.mark.parametrize("case", list(_CASES))
def test_diagnostics_match_arviz(case):
    az = _arviz()
    x = _CASES[case]
    expected = {
        "bulk": lambda a, y: _quiet(a.ess, y, method="bulk"),
        "tail": lambda a, y: _quiet(a.ess, y, method="tail"),
        "tail10": lambda a, y: _quiet(a.ess, y, method="tail", prob=0.1),
        "q30": lambda a, y: _quiet(a.ess, y, method="quantile", prob=0.3),
        "rhat": lambda a, y: _quiet(a.rhat, y, method="rank"),
        "mcse_mean": lambda a, y: _quiet(a.mcse, y, method="mean"),
        "mcse_sd": lambda a, y: _quiet(a.mcse, y, method="sd"),
    }
    actual = {
        "bulk": ess_bulk(x),
        "tail": ess_tail(x),
        "tail10": ess_tail(x, prob=0.1),
        "q30": ess_quantile(x, 0.3),
        "rhat": rhat(x),
        "mcse_mean": mcse_mean(x),
        "mcse_sd": mcse_sd(x),
    }
    for key, value in actual.items():
        assert value.shape == x.shape[2:] and value.dtype == torch.float64, key
        _assert_equal_arviz(value, _arviz_per_coordinate(az, x, expected[key]))


@pytest.mark.parametrize("case", list(_CASES))
def test_summary_matches_arviz_summary(case):
    az = _arviz()
    x = _CASES[case]
    stats = summary(x)
    expected = _quiet(az.summary, x.numpy(), round_to="none")
    assert list(stats) == list(expected.columns)
    for key, value in stats.items():
        assert value.shape == x.shape[2:], key
        _assert_equal_arviz(value.reshape(-1), expected[key].to_numpy())


def test_summary_hdi_prob_and_agreement_with_the_separate_functions():
    az = _arviz()
    x = _CASES["ar1-event2x3"]
    stats = summary(x, hdi_prob=0.8)
    expected = _quiet(az.summary, x.numpy(), round_to="none", hdi_prob=0.8)
    for key in ("hdi_10%", "hdi_90%"):
        _assert_equal_arviz(stats[key].reshape(-1), expected[key].to_numpy())
    # Shared sorts and the batched FFT give the same numbers as the separate functions
    # (R-hat too: with an even number of draws both fold around the same median).
    for key, function in [
        ("mcse_mean", mcse_mean),
        ("mcse_sd", mcse_sd),
        ("ess_bulk", ess_bulk),
        ("ess_tail", ess_tail),
        ("r_hat", rhat),
    ]:
        torch.testing.assert_close(stats[key], function(x), rtol=1e-12, atol=0.0)


def test_tail_rhat_catches_different_scales_that_bulk_rhat_misses():
    # Vehtari et al. (2021), Sec. 4.2: chains with equal locations but one 4x wider. The
    # 1.01 threshold is the paper's recommendation; the effect here is far beyond noise.
    x = _CASES["different-scales"]
    from bayestorch.mcmc.diagnostics import _rhat_basic, _split_last, _z_last

    bulk = _rhat_basic(_z_last(_split_last(x)))  # (chains, draws) is also chains-last
    assert bulk < 1.01 < rhat(x)
    assert rhat(_CASES["shifted-means"]).min() > 1.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_summary_on_device_equals_cpu(device, dtype):
    # Needs no ArviZ: the CPU result is checked against ArviZ above.
    x = _CASES["constant-coordinate"].to(dtype)
    expected = summary(x)
    on_device = summary(x.to(device))
    for key, value in on_device.items():
        assert value.device.type == device.type and value.dtype == dtype, key
        torch.testing.assert_close(
            value.cpu(), expected[key], rtol=1e-6, atol=0.0, equal_nan=True, msg=key
        )
    for function in (rank_normalize, ess_bulk, ess_tail, rhat, mcse_sd):
        result = function(x.to(device))
        assert result.device.type == device.type and result.dtype == dtype
        torch.testing.assert_close(result.cpu(), function(x), rtol=1e-6, atol=0.0, equal_nan=True)


def test_non_finite_draws_give_nan_only_in_their_coordinate():
    x = _CASES["ar1-event2x3"].clone()
    x[1, 17, 0, 1] = float("nan")
    x[2, 5, 1, 2] = float("inf")
    stats = summary(x)
    for key in ("mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"):
        value = stats[key]
        assert torch.isnan(value[0, 1]) and torch.isnan(value[1, 2]), key
        torch.testing.assert_close(value[0, 0], summary(x[:, :, 0, 0])[key], rtol=1e-12, atol=0)
    assert torch.isnan(stats["mean"][0, 1]) and torch.isnan(stats["hdi_3%"][0, 1])
    assert torch.isinf(stats["mean"][1, 2])
    for function in (ess_bulk, ess_tail, rhat, mcse_sd):
        value = function(x)
        assert torch.isnan(value[0, 1]) and torch.isnan(value[1, 2])
        assert torch.isfinite(value[0, 0]) and torch.isfinite(value[1, 1])
    assert torch.isnan(rank_normalize(x)[:, :, 0, 1]).all()


def test_bad_input_raises_clear_errors():
    x = torch.zeros(2, 10)
    for function in (rank_normalize, ess_bulk, ess_tail, rhat, mcse_sd, summary):
        with pytest.raises(ValueError, match="chains, draws"):
            function(torch.zeros(10))
        with pytest.raises(ValueError, match="4 draws"):
            function(torch.zeros(2, 3, 5))
        with pytest.raises(TypeError, match="real"):
            function(torch.zeros(2, 10, dtype=torch.complex64))
        with pytest.raises(TypeError, match="torch.Tensor"):
            function(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="prob"):
        ess_quantile(x, 1.0)
    with pytest.raises(ValueError, match="prob"):
        ess_tail(x, prob=0.0)
    with pytest.raises(ValueError, match="hdi_prob"):
        summary(x, hdi_prob=1.0)


def test_format_summary_table():
    stats = summary(_CASES["constant-coordinate"])
    table = format_summary(stats)
    lines = table.splitlines()
    assert lines[0].split() == list(stats)
    assert [line.split()[0] for line in lines[1:4]] == ["x[0]", "x[1]", "x[2]"]
    assert len({len(line) for line in lines[:4]}) == 1  # fixed width
    assert "nan" in lines[2] and lines[-1].startswith("nan diagnostics")
    named = format_summary(stats, names=["a", "b", "c"], max_rows=None)
    assert [line.split()[0] for line in named.splitlines()[1:4]] == ["a", "b", "c"]

    many = summary(_CASES["shifted-means"].repeat(1, 1, 30))  # 60 rows, all r_hat > 1.01
    lines = format_summary(many, max_rows=6).splitlines()
    assert [line.split()[0] for line in lines[1:8]] == [
        "x[0]", "x[1]", "x[2]", "...", "x[57]", "x[58]", "x[59]"
    ]  # fmt: skip
    assert lines[8] == "(60 rows, 6 shown)" and lines[9] == "60 of 60 rows have r_hat > 1.01"
    scalar = format_summary(summary(_CASES["five-draws"]))
    assert scalar.splitlines()[1].split()[0] == "x"
    two_dims = format_summary({"ess_bulk": torch.tensor([[1.0, 2.0]])}).splitlines()
    assert two_dims == ["         ess_bulk", "x[0, 0]         1", "x[0, 1]         2"]


def test_format_summary_rejects_bad_arguments():
    stats = summary(_CASES["ar1-event2x3"])
    with pytest.raises(ValueError, match="one label per coordinate"):
        format_summary(stats, names=["a"])
    with pytest.raises(ValueError, match="common shape"):
        format_summary({"a": torch.zeros(2), "b": torch.zeros(3)})
    with pytest.raises(ValueError, match="non-empty dict"):
        format_summary({})
