"""Mode collapse on the 2-D ring (8 modes) and grid (25 modes), PacGAN's protocol.

For each variant {GAN, Bayesian GAN} x {standard-normal, GMM, DP prior} (identical
networks) and each replicate seed: train on an endless stream from the benchmark mixture,
draw ``eval.num_samples`` (2500) samples, and measure the modes captured, the fraction of
high-quality samples (within 3 sigma of the nearest mode) and the reverse KL of the
high-quality samples' mode histogram from uniform (bayestorch.gan.evaluation). Reports
mean ± sd over the replicates and plots each variant's samples over the true density.

References:
    Lin et al., "PacGAN", NeurIPS 2018 (tables 1-2: ring 7.9 ± 0.1 modes, 95.6 % high
    quality, reverse KL 0.07; grid 24.8 ± 0.2, 93.6 %, 0.04).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from bayestorch.experiment import RunContext
from bayestorch.experiment.config import ExperimentConfig
from bayestorch.experiment.plots import new_figure
from bayestorch.gan.evaluation import (
    grid_means,
    mode_coverage,
    ring_means,
    sample_gaussian_mixture,
)
from experiments.gan_common import (
    VARIANTS,
    BayesConfig,
    NetworkConfig,
    PriorConfig,
    RunSpec,
    TrainConfig,
    aggregate,
    build_variant,
    check_variants,
    derived_seed,
    eval_generator,
    markdown_table,
    train_series,
)


@dataclass
class DataConfig:
    name: Literal["ring8", "grid25"] = "ring8"


@dataclass
class EvalConfig:
    num_samples: int = 2500
    threshold: float = 3.0  # high quality: within threshold * sigma of the nearest mode


@dataclass
class Config(ExperimentConfig):
    experiment: str = "gan_modes"
    output_dir: str = "runs/gan_ring8"
    data: DataConfig = field(default_factory=DataConfig)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    num_replicates: int = 3
    first_replicate: int = 0  # run replicates first .. first + num - 1 (split runs by process)
    net: NetworkConfig = field(default_factory=NetworkConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def benchmark(name: str, device) -> tuple[torch.Tensor, float]:
    """``(means, sigma)`` of the ring (8 modes, radius 1, sigma 0.01) or grid (25, 0.05)."""
    if name == "ring8":
        return ring_means(8, 1.0, device=device), 0.01
    return grid_means((-4.0, -2.0, 0.0, 2.0, 4.0), device=device), 0.05


COLUMNS = [
    ("modes", "modes captured", ".2f"),
    ("high_quality_pct", "high-quality %", ".1f"),
    ("reverse_kl", "reverse KL", ".3f"),
]


def run(cfg: Config, ctx: RunContext) -> None:
    check_variants(cfg.variants)
    means, std = benchmark(cfg.data.name, ctx.device)
    specs = [
        RunSpec(v, r, derived_seed(cfg.seed, cfg.data.name, r))
        for r in range(cfg.first_replicate, cfg.first_replicate + cfg.num_replicates)
        for v in cfg.variants  # replicate-major: a partial series holds whole replicates
    ]

    def build(spec: RunSpec):
        return build_variant(
            spec.variant,
            2,
            net=cfg.net,
            prior=cfg.prior,
            train=cfg.train,
            bayes=cfg.bayes,
            seed=spec.seed,
            device=ctx.device,
        )

    def next_batch(spec: RunSpec, g: torch.Generator) -> torch.Tensor:
        return sample_gaussian_mixture(cfg.train.batch_size, means, std, generator=g)[0]

    @torch.no_grad()
    def evaluate(spec: RunSpec, model):
        samples = model.sample(cfg.eval.num_samples, generator=eval_generator(ctx, spec))
        cover = mode_coverage(samples, means, std, cfg.eval.threshold)
        result = {
            "modes": cover.modes_captured,
            "high_quality_pct": 100.0 * cover.high_quality,
            "reverse_kl": cover.reverse_kl,
            "counts": cover.counts.tolist(),
            "all_modes": cover.modes_captured == len(means),
        }
        keep = {spec.variant: samples.cpu()} if spec.replicate == cfg.first_replicate else {}
        return result, keep

    results, keep = train_series(ctx, specs, build, next_batch, evaluate, cfg.train)

    table = aggregate(results, [k for k, _, _ in COLUMNS], cfg.variants)
    every = {v: all(r["all_modes"] for r in results if r["variant"] == v) for v in table}
    text = markdown_table(table, COLUMNS)
    text += "\n\nall modes in every run: " + ", ".join(
        f"{v} {'yes' if ok else 'no'}" for v, ok in every.items()
    )
    ctx.write_text("table", text)
    ctx.info("\n" + text)
    ctx.write_summary(
        {
            "benchmark": cfg.data.name,
            "num_modes": len(means),
            "sigma": std,
            "num_samples": cfg.eval.num_samples,
            "steps": cfg.train.steps,
            "table": table,
            "all_modes_every_run": every,
            "runs": [{k: v for k, v in r.items() if k != "counts"} for r in results],
        }
    )
    plot(keep, means, std, cfg, ctx)


def plot(keep, means, std, cfg: Config, ctx: RunContext) -> None:
    """Each variant's first-replicate samples over the true density."""
    means = means.cpu().numpy()
    span = np.abs(means).max() + (0.5 if cfg.data.name == "ring8" else 1.5)
    grid = np.linspace(-span, span, 300)
    xx, yy = np.meshgrid(grid, grid)
    d2 = (xx[..., None] - means[:, 0]) ** 2 + (yy[..., None] - means[:, 1]) ** 2
    # the density's log, floored: on a linear scale sigma = 0.01 blobs are invisible
    density = np.log(np.exp(-d2 / (2 * std**2)).mean(-1) / (2 * np.pi * std**2) + 1e-3)
    variants = [v for v in cfg.variants if v in keep]
    cols = min(3, len(variants))
    rows = -(-len(variants) // cols)
    fig, axes = new_figure(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, variant in zip(axes.flat, variants, strict=False):
        samples = keep[variant].numpy()
        ax.axis("on")
        ax.contourf(xx, yy, density, levels=20, cmap="Greys")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.5)
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        ax.set_title(variant)
    fig.suptitle(f"{cfg.data.name}: {cfg.eval.num_samples} samples over the true density")
    ctx.save_figure(fig, "samples")
