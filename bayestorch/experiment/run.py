"""The run directory of one experiment: device, seeding, metrics, checkpoints, progress, plots.

``output_dir/`` holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON
object per logged step), ``checkpoints/`` (atomic, the newest ``keep_checkpoints`` kept),
``summary.json`` and ``plots/*.png``. With ``resume=true`` the context restores the newest
intact checkpoint (model, optimiser, every RNG state and the step) and drops metrics
logged after it, so a killed run continues exactly where its checkpoint left it.

Under ``torchrun`` (see :mod:`bayestorch.experiment.distributed`) the context initialises
the process group and puts each rank on its device (``cuda:LOCAL_RANK`` or the CPU); every
rank runs the same experiment code, but only rank 0 writes files (config, metrics,
checkpoints, summary, text, plots) and prints. A checkpoint holds every rank's RNG states,
so a killed multi-process run resumes exactly with the same world size.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from bayestorch.experiment import distributed
from bayestorch.experiment.checkpoint import (
    atomic_write,
    checkpoint_path,
    list_checkpoints,
    load_latest,
    prune_checkpoints,
    save_checkpoint,
)
from bayestorch.experiment.config import ConfigError, ExperimentConfig, config_to_dict
from bayestorch.experiment.threads import resolve_threads

__all__ = ["RunContext", "resolve_device", "seed_everything"]

# Keys that may differ between a run and its resumption.
_RESUMABLE_KEYS = {"resume", "progress", "device", "threads", "output_dir"}


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device, checked."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"'device' must be auto, cpu, cuda or cuda:N, got {spec!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"'device' is {spec!r} but CUDA is not available; use device=cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"'device' is {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- user code may draw from numpy's global RNG
    torch.manual_seed(seed)


def _derived_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible rather than invalid
    return value


class RunContext:
    """Everything an experiment's ``run(cfg, ctx)`` needs besides the library.

    Attributes:
        config: the experiment's config dataclass.
        device: the resolved ``torch.device`` (``cuda:LOCAL_RANK`` under torchrun on GPUs).
        rank, world_size, is_main: this process's place in a torchrun launch (0, 1, True
            without one); only the main process writes files.
        generator: the run's generator on ``device``, seeded from ``config.seed``; its state
            is checkpointed.
        threads: torch's intra-op thread count, set from ``config.threads`` (``auto``: the
            CPUs this process may use, see ``bayestorch.experiment.threads``).
        output_dir, plots_dir, checkpoint_dir: paths of the run directory.
    """

    def __init__(self, config: ExperimentConfig, *, keep_checkpoints: int = 2) -> None:
        self.config = config
        self.keep_checkpoints = keep_checkpoints
        self.threads = resolve_threads(config.threads)
        torch.set_num_threads(self.threads)
        self.device = distributed.setup(resolve_device(config.device))
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.output_dir = Path(config.output_dir)
        self.plots_dir = self.output_dir / "plots"
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.summary_path = self.output_dir / "summary.json"
        self._generators: dict[str, torch.Generator] = {}
        self._config_dict = config_to_dict(config)

        seed_everything(config.seed)
        self.generator = self.make_generator("main")
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if not config.resume:
                self._clear_previous_run()
            self.plots_dir.mkdir(exist_ok=True)
            self.checkpoint_dir.mkdir(exist_ok=True)
            _atomic_write_text(
                self.output_dir / "config.yaml", yaml.safe_dump(self._config_dict, sort_keys=False)
            )
        distributed.barrier()  # no rank reads the run directory before rank 0 has set it up

    # -- randomness -------------------------------------------------------------------
    def make_generator(
        self, name: str, device: torch.device | str | None = None, *, per_rank: bool = False
    ) -> torch.Generator:
        """A generator seeded from ``(config.seed, name)``, checkpointed with the run.

        Separate streams keep parts of a run independent: e.g. evaluation draws from its
        own generator, so its numbers do not depend on how many training steps ran.
        With ``per_rank=True`` and several processes, each rank's stream is seeded from
        ``(config.seed, name, rank)`` (e.g. noise for a rank's own shard of a batch);
        otherwise every rank draws the same numbers (e.g. the shuffle all ranks share).
        """
        if name in self._generators:
            raise ValueError(f"a generator named {name!r} already exists in this run")
        generator = torch.Generator(device=torch.device(device or self.device))
        key = f"{name}@rank{self.rank}" if per_rank and self.world_size > 1 else name
        generator.manual_seed(_derived_seed(self.config.seed, key))
        self._generators[name] = generator
        return generator

    def _rng_state(self) -> dict[str, Any]:
        np_state = np.random.get_state()  # noqa: NPY002
        state = {
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "generators": {name: g.get_state() for name, g in self._generators.items()},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        python = state["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        kind, keys, *rest = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        for name, generator_state in state["generators"].items():
            if name not in self._generators:
                raise ConfigError(
                    f"checkpoint has a generator {name!r} that this run does not create"
                )
            self._generators[name].set_state(generator_state)

    # -- files ------------------------------------------------------------------------
    def _clear_previous_run(self) -> None:
        for _, path in list_checkpoints(self.checkpoint_dir):
            path.unlink()
        for path in (self.metrics_path, self.summary_path, *self.output_dir.glob("*.txt")):
            path.unlink(missing_ok=True)
        if self.plots_dir.is_dir():
            for path in self.plots_dir.glob("*.png"):
                path.unlink()

    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics}`` to ``metrics.jsonl`` (rank 0 only)."""
        if not self.is_main:
            return
        record = {"step": int(step), **_jsonable(metrics)}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (a torn last line from a killed run is ignored)."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write ``summary.json`` atomically (keys sorted, so equal runs give equal files)."""
        summary = _jsonable(summary)
        if not self.is_main:
            return summary
        _atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    def write_text(self, name: str, text: str) -> Path:
        """Write ``output_dir/<name>.txt`` atomically (e.g. a summary table); a fresh run
        removes the previous run's text files."""
        path = self.output_dir / f"{name}.txt"
        if not self.is_main:
            return path
        _atomic_write_text(path, text if text.endswith("\n") else text + "\n")
        return path

    def save_figure(self, figure: Any, name: str) -> Path:
        """Save a matplotlib figure as ``plots/<name>.png`` and close it."""
        import matplotlib.pyplot as plt

        path = self.plots_dir / f"{name}.png"
        if self.is_main:
            figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        return path

    # -- checkpoints ------------------------------------------------------------------
    def save_checkpoint(
        self, step: int, objects: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> Path:
        """Checkpoint ``objects`` (anything with ``state_dict``), every RNG state and ``step``.

        Under torchrun every rank must call this (it gathers each rank's RNG states);
        rank 0 writes ``objects`` as it holds them (DDP keeps the replicas equal).
        """
        rng = distributed.gather_objects(self._rng_state())
        path = checkpoint_path(self.checkpoint_dir, step)
        if not self.is_main:
            return path
        state = {
            "step": int(step),
            "objects": {name: obj.state_dict() for name, obj in objects.items()},
            "rng": rng[0],
            "config": self._config_dict,
            "extra": extra or {},
            "world_size": self.world_size,
        }
        if self.world_size > 1:
            state["rng_ranks"] = rng
        save_checkpoint(path, state)
        prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints)
        return path

    def restore(self, objects: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """With ``resume=true``, load the newest intact checkpoint into ``objects``.

        Returns:
            ``(step, extra)``; ``(0, {})`` when starting fresh.
        """
        if not self.config.resume:
            return 0, {}
        # RNG states must stay CPU byte tensors; load_state_dict moves the rest to its device.
        state = load_latest(self.checkpoint_dir, map_location="cpu")
        if state is None:
            self.info(f"resume=true but {self.checkpoint_dir} has no checkpoint: starting fresh")
            return 0, {}
        self._check_same_config(state["config"])
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise ConfigError(
                f"cannot resume: the checkpoint was written by {saved_world} process(es), this "
                f"run has {self.world_size}; resume with the same torchrun --nproc_per_node/"
                "--nnodes, or use another output_dir"
            )
        missing = sorted(set(objects) - set(state["objects"]))
        if missing:
            raise ConfigError(f"checkpoint has no state for {', '.join(missing)}")
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        self._set_rng_state(state["rng_ranks"][self.rank] if "rng_ranks" in state else state["rng"])
        step = int(state["step"])
        if self.is_main:
            kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
            _atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
            self.summary_path.unlink(missing_ok=True)
        self.info(f"resumed from step {step} ({self.checkpoint_dir})")
        return step, state["extra"]

    def _check_same_config(self, saved: dict[str, Any]) -> None:
        diffs = []

        def walk(a: Any, b: Any, key: str) -> None:
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if not key and k in _RESUMABLE_KEYS:
                        continue
                    walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
            elif a != b:
                diffs.append(f"{key} (checkpoint {a!r}, now {b!r})")

        walk(saved, self._config_dict, "")
        if diffs:
            raise ConfigError(
                "cannot resume: the config differs from the checkpoint's at "
                + ", ".join(diffs)
                + "; use another output_dir or resume=false"
            )

    # -- console ----------------------------------------------------------------------
    def progress(self, iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
        """A tqdm bar; hidden when ``progress=false``, stderr is not a terminal, or on
        ranks other than 0."""
        disable = not self.config.progress or not sys.stderr.isatty() or not self.is_main
        return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)

    def info(self, message: str) -> None:
        """A one-line message on stderr that does not break a progress bar (rank 0 only)."""
        if not self.is_main:
            return
        tqdm.write(message, file=sys.stderr)
