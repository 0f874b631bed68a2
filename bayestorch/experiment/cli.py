"""``python -m experiments CONFIG [key=value ...]``: run any registered experiment.

The same command runs under ``torchrun --nproc_per_node=N -m experiments CONFIG ...``: the
run context joins the process group, and it is destroyed when the run ends or fails.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayestorch.experiment import distributed
from bayestorch.experiment.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_yaml,
    parse_overrides,
)
from bayestorch.experiment.run import RunContext

__all__ = ["load_experiment_config", "main"]

USAGE = "usage: python -m experiments CONFIG.yaml [key.sub=value ...]"


def load_experiment_config(
    path: str | Path, overrides: Sequence[str], registry: Mapping[str, str]
) -> tuple[Any, Any]:
    """Read ``path``, apply overrides, and build the named experiment's config.

    Args:
        registry: experiment name -> module path; the module defines ``Config`` and
            ``run(cfg, ctx)``.

    Returns:
        ``(config, module)``.
    """
    data = apply_overrides(load_yaml(path), parse_overrides(list(overrides)))
    available = ", ".join(sorted(registry))
    name = data.get("experiment")
    if name is None:
        raise ConfigError(f"missing required key 'experiment'; available experiments: {available}")
    if name not in registry:
        raise ConfigError(f"unknown experiment {name!r}; available experiments: {available}")
    module = importlib.import_module(registry[name])
    return config_from_dict(module.Config, data), module


def main(argv: Sequence[str] | None, registry: Mapping[str, str]) -> int:
    """Entry point; returns the process exit code (2 for a config error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\nexperiments: " + ", ".join(sorted(registry)), file=sys.stderr)
        return 0 if argv else 2
    try:
        config, module = load_experiment_config(argv[0], argv[1:], registry)
        context = RunContext(config)  # under torchrun: joins the process group
        start = time.perf_counter()
        module.run(config, context)
        context.info(
            f"done in {time.perf_counter() - start:.1f} s; results in {context.output_dir}"
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    return 0
