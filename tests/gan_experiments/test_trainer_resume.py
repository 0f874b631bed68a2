"""The GAN experiments' trainer resumes from a checkpoint exactly (CPU, tiny config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayestorch.experiment import ConfigError, RunContext, load_experiment_config
from experiments import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "gan_modes_smoke.yaml"
TINY = [
    "train.steps=12",
    "train.batch_size=16",
    "train.log_every=2",
    "train.checkpoint_every=5",
    "eval.num_samples=64",
    "num_replicates=1",
]


class Killed(Exception):
    """Stands for the process being killed."""


def _run(out: Path, variants: str, *, resume: bool = False, kill_at: int | None = None):
    config, module = load_experiment_config(
        SMOKE, [f"output_dir={out}", f"variants={variants}", f"resume={resume}", *TINY], REGISTRY
    )
    ctx = RunContext(config)
    if kill_at is not None:
        log = ctx.log

        def log_then_maybe_die(step, **metrics):
            log(step, **metrics)
            if step >= kill_at:  # after a metrics line past the last checkpoint
                raise Killed

        ctx.log = log_then_maybe_die
    module.run(config, ctx)


def _outputs(out: Path):
    metrics = (out / "metrics.jsonl").read_text().splitlines()
    return metrics, json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize(
    ("variants", "kill_at"),
    [
        ("[gan-gmm,gan-dp]", 8),  # inside the first run, after its step-5 checkpoint
        ("[gan-gmm,gan-dp]", 20),  # inside the second run: the first's result is restored
        ("[bgan-gmm]", 8),  # the Bayesian GAN: SGHMC momenta and all weight samples
    ],
)
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, variants, kill_at):
    _run(tmp_path / "straight", variants)
    with pytest.raises(Killed):
        _run(tmp_path / "killed", variants, kill_at=kill_at)
    assert not (tmp_path / "killed" / "summary.json").exists()
    _run(tmp_path / "killed", variants, resume=True)

    straight_metrics, straight_summary = _outputs(tmp_path / "straight")
    resumed_metrics, resumed_summary = _outputs(tmp_path / "killed")
    assert len(straight_metrics) == 2 * 6 or variants == "[bgan-gmm]"
    assert resumed_metrics == straight_metrics  # every loss, bit for bit
    assert resumed_summary == straight_summary


def test_resume_refuses_another_list_of_runs(tmp_path):
    with pytest.raises(Killed):
        _run(tmp_path, "[gan-gmm,gan-dp]", kill_at=8)
    with pytest.raises(ConfigError, match="variants"):
        _run(tmp_path, "[gan-dp,gan-gmm]", resume=True)


def test_a_resume_that_loses_the_optimiser_state_is_caught(tmp_path, monkeypatch):
    # The deliberately wrong variant: restoring only the weights (Adam's moments lost) must
    # change the losses after the resume, so the exact-resume test above has teeth.
    import experiments.gan_common as common

    _run(tmp_path / "straight", "[gan-gmm]")
    with pytest.raises(Killed):
        _run(tmp_path / "killed", "[gan-gmm]", kill_at=8)
    monkeypatch.setattr(
        common, "load_model_state", lambda model, state: model.load_state_dict(state["module"])
    )
    _run(tmp_path / "killed", "[gan-gmm]", resume=True)
    straight, _ = _outputs(tmp_path / "straight")
    resumed, _ = _outputs(tmp_path / "killed")
    assert resumed[:2] == straight[:2]  # logged before the checkpoint at step 5
    assert resumed[2:] != straight[2:]
