"""The experiment shell: configs, run directories, checkpoints, metrics, progress, plots.

The only part of bayestorch that reads YAML, touches files or prints. The same run works
under ``torchrun`` (``bayestorch.experiment.distributed``): rank 0 writes, every rank
computes.
"""

from bayestorch.experiment import distributed as distributed
from bayestorch.experiment.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from bayestorch.experiment.cli import load_experiment_config, main
from bayestorch.experiment.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_yaml,
    parse_overrides,
)
from bayestorch.experiment.run import RunContext, resolve_device, seed_everything

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ExperimentConfig",
    "RunContext",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_checkpoint",
    "load_experiment_config",
    "load_latest",
    "load_yaml",
    "main",
    "parse_overrides",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
