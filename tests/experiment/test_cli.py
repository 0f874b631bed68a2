"""The experiment runner end to end: errors, smoke configs, reproducibility, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayestorch.experiment import main
from experiments import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "vae_digits_smoke.yaml"


def _command(*args):
    return [sys.executable, "-m", "experiments", *map(str, args)]


def _run(*args, **kwargs):
    return subprocess.run(
        _command(*args), cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["configs/missing.yaml"], "error: config file not found: configs/missing.yaml"),
        (
            [SMOKE, "train.epoch=3"],
            "error: unknown key 'train.epoch' (did you mean 'train.epochs'?)",
        ),
        ([SMOKE, "train.epochs=many"], "error: 'train.epochs' must be int, got str 'many'"),
        ([SMOKE, "train.epochs"], "error: bad override 'train.epochs': expected key=value"),
        ([SMOKE, "device=tpu"], "error: 'device' must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ],
)
def test_config_errors_are_one_line(args, message, capsys):
    assert main([str(a) for a in args], REGISTRY) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_module_entry_point_reports_errors():
    result = _run("configs/missing.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: config file not found: configs/missing.yaml"
    assert _run("--help").returncode == 0


def _smoke_configs():
    return sorted((ROOT / "configs").glob("*_smoke.yaml"))


def test_every_experiment_has_a_smoke_config():
    import yaml

    covered = {yaml.safe_load(p.read_text())["experiment"] for p in _smoke_configs()}
    assert covered == set(REGISTRY), (
        f"experiments without a *_smoke.yaml: {set(REGISTRY) - covered}"
    )


@pytest.mark.parametrize("config", _smoke_configs(), ids=lambda p: p.stem)
def test_smoke_config_runs(config, tmp_path):
    out = tmp_path / "run"
    assert main([str(config), f"output_dir={out}"], REGISTRY) == 0
    summary = json.loads((out / "summary.json").read_text())
    numbers = [v for v in _leaves(summary) if isinstance(v, (int, float))]
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert (out / "config.yaml").exists() and (out / "metrics.jsonl").exists()
    assert list((out / "plots").glob("*.png"))


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


# A run long enough to be killed mid-training; one thread per process, as three run at once.
LONG = ["train.epochs=60", "train.checkpoint_every=1", "train.eval_every=5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}


@pytest.mark.slow
def test_reproducible_and_resumes_after_sigkill(tmp_path):
    out = tmp_path / "c"
    first, second, victim = (
        subprocess.Popen(_command(SMOKE, *LONG, f"output_dir={tmp_path / name}"), cwd=ROOT, env=ENV)
        for name in ("a", "b", "c")
    )
    # Kill the third run with SIGKILL as soon as two checkpoints exist.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if len(list((out / "checkpoints").glob("step_*.pt"))) >= 2:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "run finished before it could be killed"
    assert not (out / "summary.json").exists()
    steps = sorted(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.pt"))
    assert steps and steps[-1] < 60

    # Two uninterrupted runs agree byte for byte.
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    reference = (tmp_path / "a" / "summary.json").read_text()
    assert (tmp_path / "b" / "summary.json").read_text() == reference

    # The killed run, resumed, ends exactly where the uninterrupted one did.
    resumed = _run(SMOKE, *LONG, f"output_dir={out}", "resume=true", env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {steps[-1]}" in resumed.stderr
    assert (out / "summary.json").read_text() == reference
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "a" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_resume_skips_a_truncated_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = [SMOKE, "train.epochs=6", "train.checkpoint_every=2", f"output_dir={out}"]
    assert _run(*args).returncode == 0
    reference = (out / "summary.json").read_text()
    newest = out / "checkpoints" / "step_00000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = _run(*args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped damaged checkpoint" in resumed.stderr and "step_00000006.pt" in resumed.stderr
    assert "resumed from step 4" in resumed.stderr
    assert (out / "summary.json").read_text() == reference
