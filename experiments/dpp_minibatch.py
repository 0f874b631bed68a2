"""DPP mini-batches for SGD on class-imbalanced digits: gradient error, accuracy, overhead.

The same MLP is trained with uniform mini-batches and with k-DPP mini-batches
(``bayestorch.dpp.DPPBatchSampler``) whose features are either fixed (random Fourier
features of the input and its one-hot label: an RBF kernel) or the model's high layer,
refreshed every few steps (Huang, Xu & Oppermann 2019), each plain or Horvitz-Thompson
weighted. Reported: the mean squared error of the mini-batch gradient around the full
gradient at fixed parameters (at initialisation and at the uniformly trained parameters),
test accuracy and loss per epoch, the class mix of the batches, and the sampler's time per
batch as a fraction of the training step (in ``metrics.jsonl``: timings are not
reproducible, so they stay out of ``summary.json``).

References:
    Zhang, Kjellstrom & Mandt (2017). Determinantal point processes for mini-batch
    diversification. UAI.
    Huang, Xu & Oppermann (2019). Efficient diversified mini-batch selection using variable
    high-layer features. ACML.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bayestorch.dpp import DPPBatchSampler, random_fourier_features
from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.data import load_image_dataset
from bayestorch.experiment.plots import new_figure
from bayestorch.utils import make_generator
from bayestorch.vi.vae import mlp

VARIANTS = ("uniform", "dpp_inputs", "dpp_inputs_ht", "dpp_high", "dpp_high_ht")


@dataclass
class DataConfig:
    test_fraction: float = 0.2
    split_seed: int = 0
    imbalance: float = 0.1  # class c keeps imbalance ** (c / 9) of its training images


@dataclass
class SamplerConfig:
    rff_features: int = 256  # random Fourier features (the DPP's rank bound)
    input_lengthscale: float = 2.0
    label_scale: float = 2.0  # one-hot labels scaled by this before the RBF features
    high_lengthscale: float = 2.0
    refresh_every: int = 20  # steps between high-layer feature refreshes
    chunk_size: int = 10


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    hidden_sizes: list[int] = field(default_factory=lambda: [64])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))


@dataclass
class Config(ExperimentConfig):
    experiment: str = "dpp_minibatch"
    output_dir: str = "runs/dpp_minibatch"
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe_batches: int = 200  # batches per sampler in the gradient-error probe


def imbalanced(x, y, imbalance: float, seed: int):
    """Keep a fraction ``imbalance ** (c / 9)`` of the images of class ``c``."""
    rng = np.random.default_rng(seed)
    keep = [
        i
        for c in range(10)
        for i in rng.permutation(np.flatnonzero(y.numpy() == c))[
            : max(2, int(round((y == c).sum().item() * imbalance ** (c / 9))))
        ]
    ]
    keep = torch.tensor(sorted(keep))
    return x[keep], y[keep]


def make_sampler(variant, model, x, y, cfg: Config, generator):
    """The uniform baseline (None) or a DPPBatchSampler over fixed or high-layer features."""
    if variant == "uniform":
        return None
    s = cfg.sampler

    def rff(z, lengthscale):  # the same projection at every refresh (fixed seed)
        return random_fourier_features(z, s.rff_features, lengthscale, make_generator(cfg.seed))

    if variant.startswith("dpp_inputs"):
        z = torch.cat([x, s.label_scale * F.one_hot(y, 10).to(x)], dim=1)
        features, refresh = rff(z, s.input_lengthscale), None
    else:

        def features():
            with torch.no_grad():
                return rff(model[:-1](x), s.high_lengthscale)

        refresh = s.refresh_every
    return DPPBatchSampler(
        features,
        cfg.train.batch_size,
        refresh_every=refresh,
        generator=generator,
        chunk_size=s.chunk_size,
    )


def uniform_batches(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return [b.tolist() for b in order[: n - n % batch_size].split(batch_size)]


def batch_loss(model, x, y, index, sampler, weighted):
    losses = F.cross_entropy(model(x[index]), y[index], reduction="none")
    if weighted:
        return (sampler.weights[index].to(losses) * losses).sum()
    return losses.mean()


def gradient_errors(model, x, y, cfg, variants, generator) -> dict[str, float]:
    """E||g_batch - g_full||^2 at the model's current parameters, per sampler."""
    params = [p for p in model.parameters()]

    def grad(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    full = grad(F.cross_entropy(model(x), y))
    out = {}
    for variant in variants:
        sampler = make_sampler(variant, model, x, y, cfg, generator)
        errors = []
        for _ in range(cfg.probe_batches):
            if sampler is None:
                index = torch.randperm(len(x), generator=generator)[: cfg.train.batch_size]
            else:
                index = sampler.kdpp.sample(generator=generator).nonzero()[:, 0]
            loss = batch_loss(model, x, y, index, sampler, variant.endswith("_ht"))
            errors.append((grad(loss) - full).square().sum().item())
        out[variant] = float(np.mean(errors))
    return out


@torch.no_grad()
def evaluate(model, x, y) -> dict[str, float]:
    logits = model(x)
    correct = (logits.argmax(-1) == y).float()
    per_class = torch.stack([correct[y == c].mean() for c in range(10)])
    return {
        "test_loss": F.cross_entropy(logits, y).item(),
        "test_accuracy": correct.mean().item(),
        "worst_class_accuracy": per_class.min().item(),
    }


def run(cfg: Config, ctx: RunContext) -> None:
    unknown = set(cfg.train.variants) - set(VARIANTS)
    if unknown or "uniform" not in cfg.train.variants:
        raise ValueError(
            f"train.variants must include 'uniform' (the baseline) and take names from "
            f"{list(VARIANTS)}, got {cfg.train.variants}"
        )
    data = load_image_dataset(
        "digits", test_fraction=cfg.data.test_fraction, split_seed=cfg.data.split_seed
    )
    x, y = imbalanced(data.train_x, data.train_y, cfg.data.imbalance, cfg.data.split_seed)
    test_x, test_y = data.test_x, data.test_y
    runs = [(v, s) for s in cfg.train.seeds for v in cfg.train.variants]
    generators = {(v, s): ctx.make_generator(f"{v}-{s}", "cpu") for v, s in runs}
    probe_generator = ctx.make_generator("probe", "cpu")
    done, extra = ctx.restore({})
    results: dict = extra.get("results", {})
    step = extra.get("step", 0)
    timings: dict = extra.get("timings", {})

    for index_run, (variant, seed) in enumerate(runs):
        if index_run < done:
            continue
        g = generators[(variant, seed)]
        torch.manual_seed(10_000 * cfg.seed + seed)  # same initial weights for every variant
        model = mlp(x.shape[1], cfg.train.hidden_sizes, 10)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        sampler = make_sampler(variant, model, x, y, cfg, g)
        weighted = variant.endswith("_ht")
        curve, sample_time, step_time, num_steps = [], 0.0, 0.0, 0
        for epoch in range(cfg.train.epochs):
            total, count = 0.0, 0
            tic = time.perf_counter()
            batches = iter(sampler or uniform_batches(len(x), cfg.train.batch_size, g))
            while True:
                index = next(batches, None)
                sampled = time.perf_counter()
                if index is None:
                    break
                loss = batch_loss(model, x, y, torch.tensor(index), sampler, weighted)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sample_time += sampled - tic
                tic = time.perf_counter()
                step_time += tic - sampled
                total, count, num_steps = total + loss.item(), count + 1, num_steps + 1
            record = {"train_loss": total / count, **evaluate(model, test_x, test_y)}
            curve.append(record)
            step += 1
            ctx.log(step, variant=variant, seed=seed, epoch=epoch + 1, **record)
        timings[f"{variant}-{seed}"] = {
            "sampler_ms_per_batch": 1e3 * sample_time / num_steps,
            "step_ms": 1e3 * step_time / num_steps,
        }
        results[f"{variant}-{seed}"] = {"curve": curve}
        if variant == "uniform":  # gradient error at initialisation and at these parameters
            torch.manual_seed(10_000 * cfg.seed + seed)
            init = mlp(x.shape[1], cfg.train.hidden_sizes, 10)
            for name, net in (("init", init), ("trained", model)):
                errors = gradient_errors(net, x, y, cfg, cfg.train.variants, probe_generator)
                results[f"grad-{name}-{seed}"] = errors
        ctx.save_checkpoint(
            index_run + 1, {}, {"results": results, "step": step, "timings": timings}
        )
        ctx.info(f"{variant} seed {seed}: test accuracy {curve[-1]['test_accuracy']:.4f}")
    ctx.log(step + 1, kind="timing", **timings)
    summary = summarise(results, cfg, y)
    ctx.write_summary(summary)
    plot(ctx, cfg, results, x, y, generators)


def summarise(results, cfg: Config, y) -> dict:
    summary = {"num_train": len(y), "class_counts": torch.bincount(y, minlength=10).tolist()}
    for variant in cfg.train.variants:
        finals = [results[f"{variant}-{s}"]["curve"][-1] for s in cfg.train.seeds]
        row = {
            key: {
                "mean": float(np.mean([f[key] for f in finals])),
                "sd": float(np.std([f[key] for f in finals])),
            }
            for key in finals[0]
        }
        for point in ("init", "trained"):
            ratios = [
                results[f"grad-{point}-{s}"][variant] / results[f"grad-{point}-{s}"]["uniform"]
                for s in cfg.train.seeds
            ]
            row[f"grad_error_ratio_{point}"] = float(np.mean(ratios))
        summary[variant] = row
    return summary


def plot(ctx: RunContext, cfg: Config, results, x, y, generators) -> None:
    epochs = np.arange(1, cfg.train.epochs + 1)
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    for variant in cfg.train.variants:
        curves = [results[f"{variant}-{s}"]["curve"] for s in cfg.train.seeds]
        for ax, key in zip(axes, ("train_loss", "test_accuracy")):
            ax.plot(epochs, np.mean([[r[key] for r in c] for c in curves], 0), label=variant)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key.replace("_", " "))
    axes[1].legend()
    ctx.save_figure(fig, "learning_curves")

    # one batch of each kind in a 2-D PCA projection of the inputs
    centred = (x - x.mean(0)).numpy()
    proj = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    torch.manual_seed(cfg.seed)
    model = mlp(x.shape[1], cfg.train.hidden_sizes, 10)
    g = make_generator(cfg.seed)
    kinds = [v for v in cfg.train.variants if not v.endswith("_ht")]
    fig, axes = new_figure(1, len(kinds), figsize=(4.2 * len(kinds), 4), squeeze=False)
    shares = {}
    for ax, variant in zip(axes[0], kinds):
        sampler = make_sampler(variant, model, x, y, cfg, g)
        draws = [
            uniform_batches(len(x), cfg.train.batch_size, g)[0]
            if sampler is None
            else sampler.kdpp.sample(generator=g).nonzero()[:, 0].tolist()
            for _ in range(50)
        ]
        shares[variant] = np.bincount(y[sum(draws, [])].numpy(), minlength=10) / (
            50 * len(draws[0])
        )
        ax.scatter(proj[:, 0], proj[:, 1], c=y.numpy(), cmap="tab10", s=4, alpha=0.25)
        ax.scatter(proj[draws[0], 0], proj[draws[0], 1], c="k", s=30, marker="x")
        ax.set_title(f"{variant}: one batch of {len(draws[0])}")
    ctx.save_figure(fig, "batch_projection")

    fig, ax = new_figure(figsize=(7, 4))
    width = 0.8 / (len(shares) + 1)
    data_share = np.bincount(y.numpy(), minlength=10) / len(y)
    ax.bar(np.arange(10), data_share, width, label="training data", color="gray")
    for i, (variant, share) in enumerate(shares.items()):
        ax.bar(np.arange(10) + (i + 1) * width, share, width, label=variant)
    ax.set_xlabel("class")
    ax.set_ylabel("share of batch items")
    ax.legend()
    ctx.save_figure(fig, "class_mix")

    fig, ax = new_figure(figsize=(7, 4))
    for i, point in enumerate(("init", "trained")):
        ratios = [
            np.mean(
                [
                    results[f"grad-{point}-{s}"][v] / results[f"grad-{point}-{s}"]["uniform"]
                    for s in cfg.train.seeds
                ]
            )
            for v in cfg.train.variants
        ]
        ax.bar(np.arange(len(ratios)) + 0.4 * i, ratios, 0.4, label=f"at {point} parameters")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(cfg.train.variants)) + 0.2, cfg.train.variants, rotation=20)
    ax.set_ylabel("gradient MSE / uniform")
    ax.legend()
    ctx.save_figure(fig, "gradient_error")
