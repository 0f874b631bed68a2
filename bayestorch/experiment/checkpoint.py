"""Atomic, verified checkpoints.

A checkpoint file is ``MAGIC | sha256(payload) | payload`` where ``payload`` is a
``torch.save`` blob. It is written to a temporary file in the same directory, flushed,
fsync'ed and renamed over the final name (``os.replace`` is atomic), then the directory
is fsync'ed: a run killed at any moment leaves either the old file or the new one. The
digest catches a file truncated or corrupted afterwards (disk full, a partial copy): such
a file is never loaded; :func:`load_latest` falls back to the previous checkpoint with a
warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "atomic_write",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "save_checkpoint",
]

_MAGIC = b"BTCKPT01"
_DIGEST = 32
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated or corrupt."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return atomic_write(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint; raise :class:`CheckpointError` if it is damaged."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    header = len(_MAGIC) + _DIGEST
    if len(blob) < header or not blob.startswith(_MAGIC):
        raise CheckpointError(f"checkpoint {path} is not a bayestorch checkpoint or is truncated")
    digest, payload = blob[len(_MAGIC) : header], blob[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({len(blob)} bytes; checksum mismatch)"
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """The file name of the checkpoint taken at ``step``."""
    return Path(directory) / f"step_{int(step):08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def load_latest(directory: str | Path, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The newest intact checkpoint in ``directory``; ``None`` when there is none.

    A damaged newer file is skipped with a warning naming it; if every file is damaged,
    :class:`CheckpointError` lists them.
    """
    candidates = list_checkpoints(directory)
    problems = []
    for _, path in reversed(candidates):
        try:
            state = load_checkpoint(path, map_location=map_location)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(
                f"skipped damaged checkpoint(s): {'; '.join(problems)}; resuming from {path.name}",
                RuntimeWarning,
                stacklevel=2,
            )
        return state
    if problems:
        raise CheckpointError("no intact checkpoint to resume from: " + "; ".join(problems))
    return None


def prune_checkpoints(directory: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest checkpoints."""
    for _, path in list_checkpoints(directory)[:-keep_last]:
        path.unlink(missing_ok=True)
