"""Categorical VAE on binarised digits: Gumbel-softmax (relaxed) vs straight-through vs the
Gaussian-latent VAE, compared on the test ELBO and the IWAE log-likelihood estimate.

Jang, Gu & Poole (2017), table 2, report -ELBO 101.5 (Gumbel-softmax) vs 107.8
(straight-through Gumbel) on binarised MNIST with a 20 x 10 categorical latent. The three models
train in lockstep (one epoch of each in turn, each on its own generator), so a checkpoint holds
all of them and a resumed run continues identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bayestorch.experiment import ConfigError, ExperimentConfig, RunContext
from bayestorch.experiment.data import ImageDataConfig, load_binarized
from bayestorch.experiment.plots import image_grid, new_figure
from bayestorch.vi import VAE
from bayestorch.vi.categorical_vae import CategoricalVAE

ESTIMATORS = ("relaxed", "straight_through", "gaussian")


@dataclass
class ModelConfig:
    num_latents: int = 20
    num_categories: int = 10
    gaussian_latent_dim: int = 20  # the Gaussian VAE's latent size
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128])
    estimators: list[str] = field(default_factory=lambda: list(ESTIMATORS))


@dataclass
class TrainConfig:
    epochs: int = 150
    batch_size: int = 64
    lr: float = 1e-3
    tau: float = 1.0  # initial temperature
    anneal_rate: float = 3e-4  # tau = max(min_tau, tau exp(-rate * step)), Jang et al. (2017)
    min_tau: float = 0.5
    anneal_every: int = 100  # steps between temperature updates
    eval_every: int = 10  # epochs between test-ELBO entries in metrics.jsonl
    checkpoint_every: int = 25


@dataclass
class EvalConfig:
    elbo_particles: int = 100
    iwae_samples: int = 1000
    chunk_size: int = 250
    batch_size: int = 400


@dataclass
class Config(ExperimentConfig):
    experiment: str = "gumbel_vae"
    output_dir: str = "runs/gumbel_vae_digits"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def build(name: str, data_dim: int, cfg: Config) -> torch.nn.Module:
    if name == "gaussian":
        return VAE(data_dim, cfg.model.gaussian_latent_dim, cfg.model.hidden_sizes)
    if name not in ESTIMATORS:
        raise ValueError(f"model.estimators: unknown {name!r}; choose from {', '.join(ESTIMATORS)}")
    return CategoricalVAE(
        data_dim,
        cfg.model.num_latents,
        cfg.model.num_categories,
        cfg.model.hidden_sizes,
        estimator=name,
        tau=cfg.train.tau,
        anneal=cfg.train.anneal_rate,
        min_tau=cfg.train.min_tau,
        anneal_every=cfg.train.anneal_every,
    )


def test_elbo(model, x, particles: int, batch_size: int, generator) -> float:
    """Mean per-image ELBO in nats; the categorical models use discrete one-hot draws."""
    total = 0.0
    with torch.no_grad():
        for batch in x.split(batch_size):
            kwargs = {"discrete": True} if isinstance(model, CategoricalVAE) else {}
            bound = model.elbo(batch, num_samples=particles, generator=generator, **kwargs)
            total += bound.sum().item()
    return total / len(x)


def test_iwae(model, x, cfg: EvalConfig, generator) -> float:
    total = 0.0
    with torch.no_grad():
        for batch in x.split(cfg.batch_size):
            bound = model.iwae_bound(
                batch, cfg.iwae_samples, chunk_size=cfg.chunk_size, generator=generator
            )
            total += bound.sum().item()
    return total / len(x)


def run(cfg: Config, ctx: RunContext) -> None:
    if cfg.data.binarize_threshold is None:
        raise ConfigError("data.binarize_threshold: the categorical VAE needs binary images")
    train_x, test_x, data = load_binarized(cfg.data, ctx.device)

    # Every model starts from its own seeded initialisation and shuffles with its own stream.
    names = list(cfg.model.estimators)
    models, optimizers, generators = {}, {}, {}
    for i, name in enumerate(names):
        torch.manual_seed(cfg.seed * 1000 + i)
        models[name] = build(name, train_x.shape[1], cfg).to(ctx.device)
        optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=cfg.train.lr)
        generators[name] = ctx.make_generator(f"train_{name}")
    state = {**{f"model_{n}": m for n, m in models.items()}}
    state.update({f"optimizer_{n}": o for n, o in optimizers.items()})
    probe_generator = ctx.make_generator("probe")  # created before restore: it is checkpointed
    start_epoch, _ = ctx.restore(state)

    bar = ctx.progress(range(start_epoch, cfg.train.epochs), initial=start_epoch, desc="train")
    for epoch in bar:
        record = {}
        for name in names:
            model, optimizer, g = models[name], optimizers[name], generators[name]
            model.train()
            total = torch.zeros((), device=ctx.device)
            order = torch.randperm(len(train_x), generator=g, device=ctx.device)
            for index in order.split(cfg.train.batch_size):
                bound = model(train_x[index], generator=g)
                optimizer.zero_grad(set_to_none=True)
                (-bound.mean()).backward()
                optimizer.step()
                if isinstance(model, CategoricalVAE):
                    model.advance()
                total += bound.detach().sum()
            record[f"train_bound_{name}"] = total.item() / len(train_x)
            if not np.isfinite(record[f"train_bound_{name}"]):
                raise FloatingPointError(f"{name}: training bound diverged in epoch {epoch + 1}")
            if isinstance(model, CategoricalVAE):
                record["tau"] = model.tau
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
                model.eval()
                record[f"test_elbo_{name}"] = test_elbo(model, test_x, 10, 400, probe_generator)
        ctx.log(epoch + 1, **record)
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == cfg.train.epochs:
            ctx.save_checkpoint(epoch + 1, state)

    # Evaluation on its own generator; the same bounds for every model.
    eval_generator = ctx.make_generator("eval")
    table = {}
    for name in names:
        model = models[name].eval()
        table[name] = {
            "test_elbo": test_elbo(
                model, test_x, cfg.eval.elbo_particles, cfg.eval.batch_size, eval_generator
            ),
            "test_iwae": test_iwae(model, test_x, cfg.eval, eval_generator),
            "train_elbo": test_elbo(
                model, train_x, cfg.eval.elbo_particles, cfg.eval.batch_size, eval_generator
            ),
        }
        ctx.info(
            f"{name:>16}: test ELBO {table[name]['test_elbo']:.2f}, "
            f"IWAE(k={cfg.eval.iwae_samples}) {table[name]['test_iwae']:.2f} nats"
        )
    summary = {
        "table": table,
        "iwae_samples": cfg.eval.iwae_samples,
        "latent": f"{cfg.model.num_latents} x {cfg.model.num_categories} categorical; "
        f"Gaussian {cfg.model.gaussian_latent_dim}-d",
        "epochs": cfg.train.epochs,
        "final_tau": next((m.tau for m in models.values() if isinstance(m, CategoricalVAE)), None),
        "num_train": len(train_x),
        "num_test": len(test_x),
    }
    if "relaxed" in table and "straight_through" in table:
        summary["relaxed_minus_straight_through_elbo"] = (
            table["relaxed"]["test_elbo"] - table["straight_through"]["test_elbo"]
        )
    ctx.write_summary(summary)
    plot(models, test_x, data.image_shape, ctx, eval_generator)


def plot(models, test_x, image_shape, ctx: RunContext, generator) -> None:
    """Prior samples and reconstructions of each model, and the learning curves."""
    n = len(models)
    fig, axes = new_figure(1, n, figsize=(4 * n, 4.4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        samples = model.sample(64, generator=generator).cpu()
        ax.imshow(image_grid(samples, image_shape, 8), cmap="gray_r")
        ax.set_title(f"{name} (decoder means)")
        ax.axis("off")
    ctx.save_figure(fig, "prior_samples")

    k = 16
    rows = [test_x[:k].cpu()] + [m.reconstruct(test_x[:k]).cpu() for m in models.values()]
    fig, ax = new_figure(figsize=(8, 0.6 * len(rows) + 0.4))
    ax.imshow(image_grid(torch.cat(rows), image_shape, k), cmap="gray_r")
    ax.set_title("test images, then reconstructions: " + ", ".join(models))
    ax.axis("off")
    ctx.save_figure(fig, "reconstructions")

    records = ctx.read_metrics()
    fig, ax = new_figure(figsize=(6, 4))
    for name in models:
        tested = [r for r in records if f"test_elbo_{name}" in r]
        ax.plot(
            [r["step"] for r in tested], [r[f"test_elbo_{name}"] for r in tested], "o-", label=name
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test ELBO (nats per image)")
    ax.legend()
    ctx.save_figure(fig, "learning_curves")
