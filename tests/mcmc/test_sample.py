"""The runner: shapes, devices, reproducibility, exact resume, clear errors, divergences."""

import pytest
import torch

from bayestorch.mcmc import HMC, NUTS, sample
from bayestorch.mcmc.chees import ChEESHMC
from bayestorch.testing.targets import GaussianTarget

F64 = torch.float64


def std_normal(x):
    return -0.5 * (x**2).sum(-1)


@pytest.mark.parametrize("kernel", ["nuts", "hmc", "chees"])
def test_shapes_dtype_and_device_follow_the_initial_position(kernel, device, hmc_compile):
    g = torch.Generator(device=device).manual_seed(0)
    x0 = torch.zeros(3, 2, dtype=torch.float32, device=device)
    result = sample(
        std_normal,
        x0,
        kernel,
        num_warmup=30,
        num_samples=20,
        generator=g,
        progress=False,
        compile=hmc_compile,
    )
    assert result.samples.shape == (3, 20, 2)
    assert result.samples.dtype == torch.float32 and result.samples.device.type == device.type
    for name, value in result.stats.items():
        assert value.shape == (3, 20), name
        assert value.device.type == device.type
    assert result.kernel.step_size.device.type == device.type


def test_same_generator_same_draws(hmc_compile):
    def run():
        g = torch.Generator().manual_seed(7)
        return sample(
            std_normal,
            torch.zeros(4, 3, dtype=F64),
            "nuts",
            num_warmup=50,
            num_samples=30,
            generator=g,
            progress=False,
            compile=hmc_compile,
        ).samples

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", ["nuts", "chees"])
@pytest.mark.parametrize("stop_at", [40, 130])  # during warm-up, during sampling
def test_resume_from_a_snapshot_continues_exactly(kernel, stop_at, hmc_compile):
    snapshots = {}

    def keep(snapshot):
        snapshots[snapshot["iteration"]] = snapshot

    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    kw = dict(
        num_warmup=100, num_samples=60, progress=False, checkpoint_every=10, compile=hmc_compile
    )
    full = sample(
        std_normal, x0, kernel, generator=torch.Generator().manual_seed(2), checkpoint_fn=keep, **kw
    )
    # A fresh process: a new kernel, a generator in an arbitrary state.
    resumed = sample(
        std_normal,
        x0,
        kernel,
        generator=torch.Generator().manual_seed(99),
        resume=snapshots[stop_at],
        **kw,
    )
    torch.testing.assert_close(resumed.samples, full.samples, rtol=0, atol=0)
    torch.testing.assert_close(resumed.kernel.step_size, full.kernel.step_size, rtol=0, atol=0)
    for name in full.stats:
        torch.testing.assert_close(resumed.stats[name], full.stats[name], rtol=0, atol=0)


def test_snapshot_survives_torch_save_weights_only(tmp_path, hmc_compile):
    saved = []
    sample(
        std_normal,
        torch.zeros(2, 2, dtype=F64),
        "nuts",
        num_warmup=20,
        num_samples=10,
        progress=False,
        checkpoint_every=10,
        checkpoint_fn=saved.append,
        compile=hmc_compile,
    )
    torch.save(saved[-1], tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["iteration"] == saved[-1]["iteration"]


def test_kernel_state_dict_restores_adapted_buffers(hmc_compile):
    result = sample(
        std_normal,
        torch.zeros(4, 3, dtype=F64),
        "nuts",
        num_warmup=120,
        num_samples=5,
        progress=False,
        adapt_per_chain=True,
        compile=hmc_compile,
    )
    fresh = NUTS(std_normal, compile=hmc_compile)
    fresh.load_state_dict(result.kernel.state_dict())
    torch.testing.assert_close(fresh.step_size, result.kernel.step_size)
    assert fresh.step_size.shape == (4,)
    torch.testing.assert_close(fresh.inverse_mass_matrix, result.kernel.inverse_mass_matrix)


def test_progress_bar_runs(capsys, hmc_compile):
    sample(
        std_normal,
        torch.zeros(2, 2),
        "hmc",
        num_warmup=25,
        num_samples=25,
        progress=True,
        refresh_every=5,
        compile=hmc_compile,
    )


@pytest.mark.parametrize(
    "log_prob, message",
    [
        (lambda x: -(x**2), r"shape \(chains,\)"),
        (lambda x: (x**2).sum(), r"shape \(chains,\)"),
        (lambda x: torch.full(x.shape[:1], float("nan")) + x.sum(-1), "not finite"),
        (lambda x: [0.0] * x.shape[0], "torch.Tensor"),
    ],
)
def test_bad_log_densities_give_clear_errors(log_prob, message, hmc_compile):
    with pytest.raises((ValueError, TypeError), match=message):
        sample(
            log_prob,
            torch.zeros(3, 2),
            "nuts",
            num_warmup=5,
            num_samples=5,
            progress=False,
            compile=hmc_compile,
        )


def test_bad_arguments_give_clear_errors(hmc_compile):
    with pytest.raises(ValueError, match=r"\(chains, dim\)"):
        sample(std_normal, torch.zeros(3), "nuts", progress=False, compile=hmc_compile)
    with pytest.raises(ValueError, match="unknown kernel"):
        sample(std_normal, torch.zeros(3, 2), "nutz", progress=False)
    with pytest.raises(ValueError, match="mass_matrix"):
        NUTS(std_normal, mass_matrix="full", compile=hmc_compile)
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        NUTS(std_normal, inverse_mass_matrix=torch.ones(5), compile=hmc_compile).init(
            torch.zeros(2, 3)
        )
    with pytest.raises(TypeError, match="kernel options"):
        kernel = NUTS(std_normal, compile=hmc_compile)
        sample(None, torch.zeros(3, 2), kernel, num_steps=3, progress=False)


@pytest.mark.parametrize("kind", ["hmc", "nuts"])
def test_nan_mid_trajectory_is_a_divergence_and_the_chain_stays(kind, hmc_compile):
    calls = []

    def log_prob(x):
        if not hmc_compile:  # a compiled trajectory is one graph: no Python side effects
            calls.append(bool(torch.isnan(x).any()))
        lp = -0.5 * (x**2).sum(-1)
        return torch.where(x[:, 0] < 1.0, lp, torch.nan)

    kernel = (
        HMC(log_prob, num_steps=10, step_size=0.4, compile=hmc_compile)
        if kind == "hmc"
        else NUTS(log_prob, step_size=0.4, compile=hmc_compile)
    )
    g = torch.Generator().manual_seed(0)
    state = kernel.init(torch.zeros(64, 2, dtype=F64))
    before = state.position
    state, info = kernel.step(state, g)
    assert info.is_divergent.any() and not info.is_divergent.all()
    assert torch.isfinite(state.position).all() and torch.isfinite(state.log_prob).all()
    stayed = info.is_divergent & ~info.is_accepted
    assert stayed.any()
    torch.testing.assert_close(state.position[stayed], before[stayed])
    assert not any(calls), "log_prob_fn was called on NaN positions"


def test_chees_adapts_trajectory_length_to_the_target_scale(hmc_compile):
    # Isotropic N(0, s^2): the half period of the dynamics is pi s, so a useful T grows with s.
    # (With U(0, 1) jitter the ChEES criterion plateaus beyond a few half periods, so T is
    # only identified from below: test that it reaches the scale and grows with it.)
    lengths = {}
    for scale in (0.5, 4.0):
        target = GaussianTarget(torch.zeros(5, dtype=F64), scale**2 * torch.eye(5, dtype=F64))
        g = torch.Generator().manual_seed(3)
        x0 = torch.randn(64, 5, generator=g, dtype=F64)
        kernel = ChEESHMC(target.log_prob, mass_matrix="identity", compile=hmc_compile)
        result = sample(
            None, x0, kernel, num_warmup=300, num_samples=10, generator=g, progress=False
        )
        lengths[scale] = float(result.kernel.trajectory_length)
        assert lengths[scale] >= scale, lengths
    assert lengths[4.0] > 2 * lengths[0.5], lengths
