"""Shared parts of the GAN experiments (gan_modes, gan_clusters, gan_digits).

* config sections for the networks, the latent priors, training and the Bayesian GAN;
* network builders: small MLPs (identical across the variants of an experiment);
* the six variants {GAN, Bayesian GAN} x {standard-normal, GMM, DP prior}, built by
  :func:`build_variant` (the prior is a constructor argument, nothing else changes);
* :func:`train_series`: trains a list of runs (variant x seed) one after the other on the
  experiment shell, with progress, metrics, and atomic checkpoints holding the current
  run's model, optimiser and sampler states, the generator states and the finished runs'
  results, so a run killed at any point resumes exactly (same losses as without the
  interruption).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from bayestorch.experiment import ConfigError, RunContext

VARIANTS = ("gan-normal", "gan-gmm", "gan-dp", "bgan-normal", "bgan-gmm", "bgan-dp")


# -- config sections -----------------------------------------------------------------------
@dataclass
class NetworkConfig:
    """Generator and discriminator MLPs (the same for every variant)."""

    latent_dim: int = 2
    generator_hidden: list[int] = field(default_factory=lambda: [128, 128])
    discriminator_hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: Literal["relu", "leaky_relu", "tanh"] = "relu"
    output: Literal["identity", "sigmoid"] = "identity"  # sigmoid for pixels in [0, 1]
    responsibility_hidden: list[int] = field(default_factory=lambda: [128, 128])


@dataclass
class PriorConfig:
    """Latent priors: the mixture's size and temperature, the DP's alpha and truncation."""

    num_components: int = 8
    temperature: float = 0.5
    dp_alpha: float = 1.0
    dp_truncation: int = 20


@dataclass
class TrainConfig:
    steps: int = 2000  # per run
    batch_size: int = 128
    loss: Literal["ns", "wgan-gp"] = "ns"
    lr: float = 1.0e-3
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    responsibility: bool = False  # train q(k | x) alongside G and D (mixture priors)
    # learning-rate (SGHMC step-size) schedule over each run: constant, or cosine from lr
    # down to lr * lr_final (small late steps sharpen the generated modes)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_final: float = 0.05
    log_every: int = 100
    checkpoint_every: int = 500


@dataclass
class BayesConfig:
    """The Bayesian GAN's SGHMC (Saatchi & Wilson 2017)."""

    num_generators: int = 2
    num_discriminators: int = 2
    lr: float = 1.0e-3
    friction: float = 0.1
    num_data: int = 10_000  # N in the posterior's data term (a stream has none: nominal)
    preconditioner: Literal["none", "rmsprop"] = "none"  # "none": plain SGHMC (the paper's)
    burn_in: int = 0  # steps before weight samples are kept (and an rmsprop mass is frozen)
    keep_every: int = 10
    max_kept: int = 20


def digits_network() -> NetworkConfig:
    """The digits experiments' networks: 16-d latent, MLPs 256-256, leaky ReLU, sigmoid out."""
    return NetworkConfig(
        latent_dim=16,
        generator_hidden=[256, 256],
        discriminator_hidden=[256, 256],
        activation="leaky_relu",
        output="sigmoid",
    )


# -- networks ------------------------------------------------------------------------------
_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}


def mlp(
    in_features: int,
    out_features: int,
    hidden: Sequence[int],
    activation: str = "relu",
    output: str = "identity",
) -> nn.Sequential:
    """``Linear -> act`` for each hidden width, then a ``Linear`` (and ``sigmoid``)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_features))
    if output == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts (stable across processes and platforms)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def check_variants(variants: Sequence[str], key: str = "variants") -> None:
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(
            f"'{key}' must be a non-empty list of {', '.join(VARIANTS)}; got {list(variants)}"
        )


def build_prior(kind: str, net: NetworkConfig, prior: PriorConfig) -> nn.Module:
    from bayestorch.gan import DirichletProcessPrior, GaussianMixturePrior, GaussianPrior

    if kind == "normal":
        return GaussianPrior(net.latent_dim)
    if kind == "gmm":
        return GaussianMixturePrior(
            prior.num_components, net.latent_dim, temperature=prior.temperature
        )
    if kind == "dp":
        return DirichletProcessPrior(prior.dp_alpha, prior.dp_truncation, net.latent_dim)
    raise ConfigError(f"unknown prior {kind!r}: expected normal, gmm or dp")


def build_variant(
    variant: str,
    data_dim: int,
    *,
    net: NetworkConfig,
    prior: PriorConfig,
    train: TrainConfig,
    bayes: BayesConfig,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """One of :data:`VARIANTS`, its weights initialised from ``seed`` (global RNG untouched).

    The networks are the same for every variant; only the prior and the training
    (Adam on one G and D, or SGHMC over several weight samples) differ.
    """
    from bayestorch.gan import GAN, BayesianGAN, ResponsibilityNet

    check_variants([variant], "variant")
    family, kind = variant.split("-")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        latent = build_prior(kind, net, prior)
        generator = mlp(net.latent_dim, data_dim, net.generator_hidden, net.activation, net.output)
        discriminator = mlp(data_dim, 1, net.discriminator_hidden, net.activation)
        responsibility = None
        if train.responsibility and kind != "normal":
            responsibility = ResponsibilityNet(
                data_dim, _num_components(latent), hidden=tuple(net.responsibility_hidden)
            )
        common = {"loss": train.loss, "responsibility": responsibility}
        if family == "gan":
            model = GAN(
                generator,
                discriminator,
                latent,
                lr=train.lr,
                betas=tuple(train.betas),
                **common,
            )
        else:
            model = BayesianGAN(
                generator,
                discriminator,
                latent,
                num_generators=bayes.num_generators,
                num_discriminators=bayes.num_discriminators,
                num_data=bayes.num_data,
                lr=bayes.lr,
                friction=bayes.friction,
                burn_in=bayes.burn_in,
                keep_every=bayes.keep_every,
                max_kept=bayes.max_kept,
                **common,
                **(
                    {}
                    if bayes.preconditioner == "none"
                    else {"preconditioner": bayes.preconditioner}
                ),
            )
    return model.to(device)


def _num_components(prior: nn.Module) -> int:
    return int(prior.weights.shape[-1])


def generate(model: nn.Module, z: Tensor) -> Tensor:
    """The generator's output at given latents ``z`` (a Bayesian GAN's first posterior
    generator sample)."""
    if hasattr(model, "generators"):
        return model.generators[0](z)
    return model.generator(z)


# -- checkpointable state of the GAN objects -----------------------------------------------
def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything that resumes ``model`` exactly (weights, optimiser/sampler states)."""
    if hasattr(model, "checkpoint_state"):
        return model.checkpoint_state()
    return model.state_dict()


def load_model_state(model: nn.Module, state: dict[str, Any]) -> None:
    if hasattr(model, "load_checkpoint_state"):
        model.load_checkpoint_state(state)
    else:
        model.load_state_dict(state)


_OPTIMIZERS = ("g_optimizer", "d_optimizer", "g_sampler", "d_sampler", "aux_optimizer")


def set_lr_factor(model: nn.Module, factor: float) -> None:
    """Scale every optimiser's (and SGHMC sampler's) learning rate to ``factor`` times its
    initial value (kept in the param group, so checkpoints carry it)."""
    for name in _OPTIMIZERS:
        optimizer = getattr(model, name, None)
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def lr_factor(train: TrainConfig, step: int) -> float:
    """The schedule's factor at ``step`` (0-based) of ``train.steps``."""
    if train.lr_schedule == "constant":
        return 1.0
    t = step / max(1, train.steps - 1)
    return train.lr_final + (1 - train.lr_final) * 0.5 * (1 + math.cos(math.pi * t))


# -- the series of runs --------------------------------------------------------------------
@dataclass
class RunSpec:
    """One training run: a variant, a replicate index and its seed."""

    variant: str
    replicate: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.replicate}"


class Series:
    """The state of a series of runs, checkpointable with ``state_dict``.

    Holds the index of the current run, the step within it, the current model (rebuilt
    from its spec on load) and the results (plus any tensors kept for plots) of the
    finished runs.
    """

    def __init__(self, specs: Sequence[RunSpec], build: Callable[[RunSpec], nn.Module]):
        self.specs = list(specs)
        self.build = build
        self.run = 0
        self.step = 0
        self.model: nn.Module | None = None
        self.results: list[dict[str, Any]] = []
        self.keep: dict[str, Any] = {}

    def start(self) -> nn.Module:
        self.model = self.build(self.specs[self.run])
        self.step = 0
        return self.model

    def finish(self, result: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
        self.results.append(result)
        self.keep.update(keep or {})
        self.run += 1
        self.step = 0
        self.model = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "step": self.step,
            "model": None if self.model is None else model_state(self.model),
            "results": self.results,
            "keep": self.keep,
            "names": [s.name for s in self.specs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["names"] != [s.name for s in self.specs]:
            raise ConfigError("cannot resume: the checkpoint holds another list of runs")
        self.run, self.results, self.keep = state["run"], state["results"], state["keep"]
        self.model = None
        if state["model"] is not None:
            self.start()
            load_model_state(self.model, state["model"])
        self.step = state["step"]


def train_series(
    ctx: RunContext,
    specs: Sequence[RunSpec],
    build: Callable[[RunSpec], nn.Module],
    next_batch: Callable[[RunSpec, torch.Generator], Tensor],
    evaluate: Callable[[RunSpec, nn.Module], tuple[dict[str, Any], dict[str, Any]]],
    train: TrainConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train and evaluate each run of ``specs`` in turn; resumable at any step.

    Each run reseeds the ``"train"`` generator from its spec's seed, so a run's result does
    not depend on the runs before it. ``evaluate(spec, model)`` returns ``(result, keep)``:
    a JSON-able dict of figures and a dict of tensors kept for the plots.

    Returns:
        ``(results, keep)`` over all runs.
    """
    if train.steps < 1 or train.log_every < 1 or train.checkpoint_every < 1:
        raise ConfigError("'train.steps', 'train.log_every', 'train.checkpoint_every' must be >= 1")
    if not 0 < train.lr_final <= 1:
        raise ConfigError(f"'train.lr_final' must be in (0, 1], got {train.lr_final}")
    g = ctx.make_generator("train")
    series = Series(specs, build)
    ctx.restore({"series": series})
    steps = train.steps
    done = series.run * steps + series.step
    bar = ctx.progress(total=len(specs) * steps, initial=done, desc="train")
    while series.run < len(specs):
        spec = specs[series.run]
        if series.model is None:
            g.manual_seed(derived_seed(spec.seed, "train"))
            series.start()
        model = series.model
        model.train()
        while series.step < steps:
            set_lr_factor(model, lr_factor(train, series.step))
            metrics = model.training_step(next_batch(spec, g), generator=g)
            series.step += 1
            bar.update(1)
            global_step = series.run * steps + series.step
            if series.step % train.log_every == 0:
                values = {k: float(v) for k, v in metrics.items()}
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    raise FloatingPointError(
                        f"{spec.name}: {', '.join(bad)} became non-finite at step {series.step}; "
                        "lower train.lr (or bayes.lr)"
                    )
                ctx.log(global_step, run=spec.name, **values)
            if series.step % train.checkpoint_every == 0 and series.step < steps:
                ctx.save_checkpoint(global_step, {"series": series})
        model.eval()
        result, keep = evaluate(spec, model)
        result = {"variant": spec.variant, "replicate": spec.replicate, **result}
        series.finish(result, keep)
        ctx.info(f"{spec.name}: " + ", ".join(_short(k, v) for k, v in result.items()))
        ctx.save_checkpoint(series.run * steps, {"series": series})
    bar.close()
    return series.results, series.keep


def _short(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key} {value:.4g}"
    if isinstance(value, (int, str)):
        return f"{key} {value}"
    return f"{key} ..."


def eval_generator(ctx: RunContext, spec: RunSpec) -> torch.Generator:
    """A fresh generator for evaluating ``spec`` (independent of how training ran)."""
    return torch.Generator(device=ctx.device).manual_seed(derived_seed(spec.seed, "eval"))


# -- tables --------------------------------------------------------------------------------
def aggregate(
    results: Sequence[dict[str, Any]], keys: Sequence[str], variants: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {key: {"mean", "sd", "min", "max"}}}`` over the replicates (sd with
    ``ddof=1``; 0 for a single replicate)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        if not rows:
            continue
        table[variant] = {}
        for key in keys:
            values = np.array([float(r[key]) for r in rows])
            table[variant][key] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
                "runs": len(values),
            }
    return table


def markdown_table(
    table: dict[str, dict[str, dict[str, float]]],
    columns: Sequence[tuple[str, str, str]],
) -> str:
    """A markdown table of ``mean ± sd`` per variant; ``columns``: (key, header, format)."""
    header = "| variant | runs | " + " | ".join(h for _, h, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for variant, stats in table.items():
        runs = next(iter(stats.values()))["runs"]
        cells = [
            f"{format(stats[k]['mean'], fmt)} ± {format(stats[k]['sd'], fmt)}"
            for k, _, fmt in columns
        ]
        lines.append(f"| {variant} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
