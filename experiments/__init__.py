"""Experiments: ``python -m experiments configs/NAME.yaml [key.sub=value ...]``.

Each module here defines a ``Config`` dataclass (extending
``bayestorch.experiment.ExperimentConfig``) and ``run(cfg, ctx)``; the config's
``experiment:`` key picks the module from this registry.
"""

REGISTRY: dict[str, str] = {
    "vae": "experiments.vae",
}
