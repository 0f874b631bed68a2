"""Tests of bayestorch.mcmc.diagnostics: exact agreement with ArviZ's non-rank-normalised
ESS and MCSE (every branch of Geyer's truncation), shapes, dtypes, devices, edge cases,
and the ESS of AR(1) chains against its known value."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from bayestorch.mcmc import effective_sample_size, mcse_mean
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
