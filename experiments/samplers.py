"""Classic Monte Carlo samplers side by side on three small targets.

A bimodal 1-d mixture, a 2-d banana and a log-concave Gamma(3, 1) density, each sampled
by every method that applies: rejection, adaptive rejection (log-concave 1-d only),
importance sampling, random-walk and independence Metropolis–Hastings, slice sampling
(per coordinate, random directions) and Gibbs (data augmentation for the mixture,
exact x1 | x0 plus a slice update of x0 | x1 for the banana). One figure per target
(histograms against the true density) and a table of acceptance rate, ESS per second
and error of the mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.distributions import Exponential, Normal

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.mc import (
    AdaptiveRejectionSampler,
    NotLogConcaveError,
    importance_sample,
    rejection_sample,
)
from bayestorch.mcmc.diagnostics import effective_sample_size, mcse_mean
from bayestorch.mcmc.gaussian_mixture import BayesianGaussianMixture
from bayestorch.mcmc.gibbs import Gibbs
from bayestorch.mcmc.metropolis import IndependentMetropolis, RandomWalkMetropolis
from bayestorch.mcmc.sample import sample
from bayestorch.mcmc.slice import SliceSampler, SliceState, slice_update
from bayestorch.testing.targets import Banana, BimodalMixture
from bayestorch.utils.random import rand_open01


@dataclass
class Config(ExperimentConfig):
    experiment: str = "samplers"
    output_dir: str = "runs/samplers"
    targets: list[str] = field(default_factory=lambda: ["bimodal", "banana", "gamma"])
    num_samples: int = 20000  # draws of the i.i.d. methods (rejection, ARS, importance)
    chains: int = 32
    num_warmup: int = 500  # per chain, MCMC only
    num_draws: int = 2000  # per chain, MCMC only
    mixture_points: int = 300  # the Gibbs worked example: a 3-component mixture fit
    mixture_sweeps: int = 1000  # per chain, the first half discarded


# -- targets (bayestorch.testing.targets): log density (n, dim) -> (n,), proposal, envelope --
BIMODAL = BimodalMixture(loc=2.0, scale=1.0, weight=0.3)  # 0.3 N(-2, 1) + 0.7 N(2, 1)
BANANA = Banana(curvature=1.0)  # x0 ~ N(0, 1), x1 | x0 ~ N(x0^2 - 1, 1)


def gamma_log_prob(x):
    """Gamma(3, 1): x^2 e^-x on x > 0 (Z = 2)."""
    x = x[:, 0]
    return torch.where(x > 0, 2.0 * x.clamp(min=1e-300).log() - x, -math.inf)


def banana_proposal():
    """x0 ~ N(0, 1.5^2), x1 | x0 ~ N(c (x0^2 - 1), 1.5^2): p~ / q <= 2 pi 1.5^2 = 4.5 pi."""
    c = BANANA.curvature

    def sample_fn(n, generator):
        z = 1.5 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return torch.stack([z[:, 0], c * (z[:, 0] ** 2 - 1) + z[:, 1]], 1)

    def log_prob_fn(x):
        return (
            Normal(0.0, 1.5)
            .log_prob(torch.stack([x[:, 0], x[:, 1] - c * (x[:, 0] ** 2 - 1)], 1))
            .sum(1)
        )

    return sample_fn, log_prob_fn


def flat(log_prob):
    """The i.i.d. methods see (n,) draws in 1-d; the kernels see (chains, 1)."""
    return lambda x: log_prob(x[:, None] if x.dim() == 1 else x)


TARGETS = {
    "bimodal": dict(
        log_prob=BIMODAL.log_prob,
        dim=1,
        mean=BIMODAL.mean.tolist(),
        domain=(-math.inf, math.inf),
        proposal=Normal(
            torch.tensor(0.5, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
        ),
        scale=1.0,
    ),
    "banana": dict(
        log_prob=BANANA.log_prob,
        dim=2,
        mean=[0.0, 0.0],
        proposal=banana_proposal(),
        log_M=math.log(4.5 * math.pi),
        scale=1.0,
    ),
    "gamma": dict(
        log_prob=gamma_log_prob,
        dim=1,
        mean=[3.0],
        domain=(0.0, math.inf),
        proposal=Exponential(torch.tensor(1 / 3, dtype=torch.float64)),
        log_M=math.log(27.0) - 2.0,  # sup x^2 e^-x / (e^(-x/3) / 3), at x = 3
        scale=2.0,
    ),
}


def envelope(target) -> float:
    """log M: analytic where known, else the max of log p~ - log q on a fine grid (+0.01)."""
    if "log_M" in target:
        return target["log_M"]
    grid = torch.linspace(-20, 20, 200_001, dtype=torch.float64)
    return (
        float((target["log_prob"](grid[:, None]) - target["proposal"].log_prob(grid)).max()) + 0.01
    )


# -- Gibbs samplers for the targets where conditionals are available ---------------------
def bimodal_gibbs() -> Gibbs:
    """Data augmentation: position (x, z); z | x categorical, x | z normal."""
    loc = torch.tensor([-BIMODAL.loc, BIMODAL.loc], dtype=torch.float64)
    log_w = torch.tensor([BIMODAL.weight, 1 - BIMODAL.weight], dtype=torch.float64).log()

    def sample_z(pos, g):
        logits = log_w - 0.5 * ((pos[:, :1] - loc) / BIMODAL.scale) ** 2
        u = rand_open01(logits.shape, generator=g, dtype=pos.dtype)
        return (logits - (-u.log()).log()).argmax(-1, keepdim=True).to(pos.dtype)

    def sample_x(pos, g):
        noise = torch.randn(pos.shape[0], 1, generator=g, dtype=pos.dtype)
        return loc[pos[:, 1].long()][:, None] + BIMODAL.scale * noise

    return Gibbs([[1], [0]], [sample_z, sample_x])


def banana_gibbs() -> Gibbs:
    """x1 | x0 exactly; x0 | x1 by one slice update (any conditional-invariant update works)."""
    direction = torch.tensor([[1.5, 0.0]], dtype=torch.float64)

    def sample_x0(pos, g):
        state = SliceState(pos, BANANA.log_prob(pos))
        new, _, _ = slice_update(state, direction.expand_as(pos), BANANA.log_prob, generator=g)
        return new.position[:, :1]

    def sample_x1(pos, g):
        noise = torch.randn(pos.shape[0], 1, generator=g, dtype=pos.dtype)
        return BANANA.curvature * (pos[:, :1] ** 2 - 1) + noise

    return Gibbs([[0], [1]], [sample_x0, sample_x1], BANANA.log_prob)


# -- one method on one target --------------------------------------------------------------
def run_iid(name, target, method, cfg, g):
    log_p = flat(target["log_prob"])
    start = time.perf_counter()
    if method == "rejection":
        out = rejection_sample(log_p, target["proposal"], envelope(target), cfg.num_samples, g)
        samples, rate, weights = out.samples, float(out.acceptance_rate), None
        evals = out.num_proposals / cfg.num_samples
    elif method == "adaptive_rejection":
        ars = AdaptiveRejectionSampler(log_p, target["domain"], dtype=torch.float64)
        samples = ars.sample(cfg.num_samples, generator=g)
        rate = ars.acceptance_rates(())[0]
        evals, weights = ars.num_evaluations / cfg.num_samples, None
    else:  # importance
        out = importance_sample(log_p, target["proposal"], cfg.num_samples, g)
        samples, weights = out.samples, out.normalized_weights
        rate, evals = float(out.ess) / cfg.num_samples, 1.0
    seconds = time.perf_counter() - start
    x = samples.reshape(cfg.num_samples, -1)
    if weights is None:
        ess = effective_sample_size(x[None]).min()
        mean, se = x.mean(0), x.std(0) / math.sqrt(cfg.num_samples)
    else:
        ess = torch.as_tensor(rate * cfg.num_samples)
        mean = weights @ x
        se = ((weights[:, None] ** 2) * (x - mean) ** 2).sum(0).sqrt()  # delta method
    return (
        x,
        weights,
        dict(accept=rate, ess=float(ess), seconds=seconds, mean=mean, se=se, evals=evals),
    )


def run_mcmc(name, target, method, cfg, g):
    log_p, dim = target["log_prob"], target["dim"]
    if method == "random_walk":
        kernel = RandomWalkMetropolis(log_p, scale=target["scale"])
    elif method == "independence":
        kernel = IndependentMetropolis(log_p, target["proposal"])
    elif method.startswith("slice"):
        kind = "random_direction" if method == "slice_direction" else "coordinate"
        kernel = SliceSampler(log_p, width=2.0, method=kind)
    else:
        kernel = bimodal_gibbs() if name == "bimodal" else banana_gibbs()
    x0 = torch.full((cfg.chains, dim), target["mean"][0] + 0.5, dtype=torch.float64)
    if method == "gibbs" and name == "bimodal":
        x0 = torch.cat([x0, torch.ones(cfg.chains, 1, dtype=torch.float64)], 1)
    start = time.perf_counter()
    result = sample(
        None,
        x0,
        kernel,
        num_warmup=cfg.num_warmup,
        num_samples=cfg.num_draws,
        generator=g,
        progress=False,
    )
    seconds = time.perf_counter() - start
    x = result.samples[..., :dim]
    stats = result.stats
    rate = float(stats["accept_prob"].mean()) if "accept_prob" in stats else 1.0
    evals = float(stats["num_evaluations"].double().mean()) if "num_evaluations" in stats else 1.0
    return (
        x.reshape(-1, dim),
        None,
        dict(
            accept=rate,
            ess=float(effective_sample_size(x).min()),
            seconds=seconds,
            mean=x.mean((0, 1)),
            se=mcse_mean(x),
            evals=evals,
        ),
    )


METHODS = {
    "bimodal": [
        "rejection",
        "importance",
        "random_walk",
        "independence",
        "slice",
        "gibbs",
        "adaptive_rejection",
    ],
    "banana": [
        "rejection",
        "importance",
        "random_walk",
        "independence",
        "slice",
        "slice_direction",
        "gibbs",
    ],
    "gamma": [
        "rejection",
        "adaptive_rejection",
        "importance",
        "random_walk",
        "independence",
        "slice",
    ],
}
IID = {"rejection", "adaptive_rejection", "importance"}


def run(cfg: Config, ctx: RunContext) -> None:
    table: dict[str, dict[str, dict]] = {}
    step = 0
    for name in cfg.targets:
        target = TARGETS[name]
        draws = {}
        table[name] = {}
        for method in METHODS[name]:
            g = ctx.make_generator(f"{name}/{method}", device="cpu")
            try:
                runner = run_iid if method in IID else run_mcmc
                x, weights, row = runner(name, target, method, cfg, g)
            except NotLogConcaveError as error:  # ARS on the bimodal target: caught, as it must
                table[name][method] = {"note": "not log-concave (caught)"}
                ctx.info(f"{name:8s} {method:19s} refused: {str(error)[:70]}...")
                continue
            truth = torch.tensor(target["mean"])
            error = (row["mean"] - truth).abs()
            entry = {
                "acceptance": row["accept"],
                "ess": row["ess"],
                "seconds": row["seconds"],
                "ess_per_second": row["ess"] / row["seconds"],
                "abs_error_of_mean": float(error.max()),
                "z_error_of_mean": float((error / row["se"]).max()),
                "evaluations_per_draw": row["evals"],
            }
            table[name][method] = entry
            draws[method] = (x, weights)
            step += 1
            ctx.log(step, target=name, method=method, **entry)
            ctx.info(
                f"{name:8s} {method:19s} accept {entry['acceptance']:.3f}  ESS/s "
                f"{entry['ess_per_second']:9.1f}  |err| {entry['abs_error_of_mean']:.4f} "
                f"(z {entry['z_error_of_mean']:.2f})"
            )
        plot_target(name, target, draws, ctx)
    mixture = mixture_example(cfg, ctx) if cfg.mixture_points > 0 else {}
    ctx.write_summary({"table": table, "markdown": markdown_table(table), "mixture": mixture})
    ctx.info("\n" + markdown_table(table))


def markdown_table(table) -> str:
    lines = [
        "| target | method | acceptance | ESS/s | abs. error of mean | z (error / MCSE) "
        "| evals/draw |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in table.items():
        for method, r in rows.items():
            if "note" in r:
                lines.append(f"| {name} | {method} | {r['note']} | | | | |")
                continue
            lines.append(
                f"| {name} | {method} | {r['acceptance']:.3f} | {r['ess_per_second']:.0f} | "
                f"{r['abs_error_of_mean']:.4f} | {r['z_error_of_mean']:.2f} | "
                f"{r['evaluations_per_draw']:.3g} |"
            )
    return "\n".join(lines)


def true_marginal(name, grid, coordinate):
    """Normalised true density of one coordinate on a grid (quadrature for the banana's x1)."""
    if name == "banana":
        x0 = torch.linspace(-8, 8, 4001)
        points = torch.stack(torch.broadcast_tensors(x0[None], grid[:, None]), -1)
        dens = BANANA.log_prob(points.reshape(-1, 2)).exp().reshape(len(grid), -1)
        return dens.sum(1) * (x0[1] - x0[0]) / (2 * math.pi)
    if name == "gamma":
        return (gamma_log_prob(grid[:, None]) - math.log(2.0)).exp()
    return (BIMODAL.log_prob(grid[:, None]) - 0.5 * math.log(2 * math.pi)).exp() / BIMODAL.scale


def plot_target(name, target, draws, ctx) -> None:
    coordinate = 1 if name == "banana" else 0  # the banana's skewed x1 marginal
    lo, hi = {"bimodal": (-6, 6), "banana": (-4, 10), "gamma": (0, 14)}[name]
    grid = torch.linspace(lo, hi, 400)
    density = true_marginal(name, grid, coordinate).numpy()
    cols = 4
    rows = math.ceil(len(draws) / cols)
    fig, axes = new_figure(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(draws) :]:
        ax.axis("off")
    for ax, (method, (x, weights)) in zip(axes.flat, draws.items()):
        values = x[:, coordinate].numpy()
        w = None if weights is None else weights.numpy()
        ax.hist(values, bins=np.linspace(lo, hi, 60), density=True, weights=w, alpha=0.5)
        ax.plot(grid.numpy(), density, "k-", lw=1)
        ax.set_title(method, fontsize=9)
    label = "x1 marginal" if name == "banana" else "x"
    fig.suptitle(f"{name}: histograms ({label}) vs the true density")
    fig.tight_layout()
    ctx.save_figure(fig, f"{name}_histograms")
    if name == "banana":
        fig, ax = new_figure(figsize=(5, 4))
        x0, x1 = torch.meshgrid(
            torch.linspace(-4, 4, 200), torch.linspace(-4, 12, 200), indexing="ij"
        )
        z = BANANA.log_prob(torch.stack([x0, x1], -1).reshape(-1, 2)).exp().reshape(200, 200)
        ax.contour(x0.numpy(), x1.numpy(), z.numpy(), levels=6, colors="k", linewidths=0.7)
        pts = draws.get("slice_direction", next(iter(draws.values())))[0][:2000].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
        ax.set_title("banana: slice (random direction) draws")
        ctx.save_figure(fig, "banana_scatter")


def mixture_example(cfg: Config, ctx: RunContext) -> dict:
    """The library's Gibbs worked example: a Bayesian Gaussian mixture on synthetic data."""
    g = ctx.make_generator("mixture", device="cpu")
    true_w, true_loc, true_sd = [0.5, 0.3, 0.2], [-3.0, 0.0, 4.0], [1.0, 0.5, 1.5]
    z = torch.multinomial(torch.tensor(true_w), cfg.mixture_points, True, generator=g)
    noise = torch.randn(cfg.mixture_points, generator=g, dtype=torch.float64)
    data = torch.tensor(true_loc, dtype=torch.float64)[z] + torch.tensor(true_sd)[z] * noise
    # Prior means spread over the data, and all chains started at them, fix one labelling.
    model = BayesianGaussianMixture(
        data, 3, prior_mean=torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64), prior_kappa=0.1
    )
    kernel = model.gibbs_kernel()
    start = time.perf_counter()
    result = sample(
        None,
        model.initial_position(cfg.chains, g, from_prior=False),
        kernel,
        num_warmup=cfg.mixture_sweeps // 2,
        num_samples=cfg.mixture_sweeps - cfg.mixture_sweeps // 2,
        generator=g,
        progress=False,
    )
    seconds = time.perf_counter() - start
    params = model.unpack(result.samples)
    sd = params.precisions.rsqrt()
    summary = {
        "weights": params.weights.mean((0, 1)).tolist(),
        "means": params.means.mean((0, 1)).tolist(),
        "sds": sd.mean((0, 1)).tolist(),
        "true_weights": true_w,
        "true_means": true_loc,
        "true_sds": true_sd,
        "min_ess_means": float(effective_sample_size(params.means).min()),
        "seconds": seconds,
    }
    ctx.info(
        "mixture Gibbs: weights "
        + ", ".join(f"{w:.2f}" for w in summary["weights"])
        + "; means "
        + ", ".join(f"{m:.2f}" for m in summary["means"])
        + "; sds "
        + ", ".join(f"{s:.2f}" for s in summary["sds"])
        + f" (truth {true_w}, {true_loc}, {true_sd}); {seconds:.1f} s"
    )
    fig, ax = new_figure(figsize=(6, 4))
    grid = torch.linspace(float(data.min()) - 2, float(data.max()) + 2, 400, dtype=torch.float64)
    ax.hist(data.numpy(), bins=40, density=True, alpha=0.4, label="data")
    flat_w, flat_m, flat_s = (t.reshape(-1, 3) for t in (params.weights, params.means, sd))
    pick = torch.linspace(0, flat_w.shape[0] - 1, 40).long()
    for i in pick.tolist():  # posterior draws of the density
        dens = (flat_w[i] * Normal(flat_m[i], flat_s[i]).log_prob(grid[:, None]).exp()).sum(1)
        ax.plot(grid.numpy(), dens.numpy(), color="C1", alpha=0.15, lw=1)
    truth = (
        torch.tensor(true_w)
        * Normal(torch.tensor(true_loc), torch.tensor(true_sd))
        .log_prob(grid[:, None].float())
        .exp()
    )
    ax.plot(grid.numpy(), truth.sum(1).numpy(), "k--", lw=1, label="true density")
    ax.set_title("Gibbs on a Bayesian Gaussian mixture: posterior density draws")
    ax.legend()
    ctx.save_figure(fig, "mixture_gibbs")
    return summary
