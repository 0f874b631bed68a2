from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from bayestorch.experiment import ConfigError, ExperimentConfig, RunContext, resolve_device


@dataclass
class Toy(ExperimentConfig):
    experiment: str = "toy"
    lr: float = 0.1


def _context(tmp_path, **kwargs):
    return RunContext(Toy(output_dir=str(tmp_path / "run"), device="cpu", progress=False, **kwargs))


def _train(ctx, model, optimizer, start, stop):
    for step in range(start, stop):
        x = torch.randn(8, 3, generator=ctx.generator)
        noise = torch.rand(())  # the global RNG is checkpointed too
        loss = (model(x) ** 2).mean() + 0 * noise
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctx.log(step + 1, loss=loss.item(), noise=noise.item())
        ctx.save_checkpoint(step + 1, {"model": model, "optimizer": optimizer})


def _fresh_model():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_run_directory_layout(tmp_path):
    ctx = _context(tmp_path)
    assert (ctx.output_dir / "config.yaml").read_text().startswith("experiment: toy")
    assert ctx.plots_dir.is_dir() and ctx.checkpoint_dir.is_dir()
    ctx.log(1, loss=torch.tensor(2.5), values=[1, 2])
    ctx.write_summary({"b": 1.0, "a": torch.tensor(3.0), "bad": float("nan")})
    assert ctx.read_metrics() == [{"step": 1, "loss": 2.5, "values": [1, 2]}]
    summary = json.loads(ctx.summary_path.read_text())
    assert summary == {"a": 3.0, "b": 1.0, "bad": "nan"}


def test_resume_continues_exactly(tmp_path):
    # Uninterrupted: 6 steps.
    ctx = _context(tmp_path / "a")
    model, optimizer = _fresh_model()
    _train(ctx, model, optimizer, 0, 6)
    reference = ctx.read_metrics()

    # Interrupted after 4 steps (with a stray metrics line past the checkpoint), resumed.
    ctx = _context(tmp_path / "b")
    model, optimizer = _fresh_model()
    _train(ctx, model, optimizer, 0, 4)
    (ctx.checkpoint_dir / "step_00000004.pt").unlink()  # killed before checkpoint 4 landed
    ctx = _context(tmp_path / "b", resume=True)
    model, optimizer = _fresh_model()
    start, extra = ctx.restore({"model": model, "optimizer": optimizer})
    assert (start, extra) == (3, {})
    assert [r["step"] for r in ctx.read_metrics()] == [1, 2, 3]
    _train(ctx, model, optimizer, start, 6)
    assert ctx.read_metrics() == reference


def test_fresh_start_clears_previous_run(tmp_path):
    ctx = _context(tmp_path)
    model, optimizer = _fresh_model()
    _train(ctx, model, optimizer, 0, 2)
    ctx.write_summary({"x": 1})
    table = ctx.write_text("summary", "a table")
    assert table.read_text() == "a table\n"
    ctx = _context(tmp_path)
    assert ctx.read_metrics() == [] and not ctx.summary_path.exists() and not table.exists()
    assert not list(ctx.checkpoint_dir.iterdir())


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    ctx = _context(tmp_path, resume=True)
    model, optimizer = _fresh_model()
    assert ctx.restore({"model": model, "optimizer": optimizer}) == (0, {})


def test_resume_with_another_config_is_refused(tmp_path):
    ctx = _context(tmp_path)
    model, optimizer = _fresh_model()
    _train(ctx, model, optimizer, 0, 1)
    ctx = _context(tmp_path, resume=True, lr=0.2)
    with pytest.raises(
        ConfigError, match=r"differs from the checkpoint's at lr \(checkpoint 0.1, now 0.2\)"
    ):
        ctx.restore({"model": model, "optimizer": optimizer})


def test_generators_are_named_and_independent(tmp_path):
    ctx = _context(tmp_path)
    other = ctx.make_generator("eval")
    assert not torch.equal(torch.rand(3, generator=ctx.generator), torch.rand(3, generator=other))
    with pytest.raises(ValueError, match="already exists"):
        ctx.make_generator("eval")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(ConfigError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
