from __future__ import annotations

import pytest
import torch

from bayestorch.experiment.checkpoint import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    prune_checkpoints,
    save_checkpoint,
)


def _state(step):
    return {
        "step": step,
        "weights": torch.arange(5.0) * step,
        "nested": {"lr": 0.1, "betas": (0.9, 0.99)},
    }


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "step_00000001.pt", _state(1))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1 and loaded["nested"]["betas"] == (0.9, 0.99)
    torch.testing.assert_close(loaded["weights"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001.pt"]  # no temp files left


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "foreign"])
def test_damaged_file_is_never_loaded(tmp_path, damage):
    path = save_checkpoint(tmp_path / "step_00000001.pt", _state(1))
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        path.write_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save(_state(1), path)
    with pytest.raises(CheckpointError, match="step_00000001.pt"):
        load_checkpoint(path)


def test_latest_falls_back_to_previous_intact_checkpoint(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, step), _state(step))
    newest = checkpoint_path(tmp_path, 3)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        RuntimeWarning,
        match="skipped damaged checkpoint.*step_00000003.pt.*resuming from step_00000002.pt",
    ):
        assert load_latest(tmp_path)["step"] == 2


def test_all_damaged_is_an_error_and_none_is_none(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "missing") is None
    path = save_checkpoint(checkpoint_path(tmp_path, 1), _state(1))
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        load_latest(tmp_path)


def test_prune_keeps_newest(tmp_path):
    for step in (5, 10, 15, 20):
        save_checkpoint(checkpoint_path(tmp_path, step), _state(step))
    prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [15, 20]


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "step_00000001.pt", _state(1))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("bayestorch.experiment.checkpoint.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2))
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001.pt"]
