"""The six GAN variants on scikit-learn's digits: sample grids and class coverage.

{GAN, Bayesian GAN} x {standard-normal, GMM, DP prior} with identical MLPs, trained on the
8x8 digits (pixels in [0, 1]). A digits classifier (multinomial logistic regression on the
pixels, trained here on the training split, its test accuracy reported) labels
``eval.num_samples`` generated images; reported per variant: the classes found (those given
to at least ``eval.min_fraction`` of the samples), the class histogram's KL from uniform
(0 for perfectly balanced classes; the real test images' own value is printed beside) and
the classifier's mean confidence on the samples (a rough quality proxy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bayestorch.experiment import RunContext
from bayestorch.experiment.config import ExperimentConfig
from bayestorch.experiment.plots import image_grid, new_figure
from bayestorch.gan.evaluation import kl_from_uniform
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
    digits_network,
    eval_generator,
    markdown_table,
    train_series,
)


@dataclass
class DataConfig:
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class EvalConfig:
    num_samples: int = 1000
    min_fraction: float = 0.01  # a class is found when it gets this share of the samples


def _default_train() -> TrainConfig:
    return TrainConfig(steps=3000, batch_size=64, lr=2.0e-4, log_every=100, checkpoint_every=500)


@dataclass
class Config(ExperimentConfig):
    experiment: str = "gan_digits"
    output_dir: str = "runs/gan_digits"
    data: DataConfig = field(default_factory=DataConfig)
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    num_replicates: int = 1
    net: NetworkConfig = field(default_factory=digits_network)
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(num_components=10))
    train: TrainConfig = field(default_factory=_default_train)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def class_coverage(labels: np.ndarray, num_classes: int, min_fraction: float) -> dict:
    """Classes found (share >= ``min_fraction``), KL of the class histogram from uniform."""
    counts = np.bincount(labels, minlength=num_classes)
    return {
        "classes_found": int((counts >= min_fraction * len(labels)).sum()),
        "class_kl": kl_from_uniform(torch.as_tensor(counts)),
        "histogram": counts.tolist(),
    }


def run(cfg: Config, ctx: RunContext) -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    check_variants(cfg.variants)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target
    order = np.random.default_rng(cfg.data.split_seed).permutation(len(x))
    num_test = int(round(cfg.data.test_fraction * len(x)))
    test, train = order[:num_test], order[num_test:]
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], y[train])
    classifier_accuracy = float(classifier.score(x[test], y[test]))
    real = class_coverage(classifier.predict(x[test]), 10, cfg.eval.min_fraction)
    train_x = torch.as_tensor(x[train], device=ctx.device)
    bayes = BayesConfig(**{**vars(cfg.bayes), "num_data": len(train)})

    specs = [
        RunSpec(v, r, derived_seed(cfg.seed, "digits", r))
        for v in cfg.variants
        for r in range(cfg.num_replicates)
    ]

    def build(spec: RunSpec):
        return build_variant(
            spec.variant,
            x.shape[1],
            net=cfg.net,
            prior=cfg.prior,
            train=cfg.train,
            bayes=bayes,
            seed=spec.seed,
            device=ctx.device,
        )

    def next_batch(spec: RunSpec, g: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(train_x), (cfg.train.batch_size,), generator=g, device=ctx.device)
        return train_x[index]

    @torch.no_grad()
    def evaluate(spec: RunSpec, model):
        samples = model.sample(cfg.eval.num_samples, generator=eval_generator(ctx, spec)).cpu()
        probs = classifier.predict_proba(samples.double().numpy())
        result = class_coverage(probs.argmax(1), 10, cfg.eval.min_fraction)
        result["confidence"] = float(probs.max(1).mean())
        keep = {spec.variant: samples[:64]} if spec.replicate == 0 else {}
        return result, keep

    results, keep = train_series(ctx, specs, build, next_batch, evaluate, cfg.train)
    columns = [
        ("classes_found", "classes found", ".2f"),
        ("class_kl", "KL(class histogram || uniform)", ".3f"),
        ("confidence", "classifier confidence", ".3f"),
    ]
    table = aggregate(results, [k for k, _, _ in columns], cfg.variants)
    text = markdown_table(table, columns) + (
        f"\n\nclassifier (logistic regression) test accuracy {classifier_accuracy:.3f}; "
        f"on the real test images: {real['classes_found']} classes, "
        f"KL {real['class_kl']:.3f}"
    )
    ctx.write_text("table", text)
    ctx.info("\n" + text)
    ctx.write_summary(
        {
            "classifier_test_accuracy": classifier_accuracy,
            "real_test_images": real,
            "table": table,
            "runs": results,
            "steps": cfg.train.steps,
        }
    )
    variants = [v for v in cfg.variants if v in keep]
    cols = min(3, len(variants))
    rows = -(-len(variants) // cols)
    fig, axes = new_figure(rows, cols, figsize=(4 * cols, 4.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, variant in zip(axes.flat, variants, strict=False):
        ax.imshow(image_grid(keep[variant], (8, 8), 8), cmap="gray_r")
        ax.set_title(variant)
    ctx.save_figure(fig, "samples")
