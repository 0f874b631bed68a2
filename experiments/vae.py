"""VAE on binarised digits: test ELBO and IWAE log-likelihood estimates, plots.

Kingma & Welling (2014) trained with the ELBO (or Burda et al.'s IWAE bound); evaluated
with the ELBO and the importance-weighted bound at K = 1 ... 1000, the largest being the
test log-likelihood estimate (Burda et al. 2016, section 5).

Under ``torchrun --nproc_per_node=N`` the same config trains with DistributedDataParallel:
every rank draws the same shuffle, takes its slice of each global batch of
``train.batch_size`` images, and scales its loss so that the gradients DDP averages are
those of the mean bound over the whole batch; each rank draws the reparameterisation noise
for its slice from its own stream. Rank 0 evaluates, plots and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from bayestorch.experiment import ExperimentConfig, RunContext, distributed
from bayestorch.experiment.data import ImageDataConfig, load_binarized
from bayestorch.experiment.plots import image_grid, new_figure
from bayestorch.vi import VAE


@dataclass
class ModelConfig:
    latent_dim: int = 2
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128])
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    objective: Literal["elbo", "iwae"] = "elbo"
    num_samples: int = 1  # particles of the ELBO, or K of the IWAE bound
    checkpoint_every: int = 25  # epochs
    eval_every: int = 10  # epochs between test-bound entries in metrics.jsonl


@dataclass
class EvalConfig:
    elbo_particles: int = 100
    iwae_samples: list[int] = field(default_factory=lambda: [1, 10, 100, 1000])
    chunk_size: int = 250
    batch_size: int = 400


@dataclass
class Config(ExperimentConfig):
    experiment: str = "vae"
    output_dir: str = "runs/vae_digits"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _bound(model: VAE, x, objective: str, num_samples: int, generator) -> torch.Tensor:
    if objective == "iwae":
        return model.iwae_bound(x, num_samples, generator=generator)
    return model.elbo(x, num_samples=num_samples, generator=generator)


class TrainBound(nn.Module):
    """The per-example training bound as a module, so that DDP can wrap it."""

    def __init__(self, model: VAE, objective: str, num_samples: int) -> None:
        super().__init__()
        self.model, self.objective, self.num_samples = model, objective, num_samples

    def forward(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return _bound(self.model, x, self.objective, self.num_samples, generator)


@torch.no_grad()
def evaluate(model: VAE, x, cfg: EvalConfig, generator) -> dict[str, float]:
    """Mean per-image test bounds in nats: the ELBO and the IWAE bound at each K."""
    totals = {"elbo": 0.0, **{f"iwae_{k}": 0.0 for k in cfg.iwae_samples}}
    for batch in x.split(cfg.batch_size):
        totals["elbo"] += (
            model.elbo(batch, num_samples=cfg.elbo_particles, generator=generator).sum().item()
        )
        for k in cfg.iwae_samples:
            bound = model.iwae_bound(batch, k, chunk_size=cfg.chunk_size, generator=generator)
            totals[f"iwae_{k}"] += bound.sum().item()
    return {key: value / len(x) for key, value in totals.items()}


def run(cfg: Config, ctx: RunContext) -> None:
    # Data: pixels in [0, 1], binarised at a fixed threshold for the Bernoulli decoder.
    train_x, test_x, data = load_binarized(cfg.data, ctx.device)

    model = VAE(
        train_x.shape[1],
        cfg.model.latent_dim,
        cfg.model.hidden_sizes,
        likelihood=cfg.model.likelihood,
    ).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    # Several processes: per-rank noise for each rank's slice of the batch (created before
    # the restore, which sets its state) and DDP (after it: DDP broadcasts rank 0's
    # parameters). One process: as ever.
    world, rank = ctx.world_size, ctx.rank
    noise = ctx.generator if world == 1 else ctx.make_generator("train_noise", per_rank=True)
    start_epoch, _ = ctx.restore({"model": model, "optimizer": optimizer})
    bound_fn = distributed.wrap_model(
        TrainBound(model, cfg.train.objective, cfg.train.num_samples), ctx.device
    )

    # Training: one seeded generator drives the shuffle (and, in one process, the noise).
    probe = EvalConfig(elbo_particles=10, iwae_samples=[], batch_size=cfg.eval.batch_size)
    bar = ctx.progress(
        range(start_epoch, cfg.train.epochs),
        initial=start_epoch,
        total=cfg.train.epochs,
        desc="train",
    )
    for epoch in bar:
        model.train()
        total = torch.zeros((), device=ctx.device)
        for index in torch.randperm(len(train_x), generator=ctx.generator, device=ctx.device).split(
            cfg.train.batch_size
        ):
            if world == 1:
                loss = -(bound := bound_fn(train_x[index], noise)).mean()
            else:  # DDP averages gradients over ranks: weight the sum so they are the mean's
                shard = index.tensor_split(world)[rank]
                bound = bound_fn(train_x[shard], noise)
                loss = -bound.sum() * (world / len(index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += bound.detach().sum()
        train_bound = distributed.all_reduce_sum(total).item() / len(train_x)
        if not np.isfinite(train_bound):
            raise FloatingPointError(
                f"training bound became {train_bound} in epoch {epoch + 1}; lower train.lr"
            )
        record = {"train_bound": train_bound}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
            model.eval()
            record["test_elbo"] = evaluate(model, test_x, probe, ctx.generator)["elbo"]
        ctx.log(epoch + 1, **record)
        bar.set_postfix(bound=f"{train_bound:.2f}")
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == cfg.train.epochs:
            ctx.save_checkpoint(epoch + 1, {"model": model, "optimizer": optimizer})

    if not ctx.is_main:  # the replicas are equal: rank 0 evaluates and writes
        return
    # Evaluation on its own generator: the figures do not depend on how training ran.
    model.eval()
    eval_generator = ctx.make_generator("eval")
    test = evaluate(model, test_x, cfg.eval, eval_generator)
    train = evaluate(
        model,
        train_x,
        EvalConfig(elbo_particles=cfg.eval.elbo_particles, iwae_samples=[]),
        eval_generator,
    )
    k_max = max(cfg.eval.iwae_samples)
    summary = {
        "test_elbo": test["elbo"],
        "test_iwae": {str(k): test[f"iwae_{k}"] for k in cfg.eval.iwae_samples},
        "test_log_likelihood": test[f"iwae_{k_max}"],
        "test_log_likelihood_k": k_max,
        "train_elbo": train["elbo"],
        "epochs": cfg.train.epochs,
        "num_train": len(train_x),
        "num_test": len(test_x),
    }
    ctx.write_summary(summary)
    ctx.info(
        f"test ELBO {test['elbo']:.2f} nats, "
        f"IWAE(k={k_max}) log-likelihood {test[f'iwae_{k_max}']:.2f} nats"
    )
    plot(model, test_x, data.test_y, data.image_shape, ctx, eval_generator)


def plot(model: VAE, test_x, test_y, image_shape, ctx: RunContext, generator) -> None:
    """Reconstructions, prior samples, the latent space and the learning curves."""
    n = 16
    recon = model.reconstruct(test_x[:n]).cpu()
    fig, ax = new_figure(figsize=(8, 1.4))
    ax.imshow(image_grid(torch.cat([test_x[:n].cpu(), recon]), image_shape, n), cmap="gray_r")
    ax.set_title("test images (top) and reconstructions (bottom)")
    ax.axis("off")
    ctx.save_figure(fig, "reconstructions")

    fig, ax = new_figure(figsize=(5, 5))
    ax.imshow(
        image_grid(model.sample(64, generator=generator).cpu(), image_shape, 8), cmap="gray_r"
    )
    ax.set_title("samples from the prior (decoder means)")
    ax.axis("off")
    ctx.save_figure(fig, "prior_samples")

    with torch.no_grad():
        z = model.encode(test_x).mean.cpu().numpy()
    if z.shape[1] > 2:  # project onto the two leading principal components
        z = z - z.mean(0)
        z = z @ np.linalg.svd(z, full_matrices=False)[2][:2].T
    fig, ax = new_figure(figsize=(6, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=test_y.numpy(), cmap="tab10", s=8)
    fig.colorbar(points, ax=ax, label="digit")
    ax.set_title("posterior means of the test images")
    ctx.save_figure(fig, "latent_space")

    records = ctx.read_metrics()
    fig, ax = new_figure(figsize=(6, 4))
    ax.plot([r["step"] for r in records], [r["train_bound"] for r in records], label="train bound")
    tested = [r for r in records if "test_elbo" in r]
    ax.plot([r["step"] for r in tested], [r["test_elbo"] for r in tested], "o-", label="test ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.legend()
    ctx.save_figure(fig, "learning_curves")
