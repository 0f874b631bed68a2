"""Responsibility learning on digits: a GAN with a mixture latent prior as a clustering model.

Alongside G and D a network C learns q(k | x), trained so that q(k | G(z)) recovers the
component k that z came from (the "posterior consistency module" of Huang, Xu et al.).
Applied to real images, argmax q(k | x) clusters them and the prior's weights (or the mean
responsibilities) estimate the cluster weights. Three parts:

* ``all``: the 10 digit classes, GMM prior with 10 components: clustering accuracy
  (Hungarian matching) and NMI against the labels, beside scikit-learn's KMeans and
  GaussianMixture on the pixels and on PCA-50;
* ``imbalanced``: five classes drawn with weights 0.4/0.25/0.15/0.12/0.08, GMM prior with 5
  components: learned weights against the truth (total variation distance);
* ``dp``: the Dirichlet-process prior (truncation 20) on the imbalanced subset: the number
  of components with weight above 1 % (truth 5).

References:
    Huang, Xu et al., "GAN-based Gaussian Mixture Model Responsibility Learning", ICPR 2021.
    Huang, Xu et al., "Dirichlet Process Mixture Model Learning via GAN".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bayestorch.experiment import ConfigError, RunContext
from bayestorch.experiment.config import ExperimentConfig
from bayestorch.experiment.plots import image_grid, new_figure
from bayestorch.gan.evaluation import (
    clustering_accuracy,
    match_clusters,
    normalized_mutual_info,
    num_components_above,
    total_variation,
)
from experiments.gan_common import (
    BayesConfig,
    NetworkConfig,
    PriorConfig,
    RunSpec,
    TrainConfig,
    aggregate,
    build_variant,
    derived_seed,
    digits_network,
    generate,
    markdown_table,
    train_series,
)

PARTS = ("all", "imbalanced", "dp")


@dataclass
class DataConfig:
    classes: list[int] = field(default_factory=lambda: list(range(10)))
    imbalanced_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    imbalanced_weights: list[float] = field(default_factory=lambda: [0.4, 0.25, 0.15, 0.12, 0.08])


@dataclass
class BaselineConfig:
    pca_dim: int = 50
    num_init: int = 10  # KMeans restarts
    gmm_init: int = 2  # GaussianMixture restarts (full covariances: the slow one)


def _default_train() -> TrainConfig:
    return TrainConfig(steps=3000, batch_size=64, lr=2.0e-4, responsibility=True)


@dataclass
class Config(ExperimentConfig):
    experiment: str = "gan_clusters"
    output_dir: str = "runs/gan_clusters"
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    variant: str = "gan"  # gan or bgan: the family; the prior is fixed by the part
    num_replicates: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    net: NetworkConfig = field(default_factory=digits_network)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=_default_train)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    weight_threshold: float = 0.01


def load_digits_subsets(cfg: DataConfig, seed: int):
    """Pixels in [0, 1] and labels 0..C-1: all chosen classes, and the imbalanced subset
    (the largest sample with the requested class proportions, a seeded choice)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    keep = np.isin(y, cfg.classes)
    x_all, y_all = x[keep], np.searchsorted(np.array(sorted(cfg.classes)), y[keep])

    weights = np.asarray(cfg.imbalanced_weights, dtype=float)
    if len(weights) != len(cfg.imbalanced_classes) or abs(weights.sum() - 1) > 1e-6:
        raise ConfigError(
            "'data.imbalanced_weights' must sum to 1 with one weight per imbalanced class"
        )
    available = np.array([(y == c).sum() for c in cfg.imbalanced_classes])
    total = int(np.floor((available / weights).min()))
    counts = np.floor(weights * total).astype(int)
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == c), size=n, replace=False)
            for c, n in zip(cfg.imbalanced_classes, counts, strict=True)
        ]
    )
    x_imb = x[idx]
    y_imb = np.searchsorted(np.array(cfg.imbalanced_classes), y[idx])
    return (x_all, y_all), (x_imb, y_imb, counts / counts.sum())


def baselines(x: np.ndarray, y: np.ndarray, k: int, cfg: BaselineConfig, seed: int):
    """KMeans and GaussianMixture on the pixels and on PCA-``pca_dim``: accuracy and NMI."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    rows = {}
    pca = PCA(cfg.pca_dim, random_state=seed).fit_transform(x)
    for space, features in (("pixels", x), (f"PCA-{cfg.pca_dim}", pca)):
        models = {
            "KMeans": KMeans(k, n_init=cfg.num_init, random_state=seed),
            # full covariances with a ridge: several digit pixels are constant
            "GaussianMixture": GaussianMixture(
                k, covariance_type="full", reg_covar=1e-2, n_init=cfg.gmm_init, random_state=seed
            ),
        }
        for name, model in models.items():
            predicted = model.fit(features).predict(features)
            rows[f"{name} ({space})"] = {
                "accuracy": clustering_accuracy(predicted, y),
                "nmi": normalized_mutual_info(predicted, y),
            }
    return rows


def run(cfg: Config, ctx: RunContext) -> None:
    unknown = [p for p in cfg.parts if p not in PARTS]
    if unknown or not cfg.parts:
        raise ConfigError(f"'parts' must be a non-empty list of {', '.join(PARTS)}")
    if cfg.variant not in ("gan", "bgan"):
        raise ConfigError(f"'variant' must be gan or bgan, got {cfg.variant!r}")
    (x_all, y_all), (x_imb, y_imb, true_weights) = load_digits_subsets(cfg.data, cfg.seed)
    data = {"all": (x_all, y_all), "imbalanced": (x_imb, y_imb), "dp": (x_imb, y_imb)}
    tensors = {p: torch.as_tensor(x, device=ctx.device) for p, (x, _) in data.items()}
    num_classes = {"all": len(cfg.data.classes), "imbalanced": len(true_weights)}
    specs = [
        RunSpec(f"{cfg.variant}-{'dp' if part == 'dp' else 'gmm'}", r, 0, {"part": part})
        for part in cfg.parts
        for r in range(cfg.num_replicates)
    ]
    for spec in specs:
        spec.seed = derived_seed(cfg.seed, "clusters", spec.options["part"], spec.replicate)

    def build(spec: RunSpec):
        part = spec.options["part"]
        prior = PriorConfig(
            num_components=num_classes.get(part, 1),
            temperature=cfg.prior.temperature,
            dp_alpha=cfg.prior.dp_alpha,
            dp_truncation=cfg.prior.dp_truncation,
        )
        bayes = BayesConfig(**{**vars(cfg.bayes), "num_data": len(data[part][0])})
        return build_variant(
            spec.variant,
            x_all.shape[1],
            net=cfg.net,
            prior=prior,
            train=cfg.train,
            bayes=bayes,
            seed=spec.seed,
            device=ctx.device,
        )

    def next_batch(spec: RunSpec, g: torch.Generator) -> torch.Tensor:
        x = tensors[spec.options["part"]]
        index = torch.randint(len(x), (cfg.train.batch_size,), generator=g, device=ctx.device)
        return x[index]

    @torch.no_grad()
    def evaluate(spec: RunSpec, model):
        part = spec.options["part"]
        x, y = data[part]
        q = model.responsibilities(tensors[part]).cpu()
        predicted = q.argmax(-1).numpy()
        weights = model.prior.weights.detach().cpu().double()
        result = {
            "part": part,
            "accuracy": clustering_accuracy(predicted, y),
            "nmi": normalized_mutual_info(predicted, y),
            "prior_weights": weights.tolist(),
            "mean_responsibilities": q.double().mean(0).tolist(),
        }
        if part == "imbalanced":
            # align components with classes by the Hungarian matching of argmax q(k | x)
            mapping = match_clusters(predicted, y)
            aligned = np.zeros(len(true_weights))
            aligned_q = np.zeros(len(true_weights))
            for component, label in enumerate(mapping):
                if label >= 0:
                    aligned[label] = weights[component]
                    aligned_q[label] = q[:, component].double().mean()
            result["tv_prior_weights_sorted"] = total_variation(weights, true_weights, sort=True)
            result["tv_prior_weights_matched"] = 0.5 * float(
                np.abs(aligned - true_weights).sum() + (1 - aligned.sum())
            )
            result["tv_responsibilities_matched"] = 0.5 * float(
                np.abs(aligned_q - true_weights).sum() + (1 - aligned_q.sum())
            )
        if part == "dp":
            result["components_above"] = num_components_above(weights, cfg.weight_threshold)
            occupied = np.bincount(predicted, minlength=len(weights)) / len(predicted)
            result["occupied_above"] = num_components_above(occupied, cfg.weight_threshold)
            result["truncation_remainder"] = float(max(0.0, 1.0 - float(weights.sum())))
        keep = {}
        if spec.replicate == 0:
            keep[part] = _component_samples(model, ctx, spec)
        return result, keep

    results, keep = train_series(ctx, specs, build, next_batch, evaluate, cfg.train)
    summary = {"true_weights": true_weights.tolist(), "runs": results}
    lines = []
    if "all" in cfg.parts:
        base = baselines(x_all, y_all, len(cfg.data.classes), cfg.baselines, cfg.seed)
        summary["baselines"] = base
        gan = aggregate(
            [r for r in results if r["part"] == "all"], ["accuracy", "nmi"], [specs[0].variant]
        )
        summary["all"] = gan
        lines += [
            "(a) all 10 classes: clustering accuracy and NMI",
            "",
            "| method | accuracy | NMI |",
            "|---|---|---|",
        ]
        for variant, stats in gan.items():
            lines.append(
                f"| {variant} + q(k|x) (argmax), {stats['accuracy']['runs']} run(s) | "
                f"{stats['accuracy']['mean']:.3f} ± {stats['accuracy']['sd']:.3f} | "
                f"{stats['nmi']['mean']:.3f} ± {stats['nmi']['sd']:.3f} |"
            )
        for name, row in base.items():
            lines.append(f"| {name} | {row['accuracy']:.3f} | {row['nmi']:.3f} |")
        lines.append("")
    if "imbalanced" in cfg.parts:
        keys = [
            "accuracy",
            "nmi",
            "tv_prior_weights_sorted",
            "tv_prior_weights_matched",
            "tv_responsibilities_matched",
        ]
        imb = [r for r in results if r["part"] == "imbalanced"]
        summary["imbalanced"] = aggregate(imb, keys, [imb[0]["variant"]])
        lines += [
            "(b) imbalanced five classes, true weights "
            + ", ".join(f"{w:.3f}" for w in true_weights),
            "",
            markdown_table(summary["imbalanced"], [(k, k, ".3f") for k in keys]),
            "learned prior weights (run 0): "
            + ", ".join(f"{w:.3f}" for w in sorted(imb[0]["prior_weights"], reverse=True)),
            "",
        ]
    if "dp" in cfg.parts:
        dp = [r for r in results if r["part"] == "dp"]
        keys = ["components_above", "occupied_above", "accuracy", "nmi", "truncation_remainder"]
        summary["dp"] = aggregate(dp, keys, [dp[0]["variant"]])
        lines += [
            f"(c) DP prior (truncation {cfg.prior.dp_truncation}) on the imbalanced subset: "
            f"components above {100 * cfg.weight_threshold:g} % (truth {len(true_weights)})",
            "",
            markdown_table(summary["dp"], [(k, k, ".3g") for k in keys]),
            "prior weights (run 0): "
            + ", ".join(f"{w:.3f}" for w in sorted(dp[0]["prior_weights"], reverse=True)[:10]),
        ]
    text = "\n".join(lines)
    ctx.write_text("table", text)
    ctx.info("\n" + text)
    ctx.write_summary(summary)
    plot(keep, ctx)


@torch.no_grad()
def _component_samples(model, ctx: RunContext, spec: RunSpec, per_component: int = 8):
    """Generated images per component (by the prior's component means +- its scales) and an
    interpolation between the two heaviest components' means."""
    prior = model.prior
    g = torch.Generator(device=ctx.device).manual_seed(derived_seed(spec.seed, "plots"))
    order = prior.weights.detach().argsort(descending=True)
    eps = torch.randn(len(order), per_component, prior.dim, generator=g, device=ctx.device)
    z = prior.means[order, None, :] + prior.scales[order, None, :] * eps
    images = generate(model, z.reshape(-1, prior.dim)).reshape(len(order), per_component, -1)
    t = torch.linspace(0, 1, 10, device=ctx.device)[:, None]
    a, b = prior.means[order[0]], prior.means[order[1]]
    path = generate(model, (1 - t) * a + t * b)
    return {
        "per_component": images.cpu(),
        "weights": prior.weights.detach()[order].cpu(),
        "interpolation": path.cpu(),
    }


def plot(keep, ctx: RunContext) -> None:
    for part, item in keep.items():
        images, weights = item["per_component"], item["weights"]
        show = min(len(weights), 20)
        fig, ax = new_figure(figsize=(images.shape[1] * 0.6 + 1, show * 0.6 + 0.5))
        ax.imshow(
            image_grid(images[:show].reshape(-1, images.shape[-1]), (8, 8), images.shape[1]),
            cmap="gray_r",
        )
        ax.set_yticks([0.5 + 9 * i + 4 for i in range(show)])
        ax.set_yticklabels([f"{w:.2f}" for w in weights[:show].tolist()])
        ax.set_xticks([])
        ax.set_title(f"{part}: samples per component (row label: weight)")
        ctx.save_figure(fig, f"components_{part}")

        fig, ax = new_figure(figsize=(8, 1.2))
        ax.imshow(image_grid(item["interpolation"], (8, 8), 10), cmap="gray_r")
        ax.axis("off")
        ax.set_title(f"{part}: latent interpolation between the two heaviest components' means")
        ctx.save_figure(fig, f"interpolation_{part}")
