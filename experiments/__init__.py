"""Experiments: ``python -m experiments configs/NAME.yaml [key.sub=value ...]``.

Each module here defines a ``Config`` dataclass (extending
``bayestorch.experiment.ExperimentConfig``) and ``run(cfg, ctx)``; the config's
``experiment:`` key picks the module from this registry (imported on demand).
"""

REGISTRY: dict[str, str] = {
    "vae": "experiments.vae",
    "posterior": "experiments.posterior",
    "models": "experiments.models",
    "samplers": "experiments.samplers",
    "gumbel_vae": "experiments.gumbel_vae",
    "stochastic_beam": "experiments.stochastic_beam",
    "nngp_digits": "experiments.nngp_digits",
    "gp_co2": "experiments.gp_co2",
    "dpp_minibatch": "experiments.dpp_minibatch",
    "kalman_nile": "experiments.kalman_nile",
    "lstm_kalman": "experiments.lstm_kalman",
    "ising_sw": "experiments.ising_sw",
    "segment_sw": "experiments.segment_sw",
    "segment_bnp": "experiments.segment_bnp",
    "gan_modes": "experiments.gan_modes",
    "gan_clusters": "experiments.gan_clusters",
    "gan_digits": "experiments.gan_digits",
}
