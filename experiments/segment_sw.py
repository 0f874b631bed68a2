"""Bayesian image segmentation with data-driven Swendsen–Wang (and heat-bath Gibbs).

A photo that ships with scikit-learn (``load_sample_image``), average-pooled down, is
segmented into ``num_labels`` regions under a Potts prior (coupling ``beta`` on the
4- or 8-neighbour lattice) and a Gaussian likelihood per label and colour channel with a
normal-inverse-gamma prior. ``SwendsenWangSegmentation`` alternates a data-driven
Swendsen–Wang sweep (each bond cluster relabelled from the likelihood of its pixels) with
conjugate draws of the label means and variances; the same model under single-site
heat-bath Gibbs is the baseline. Plots: the photo, one posterior draw from each sampler
(pixels coloured by their label's mean colour) and the energy ``-log p(z, theta | y)``
trace of every replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.mcmc.graph import lattice_colouring, lattice_edges
from bayestorch.segmentation.potts import SegmentationState, SwendsenWangSegmentation


@dataclass
class ImageConfig:
    name: str = "china.jpg"  # or flower.jpg
    downsample: int = 4  # average-pool factor


@dataclass
class Config(ExperimentConfig):
    experiment: str = "segment_sw"
    output_dir: str = "runs/segment_sw"
    image: ImageConfig = field(default_factory=ImageConfig)
    num_labels: int = 4
    beta: float = 1.0
    connectivity: int = 8
    replicas: int = 2
    sweeps: int = 200
    methods: list[str] = field(default_factory=lambda: ["sw", "gibbs", "hybrid"])
    checkpoint_every: int = 50


def load_image(cfg: ImageConfig) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    photo = load_sample_image(cfg.name).astype(np.float64) / 255.0
    f = cfg.downsample
    h, w = photo.shape[0] // f * f, photo.shape[1] // f * f
    return photo[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))


def run(cfg: Config, ctx: RunContext) -> None:
    image = load_image(cfg.image)
    height, width = image.shape[:2]
    data = torch.as_tensor(image.reshape(-1, 3), device=ctx.device)
    edges = lattice_edges(height, width, connectivity=cfg.connectivity, device=ctx.device)
    colours = lattice_colouring(height, width, connectivity=cfg.connectivity, device=ctx.device)
    ctx.info(f"image {cfg.image.name}: {height} x {width} pixels, {edges.shape[0]} edges")

    samplers = {
        method: SwendsenWangSegmentation(
            data, edges, cfg.beta, cfg.num_labels, method=method, colours=colours
        )
        for method in cfg.methods
    }
    generators = {method: ctx.make_generator(method) for method in cfg.methods}
    start, extra = ctx.restore({})
    states = {}
    for method, seg in samplers.items():
        if method in extra.get("states", {}):  # resume: the saved labels, means, variances
            saved = extra["states"][method]
            states[method] = SegmentationState(*(t.to(ctx.device) for t in saved))
        else:
            labels = torch.randint(
                cfg.num_labels, (cfg.replicas, data.shape[0]), generator=generators[method],
                device=ctx.device,
            )  # fmt: skip
            states[method] = seg.init(labels, generators[method])
    traces = extra.get("traces", {method: [] for method in cfg.methods})

    for sweep in ctx.progress(range(start, cfg.sweeps), desc="segment"):
        record = {}
        for method, seg in samplers.items():
            states[method], info = seg.step(states[method], generators[method])
            energy = info.energy.double().cpu().tolist()
            traces[method].append(energy)
            record[f"{method}_energy"] = energy
            record[f"{method}_clusters"] = info.num_clusters.cpu().tolist()
        ctx.log(sweep + 1, **record)
        if (sweep + 1) % cfg.checkpoint_every == 0 or sweep + 1 == cfg.sweeps:
            saved = {m: [t.cpu() for t in s] for m, s in states.items()}
            ctx.save_checkpoint(sweep + 1, {}, extra={"states": saved, "traces": traces})

    summary = {"height": height, "width": width, "num_labels": cfg.num_labels, "beta": cfg.beta}
    tail = max(1, cfg.sweeps // 4)
    for method in cfg.methods:
        trace = np.asarray(traces[method])  # (sweeps, replicas)
        state = states[method]
        sizes = torch.bincount(state.labels[0], minlength=cfg.num_labels).cpu().tolist()
        summary[method] = {
            "final_energy": trace[-1].tolist(),
            "mean_energy_last_quarter": float(trace[-tail:].mean()),
            "label_sizes_replica0": sizes,
            "label_means_replica0": state.means[0].cpu().tolist(),
        }
    ctx.write_summary(summary)
    plot(image, states, traces, cfg, ctx)


NAMES = {"sw": "Swendsen–Wang", "gibbs": "heat-bath Gibbs", "hybrid": "SW + Gibbs"}


def plot(image, states, traces, cfg: Config, ctx: RunContext) -> None:
    height, width = image.shape[:2]
    panels = 2 + len(states)
    fig, axes = new_figure(1, panels, figsize=(4.0 * panels, 3.4), layout="constrained")
    axes[0].imshow(image)
    axes[0].set_title(f"{cfg.image.name} ({height} x {width})", fontsize=10)
    for ax, (method, state) in zip(axes[1:], states.items(), strict=False):
        labels = state.labels[0].cpu()
        colours = state.means[0].clamp(0, 1).cpu().numpy()
        ax.imshow(colours[labels.numpy()].reshape(height, width, 3))
        ax.set_title(f"{NAMES[method]}, sweep {len(traces[method])}", fontsize=10)
    for ax in axes[: 1 + len(states)]:
        ax.axis("off")
    ax = axes[-1]
    for index, (method, trace) in enumerate(traces.items()):
        trace = np.asarray(trace)
        sweeps = np.arange(1, len(trace) + 1)
        for r in range(trace.shape[1]):
            ax.plot(
                sweeps,
                trace[:, r],
                color=f"C{index}",
                lw=1,
                label=NAMES[method] if r == 0 else None,
            )
    ax.set(xlabel="sweep", xscale="log", title="energy -log p(z, theta | y) + const")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "segment_sw")
