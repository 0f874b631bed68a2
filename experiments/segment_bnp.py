"""Bayesian nonparametric image segmentation with the generalised Swendsen–Wang sampler.

``data: synthetic`` — piecewise-constant grey images with a known segmentation (random
Voronoi regions, ``min_segments``..``max_segments`` of them, levels uniform in [0, 1],
Gaussian noise of each ``noise_sd``) are segmented by

* ``dp``, ``pitman_yor``: :class:`~bayestorch.segmentation.GeneralisedSwendsenWang`
  under a Dirichlet-process / Pitman–Yor EPPF and a Potts coupling ``beta``; the
  partition reported is the draw minimising the posterior expected variation of
  information (VI) over the kept draws;
* ``dp_cuts``: the DP model with data-driven bonds ``q_ij = (1 - e^-beta)
  exp(-|y_i - y_j|^2 / (2 cut_scale^2))`` (SW-cuts; same posterior, other mixing);
* ``potts``: the same sampler with the finite Dirichlet–multinomial EPPF in its Potts limit
  (``K`` = the true number of segments), i.e. the ordinary ``K``-label Potts model;
* ``potts_sw5`` (if present): issue 5's ``SwendsenWangSegmentation`` (``K`` labels with
  explicit means and variances), its last draw;
* ``meanshift``, ``kmeans`` (``K`` given): scikit-learn on (intensity, position) features.

Each is scored against the truth by the adjusted Rand index (ARI), VI (nats) and the
number of segments; mean ± sd over the images of each (size, noise) setting.

``data: photo`` — a downsampled ``load_sample_image`` photograph (RGB, Normal–Inverse-Wishart
segments) under the DP prior: the point estimate, the traces of the number of segments and
of the log joint, and a co-clustering uncertainty map (``min(P, 1 - P)`` of each pixel's
neighbour pairs, ``P`` the posterior probability they share a segment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.mcmc.graph import lattice_edges
from bayestorch.segmentation.generalised_sw import GeneralisedSwendsenWang
from bayestorch.segmentation.partition_estimates import (
    adjusted_rand_index,
    partition_point_estimate,
    variation_of_information,
)

BNP = ("dp", "dp_cuts", "pitman_yor", "potts")


@dataclass
class SamplerConfig:
    beta: float = 1.5  # Potts coupling on the 4-neighbour lattice
    alpha: float = 1.0  # DP / Pitman–Yor concentration (initial value when sampled)
    discount: float = 0.2  # Pitman–Yor d
    sample_alpha: bool = False
    cut_scale: float = 0.1  # dp_cuts: bonds (1 - e^-beta) exp(-|y_i - y_j|^2 / (2 cut_scale^2))
    sweeps: int = 40
    burn_in: int = 20
    thin: int = 2


@dataclass
class Config(ExperimentConfig):
    experiment: str = "segment_bnp"
    output_dir: str = "runs/segment_bnp"
    data: str = "synthetic"  # synthetic | photo
    sizes: list[int] = field(default_factory=lambda: [64])
    noise_sd: list[float] = field(default_factory=lambda: [0.05, 0.15])
    num_images: int = 2  # per (size, noise) setting
    min_segments: int = 3
    max_segments: int = 12
    methods: list[str] = field(
        default_factory=lambda: ["dp", "dp_cuts", "pitman_yor", "potts", "meanshift", "kmeans"]
    )
    position_weight: float = 1.0  # scale of (row, col) / size in the sklearn features
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    photo: str = "china.jpg"
    downsample: int = 8
    coclustering_pixels: int = 400


def voronoi_image(size: int, cfg: Config, rng: np.random.Generator):
    """``(truth (size, size) int, clean, noisy_per_sd dict)`` of a random Voronoi image."""
    k = int(rng.integers(cfg.min_segments, cfg.max_segments + 1))
    centres = rng.uniform(0, size, (k, 2))
    rows, cols = np.mgrid[0:size, 0:size]
    d2 = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    truth = d2.argmin(-1)
    levels = rng.uniform(0, 1, k)
    clean = levels[truth]
    noise = rng.standard_normal(clean.shape)
    return truth, clean, {sd: clean + sd * noise for sd in cfg.noise_sd}


def sklearn_features(image: np.ndarray, weight: float) -> np.ndarray:
    """(standardised intensity channels, weight * row / H, weight * col / W) per pixel."""
    h, w = image.shape[:2]
    y = image.reshape(h * w, -1)
    y = (y - y.mean(0)) / (y.std(0) + 1e-12)
    rows, cols = np.mgrid[0:h, 0:w]
    pos = np.stack([rows.ravel() / h, cols.ravel() / w], 1) * weight / 0.2887  # unit sd
    return np.concatenate([y, pos], 1)


def run_sklearn(method: str, image: np.ndarray, k: int, cfg: Config, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MeanShift, estimate_bandwidth

    x = sklearn_features(image, cfg.position_weight)
    if method == "kmeans":
        return KMeans(k, n_init=4, random_state=seed).fit_predict(x)
    bandwidth = estimate_bandwidth(x, quantile=0.1, n_samples=500, random_state=seed)
    return MeanShift(bandwidth=bandwidth, bin_seeding=True).fit_predict(x)


def make_sampler(method: str, image: torch.Tensor, k: int, cfg: SamplerConfig):
    if method == "potts":
        return GeneralisedSwendsenWang(image, "finite", beta=cfg.beta, num_labels=k)
    extra = {"discount": cfg.discount} if method == "pitman_yor" else {}
    if method == "dp_cuts":  # data-driven bonds (SW-cuts); the posterior is the same as dp's
        extra["bond_contrast"] = cfg.cut_scale
        method = "dp"
    return GeneralisedSwendsenWang(
        image, method, beta=cfg.beta, alpha=cfg.alpha, sample_alpha=cfg.sample_alpha, **extra
    )


def run_gsw(method, image, k, cfg: SamplerConfig, generator, ctx=None, tag=""):
    """Run one chain; return (point estimate labels, kept draws, traces)."""
    kernel = make_sampler(method, image, k, cfg)
    state = kernel.init(smooth_init(image, min(8, k) if method == "potts" else 8))
    draws, traces = [], {"num_segments": [], "log_joint": [], "alpha": []}
    for sweep in range(cfg.sweeps):
        state, info = kernel.step(state, generator)
        traces["num_segments"].append(int(state.num_segments[0]))
        traces["log_joint"].append(float(state.log_joint[0]))
        traces["alpha"].append(float(state.alpha[0]))
        if sweep >= cfg.burn_in and (sweep - cfg.burn_in) % cfg.thin == 0:
            draws.append(state.labels[0])
        if ctx is not None:
            ctx.log(sweep + 1, **{f"{tag}num_segments": traces["num_segments"][-1]})
    draws = torch.stack(draws) if draws else state.labels
    estimate, _ = partition_point_estimate(draws, loss="vi")
    return estimate, draws, traces


def smooth_init(image: torch.Tensor, levels: int, radius: int = 2) -> torch.Tensor:
    """Start labels: quantiles of the box-blurred mean intensity (spatially coherent, so
    the first sweeps have few bond components; any start is valid)."""
    grey = image.double().reshape(image.shape[0], image.shape[1], -1).mean(-1)[None, None]
    blur = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(grey, (radius,) * 4, mode="replicate"), 2 * radius + 1, 1
    ).flatten()
    cuts = torch.quantile(blur, torch.linspace(0, 1, levels + 1, dtype=blur.dtype)[1:-1])
    return torch.bucketize(blur, cuts)


def run_sw5(image: torch.Tensor, k: int, cfg: SamplerConfig, generator) -> torch.Tensor | None:
    """Issue 5's finite-K Potts Swendsen–Wang segmentation (None when not available)."""
    try:
        from bayestorch.segmentation.potts import SwendsenWangSegmentation
    except ImportError:
        return None
    h, w = image.shape[:2]
    edges = lattice_edges(h, w, device=image.device)
    seg = SwendsenWangSegmentation(image.reshape(h * w, -1), edges, cfg.beta, k, method="sw")
    labels = torch.randint(k, (1, h * w), generator=generator, device=image.device)
    state = seg.init(labels, generator)
    for _ in range(cfg.sweeps):
        state, _ = seg.step(state, generator)
    return state.labels[0]


def score(labels, truth: torch.Tensor) -> dict[str, float]:
    labels = torch.as_tensor(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels))
    truth = truth.cpu()
    return {
        "ari": float(adjusted_rand_index(labels.long(), truth)),
        "vi": float(variation_of_information(labels.long(), truth)),
        "segments": int(torch.unique(labels).numel()),
    }


def run_synthetic(cfg: Config, ctx: RunContext) -> None:
    methods = list(cfg.methods)
    settings = [(s, sd, i) for s in cfg.sizes for i in range(cfg.num_images) for sd in cfg.noise_sd]
    # one generator per image, created before restore so a resumed run gets their states back
    generators = [ctx.make_generator(f"image{index}") for index in range(len(settings))]
    start, extra = ctx.restore({})
    results = extra.get("results", [])
    images = {}
    for size in cfg.sizes:
        rng = np.random.default_rng([cfg.seed, size])
        images[size] = [voronoi_image(size, cfg, rng) for _ in range(cfg.num_images)]
    for index in ctx.progress(range(start, len(settings)), desc="images"):
        size, sd, i = settings[index]
        truth_np, _, noisy = images[size][i]
        k = int(truth_np.max()) + 1
        truth = torch.as_tensor(truth_np.ravel())
        image = torch.as_tensor(noisy[sd], device=ctx.device)
        row = {"size": size, "noise_sd": sd, "image": i, "true_segments": k}
        gen = generators[index]
        for method in methods:
            t0 = time.perf_counter()
            if method in BNP:
                labels, _, traces = run_gsw(method, image, k, cfg.sampler, gen)
                extra_metrics = {
                    "final_log_joint": traces["log_joint"][-1],
                    "posterior_mean_segments": float(
                        np.mean(traces["num_segments"][cfg.sampler.burn_in :])
                    ),
                }
            elif method == "potts_sw5":
                labels, extra_metrics = run_sw5(image, k, cfg.sampler, gen), {}
                if labels is None:
                    continue
            else:
                labels, extra_metrics = run_sklearn(method, noisy[sd], k, cfg, cfg.seed + index), {}
            row[method] = (
                score(labels, truth) | extra_metrics | {"seconds": time.perf_counter() - t0}
            )
        results.append(row)
        ctx.log(index + 1, **{f"{m}_ari": row[m]["ari"] for m in methods if m in row})
        ctx.save_checkpoint(index + 1, {}, extra={"results": results})
    summary = {"settings": summarise(results, methods), "images": results}
    ctx.write_summary(summary)
    ctx.write_text("table", table(summary["settings"], methods))
    plot_example(images, cfg, ctx)


def summarise(results, methods):
    out = {}
    for row in results:
        key = f"size{row['size']}_noise{row['noise_sd']}"
        out.setdefault(key, {"rows": []})["rows"].append(row)
    for group in out.values():
        rows = group.pop("rows")
        group["num_images"] = len(rows)
        group["true_segments"] = mean_sd([r["true_segments"] for r in rows])
        for m in methods:
            vals = [r[m] for r in rows if m in r]
            if vals:
                fields = [
                    f
                    for f in ("ari", "vi", "segments", "seconds", "final_log_joint")
                    if f in vals[0]
                ]
                group[m] = {f: mean_sd([v[f] for v in vals]) for f in fields}
    return out


def mean_sd(values) -> list[float]:
    a = np.asarray(values, dtype=float)
    return [float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0]


def table(settings, methods) -> str:
    lines = [
        "| setting | true k | method | ARI | VI (nats) | segments | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, group in settings.items():
        tk = group["true_segments"]
        for m in methods:
            if m not in group:
                continue
            g = group[m]
            lines.append(
                f"| {key} (n={group['num_images']}) | {tk[0]:.1f} | {m} | "
                f"{g['ari'][0]:.3f} ± {g['ari'][1]:.3f} | {g['vi'][0]:.3f} ± {g['vi'][1]:.3f} | "
                f"{g['segments'][0]:.1f} ± {g['segments'][1]:.1f} | {g['seconds'][0]:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plot_example(images, cfg: Config, ctx: RunContext) -> None:
    size = cfg.sizes[0]
    truth, clean, noisy = images[size][0]
    fig, axes = new_figure(1, 1 + len(noisy), figsize=(3.2 * (1 + len(noisy)), 3.2))
    axes[0].imshow(truth, cmap="tab20")
    axes[0].set_title(f"truth ({truth.max() + 1} segments)")
    for ax, (sd, img) in zip(axes[1:], noisy.items(), strict=True):
        ax.imshow(img, cmap="gray")
        ax.set_title(f"noise sd {sd}")
    for ax in axes:
        ax.axis("off")
    ctx.save_figure(fig, "synthetic_example")


def load_photo(name: str, factor: int) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    photo = load_sample_image(name).astype(np.float64) / 255.0
    h, w = photo.shape[0] // factor * factor, photo.shape[1] // factor * factor
    return photo[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean(axis=(1, 3))


def run_photo(cfg: Config, ctx: RunContext) -> None:
    photo = load_photo(cfg.photo, cfg.downsample)
    h, w = photo.shape[:2]
    image = torch.as_tensor(photo, device=ctx.device)
    gen = ctx.make_generator("photo")
    t0 = time.perf_counter()
    estimate, draws, traces = run_gsw("dp", image, 0, cfg.sampler, gen, ctx, tag="dp_")
    seconds = time.perf_counter() - t0
    edges = lattice_edges(h, w)
    same = (draws[:, edges[:, 0]] == draws[:, edges[:, 1]]).double().mean(0).cpu()
    uncertain = torch.minimum(same, 1 - same)
    umap = torch.zeros(h * w, dtype=torch.float64).index_add_(0, edges[:, 0], uncertain)
    umap = umap.index_add_(0, edges[:, 1], uncertain)
    degree = torch.bincount(edges.flatten(), minlength=h * w).double()
    umap = (umap / degree).view(h, w).numpy()
    from sklearn.cluster import MeanShift, estimate_bandwidth

    t1 = time.perf_counter()
    x = sklearn_features(photo, cfg.position_weight)
    ms = MeanShift(
        bandwidth=estimate_bandwidth(x, quantile=0.1, n_samples=500, random_state=cfg.seed),
        bin_seeding=True,
    ).fit_predict(x)
    ms_seconds = time.perf_counter() - t1
    ctx.write_summary(
        {
            "height": h,
            "width": w,
            "sweeps": cfg.sampler.sweeps,
            "seconds": seconds,
            "sweeps_per_second": cfg.sampler.sweeps / seconds,
            "point_estimate_segments": int(torch.unique(estimate).numel()),
            "posterior_mean_segments": float(
                np.mean(traces["num_segments"][cfg.sampler.burn_in :])
            ),
            "meanshift_segments": int(np.unique(ms).size),
            "meanshift_seconds": ms_seconds,
            "ari_bnp_vs_meanshift": float(adjusted_rand_index(estimate.cpu(), torch.as_tensor(ms))),
            "traces": traces,
        }
    )
    est = estimate.cpu().numpy()
    means = np.stack([photo.reshape(-1, 3)[est == s].mean(0) for s in np.unique(est)])
    colour = means[np.searchsorted(np.unique(est), est)].reshape(h, w, 3)
    fig, axes = new_figure(1, 5, figsize=(20, 3.6))
    axes[0].imshow(photo)
    axes[0].set_title(f"{cfg.photo} ({h} x {w})")
    axes[1].imshow(colour)
    axes[1].set_title(f"DP-Potts VI estimate: {means.shape[0]} segments")
    im = axes[2].imshow(umap, cmap="magma")
    axes[2].set_title("co-clustering uncertainty min(P, 1-P)")
    fig.colorbar(im, ax=axes[2])
    axes[3].plot(traces["num_segments"])
    axes[3].set_title("number of segments")
    axes[3].set_xlabel("sweep")
    axes[4].plot(traces["log_joint"])
    axes[4].set_title("log joint")
    axes[4].set_xlabel("sweep")
    for ax in axes[:3]:
        ax.axis("off")
    ctx.save_figure(fig, "photo")


def run(cfg: Config, ctx: RunContext) -> None:
    if cfg.data not in ("synthetic", "photo"):
        raise ValueError(f"data must be 'synthetic' or 'photo', got {cfg.data!r}")
    if cfg.sampler.burn_in >= cfg.sampler.sweeps:
        raise ValueError("sampler.burn_in must be smaller than sampler.sweeps")
    (run_synthetic if cfg.data == "synthetic" else run_photo)(cfg, ctx)
