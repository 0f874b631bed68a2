"""Posterior sampling with HMC / NUTS / ChEES-HMC on three standard models, diagnosed.

The models are written in bayestorch's model language (``experiments/model_zoo.py``) and
sampled through ``bt.infer.mcmc``, which maps them to an unconstrained space. Models:
(a) Bayesian logistic regression on scikit-learn's breast-cancer data (569 tumours, 30
standardised features plus an intercept, ``N(0, prior_scale²)`` prior); (b) Rubin's
eight schools, non-centred (``mu``, ``tau``, ``eta``, with ``theta_j = mu + tau eta_j`` a
deterministic site); (c) a 100-d Gaussian with variances log-spaced over a condition
number of 1e4, whose mean and standard deviations are known, so every
coordinate's error is reported in units of its Monte Carlo standard error.

Writes ``summary.json`` (per-parameter mean, sd, HDI, MCSE, bulk and tail ESS,
rank-normalised split R-hat; divergences; wall time; ESS per second and per 1000
gradient evaluations; E-BFMI), ``summary.txt`` (the same table as text) and plots: traces,
rank histograms per chain (Vehtari et al. 2021), the energy distributions (Betancourt
2016) and a pair plot with the divergent draws marked (on eight schools: ``log tau``
against ``theta[0]``, where the funnel is). A run killed mid-way resumes from the
sampler's snapshot (``resume=true``), drawing exactly what an uninterrupted run draws.

References:
    Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding,
    and localization: an improved R-hat", Bayesian Analysis 16(2).
    Betancourt (2016), "Diagnosing suboptimal cotangent disintegrations in Hamiltonian
    Monte Carlo", arXiv:1604.00695 (E-BFMI).
    Rubin (1981), "Estimation in parallel randomized experiments" (eight schools).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import chi2
from torch import Tensor

import bayestorch as bt
from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.infer.posterior import scalar_names
from bayestorch.mcmc.diagnostics import format_summary, summary
from bayestorch.testing.targets import ill_conditioned_gaussian
from experiments import model_zoo


@dataclass
class ModelConfig:
    name: Literal["logistic", "eight_schools", "gaussian"] = "logistic"
    prior_scale: float = 1.0  # logistic: N(0, s²) prior on weights and intercept
    dim: int = 100  # gaussian
    condition_number: float = 1.0e4  # gaussian: largest / smallest variance


@dataclass
class SamplerConfig:
    kernel: Literal["nuts", "hmc", "chees"] = "nuts"
    chains: int = 4
    num_warmup: int = 500
    num_samples: int = 500
    mass_matrix: Literal["diag", "dense", "identity"] = "diag"
    target_accept: float | None = None  # None: the kernel's default (0.8; ChEES 0.651)
    max_tree_depth: int = 10  # nuts
    num_steps: int = 10  # hmc: leapfrog steps per transition
    step_size_jitter: float = 0.0  # hmc
    max_num_steps: int = 1000  # chees: cap on leapfrog steps per transition
    init_radius: float = 2.0  # initial positions ~ Uniform(-r, r) per coordinate (as Stan)
    checkpoint_every: int = 100  # iterations between resumable snapshots


@dataclass
class Config(ExperimentConfig):
    experiment: str = "posterior"
    output_dir: str = "runs/posterior"
    dtype: Literal["float64", "float32"] = "float64"
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    num_plot_params: int = 4  # traces / rank plots for the parameters of lowest bulk ESS
    table_rows: int | None = 40  # summary.txt rows (None: every parameter)


@dataclass
class Model:
    """A model in the model language with its arguments, and how to report it."""

    fn: Any
    args: tuple
    kwargs: dict[str, Any]
    pair: tuple[str, str]  # the divergence plot's (x, y) scalars
    log_y: bool = False
    true_mean: Tensor | None = None
    true_sd: Tensor | None = None


def build_model(cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> Model:
    """The model of ``cfg.name`` with its data on ``device`` in ``dtype``."""
    if cfg.name == "logistic":
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=dtype)
        x = (x - x.mean(0)) / x.std(0)
        y = torch.as_tensor(data.target, dtype=dtype)
        return Model(
            model_zoo.logistic_regression,
            (x.to(device), cfg.prior_scale),
            {"y": y.to(device)},
            ("intercept", "w[0]"),
        )
    if cfg.name == "eight_schools":
        (variant, _) = model_zoo.eight_schools(dtype, device)
        return Model(variant.model, variant.args, {"y": variant.y}, variant.pair, log_y=True)
    target = ill_conditioned_gaussian(cfg.dim, cfg.condition_number, dtype=dtype).to(device)
    sd = target.variance.sqrt()
    return Model(
        model_zoo.gaussian,
        (target.mean, sd),
        {},
        ("x[0]", f"x[{cfg.dim - 1}]"),  # smallest and largest variance
        true_mean=target.mean,
        true_sd=sd,
    )


def scalar_columns(draws: dict[str, Tensor]) -> tuple[Tensor, list[str]]:
    """Every site's draws flattened to scalars, with their names (``theta[3]``).

    Shape: ``{name: (chains, draws, *shape)} -> (chains, draws, scalars)``.
    """
    columns, names = [], []
    for name, value in draws.items():
        columns.append(value.reshape(*value.shape[:2], -1).double())
        names.extend(scalar_names(name, value.shape[2:]))
    return torch.cat(columns, dim=-1), names


def _kernel_kwargs(cfg: SamplerConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mass_matrix": cfg.mass_matrix}
    if cfg.target_accept is not None:
        kwargs["target_accept"] = cfg.target_accept
    if cfg.kernel == "nuts":
        kwargs["max_tree_depth"] = cfg.max_tree_depth
    elif cfg.kernel == "hmc":
        kwargs.update(num_steps=cfg.num_steps, step_size_jitter=cfg.step_size_jitter)
    else:
        kwargs["max_num_steps"] = cfg.max_num_steps
    return kwargs


def e_bfmi(energy: Tensor) -> Tensor:
    """Estimated Bayesian fraction of missing information per chain (Betancourt 2016).

    Shape: ``energy (chains, draws) -> (chains,)``.
    """
    energy = energy.double()
    num = energy.diff(dim=1).pow(2).sum(1)
    return num / (energy - energy.mean(1, keepdim=True)).pow(2).sum(1)


def run(cfg: Config, ctx: RunContext) -> None:
    dtype = getattr(torch, cfg.dtype)
    s = cfg.sampler
    if s.chains < 1 or s.num_samples < 4:
        raise ValueError(
            f"need sampler.chains >= 1 and sampler.num_samples >= 4, got {s.chains}, "
            f"{s.num_samples}"
        )
    model = build_model(cfg.model, dtype, ctx.device)
    generator = ctx.make_generator("mcmc")
    density = bt.infer.ModelDensity(model.fn, *model.args, **model.kwargs)
    init = density.init(s.chains, generator, strategy="uniform", radius=s.init_radius)

    step, extra = ctx.restore({})
    resume = extra.get("snapshot")  # sample() moves it to the chains' device
    elapsed_before = float(extra.get("elapsed", 0.0))
    cpu_before = float(extra.get("cpu_time", 0.0))
    start, cpu_start = time.perf_counter(), time.process_time()

    def checkpoint(snapshot: dict[str, Any]) -> None:
        iteration = snapshot["iteration"]
        elapsed = elapsed_before + time.perf_counter() - start
        cpu = cpu_before + time.process_time() - cpu_start
        divergent = snapshot["draws"].get("is_divergent")
        ctx.log(
            iteration,
            elapsed=elapsed,
            cpu_time=cpu,
            divergent=int(divergent.sum()) if divergent is not None else 0,
            **{k: float(v.mean()) for k, v in _snapshot_tuning(snapshot).items()},
        )
        ctx.save_checkpoint(
            iteration, {}, extra={"snapshot": snapshot, "elapsed": elapsed, "cpu_time": cpu}
        )

    posterior = bt.infer.mcmc(
        model.fn,
        *model.args,
        model_kwargs=model.kwargs,
        kernel=s.kernel,
        chains=s.chains,
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        init=init,
        generator=generator,
        progress=cfg.progress,
        checkpoint_fn=checkpoint,
        checkpoint_every=s.checkpoint_every,
        resume=resume,
        kernel_kwargs=_kernel_kwargs(s),
    )
    result = posterior.result
    wall = elapsed_before + time.perf_counter() - start
    cpu = cpu_before + time.process_time() - cpu_start
    if step:
        ctx.info(f"resumed at iteration {step}; total wall time {wall:.1f} s")

    reported, names = scalar_columns(posterior.draws)
    stats = summary(reported)
    table = format_summary(stats, names=names, max_rows=cfg.table_rows)
    divergent = result.stats.get("is_divergent", torch.zeros(result.samples.shape[:2]))
    num_divergent = int(divergent.sum())
    gradients = sum(
        float(r["num_steps"].double().sum())
        for r in (result.stats, result.warmup_stats)
        if "num_steps" in r
    )
    min_bulk = float(stats["ess_bulk"].min())
    bfmi = e_bfmi(result.stats["energy"]) if "energy" in result.stats else None
    out: dict[str, Any] = {
        "model": cfg.model.name,
        "kernel": s.kernel,
        "chains": s.chains,
        "num_warmup": s.num_warmup,
        "num_samples": s.num_samples,
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "divergences": num_divergent,
        "divergences_per_chain": divergent.sum(1).tolist(),
        "mean_accept_prob": float(result.stats["accept_prob"].double().mean()),
        "min_ess_bulk": min_bulk,
        "min_ess_tail": float(stats["ess_tail"].min()),
        "max_r_hat": float(stats["r_hat"].max()),
        "ess_bulk_per_s": min_bulk / wall,
        "ess_bulk_per_cpu_s": min_bulk / cpu,
        "gradient_evaluations": gradients,
        "ess_bulk_per_1000_gradients": 1000 * min_bulk / max(gradients, 1.0),
        "tuning": {k: v.double().mean() for k, v in result.kernel.tuning_summary().items()},
        "parameters": {
            name: {key: float(value[i]) for key, value in stats.items()}
            for i, name in enumerate(names)
        },
    }
    if bfmi is not None:
        out["e_bfmi_per_chain"] = bfmi.tolist()
    if "tree_depth" in result.stats:
        depth = result.stats["tree_depth"].double()
        out["mean_tree_depth"] = float(depth.mean())
    lines = [
        f"{cfg.model.name}, {s.kernel}: {s.chains} chains x ({s.num_warmup} warm-up + "
        f"{s.num_samples} draws), {cfg.dtype}, {ctx.device}",
        table,
        f"divergent transitions: {num_divergent} (per chain {divergent.sum(1).tolist()})",
        f"mean acceptance statistic: {out['mean_accept_prob']:.3f}",
        f"wall time {wall:.1f} s (CPU {cpu:.1f} s); min bulk ESS {min_bulk:.0f}: "
        f"{min_bulk / wall:.1f} ESS/s ({min_bulk / cpu:.1f} per CPU s), "
        f"{out['ess_bulk_per_1000_gradients']:.2f} per 1000 gradients",
    ]
    if bfmi is not None:
        lines.append("E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in bfmi.tolist()))
    if model.true_mean is not None:
        dim = len(model.true_mean)
        z_mean = (stats["mean"] - model.true_mean).abs() / stats["mcse_mean"]
        z_sd = (stats["sd"] - model.true_sd).abs() / stats["mcse_sd"]
        rel_sd = (stats["sd"] / model.true_sd - 1).abs()
        out["max_abs_mean_error_over_mcse"] = float(z_mean.max())
        out["max_abs_sd_error_over_mcse"] = float(z_sd.max())
        out["max_rel_sd_error"] = float(rel_sd.max())
        out["coords_mean_error_over_4_mcse"] = int((z_mean > 4).sum())
        # Jointly: sum of squared z-scores ~ chi²(dim) if the MCSEs are right.
        out["mean_error_chi2_pvalue"] = float(chi2.sf(float(z_mean.pow(2).sum()), dim))
        out["sd_error_chi2_pvalue"] = float(chi2.sf(float(z_sd.pow(2).sum()), dim))
        lines.append(
            f"vs truth over {dim} coordinates: max |mean - truth| / MCSE = "
            f"{float(z_mean.max()):.2f}, max |sd - truth| / MCSE(sd) = {float(z_sd.max()):.2f}, "
            f"max relative sd error {float(rel_sd.max()):.3f}; chi² p-values of the summed "
            f"squared z-scores: mean {out['mean_error_chi2_pvalue']:.3f}, "
            f"sd {out['sd_error_chi2_pvalue']:.3f}"
        )
    text = "\n".join(lines)
    ctx.write_text("summary", text)
    ctx.write_summary(out)
    ctx.info(text)

    order = torch.argsort(stats["ess_bulk"].cpu())[: cfg.num_plot_params].tolist()
    draws = reported.detach().cpu().double().numpy()
    shown = [names[i] for i in order]
    plot_traces(ctx, draws[..., order], shown)
    plot_ranks(ctx, draws[..., order], shown)
    if "energy" in result.stats:
        plot_energy(ctx, result.stats["energy"].cpu().double().numpy(), bfmi.tolist())
    x, y = (names.index(n) for n in model.pair)
    divergent = divergent.cpu().numpy().astype(bool)
    plot_divergences(ctx, draws[..., x], draws[..., y], divergent, model.pair, log_y=model.log_y)


def _snapshot_tuning(snapshot: dict[str, Any]) -> dict[str, Tensor]:
    """Tuned values in a snapshot's kernel state (step size, trajectory length)."""
    keys = {"step_size": "step_size", "trajectory_length": "length"}
    state = snapshot["kernel"]
    return {v: state[k] for k, v in keys.items() if k in state and state[k].numel() > 0}


# -- plots ------------------------------------------------------------------------------


def plot_traces(ctx: RunContext, draws: np.ndarray, names: list[str], name: str = "traces") -> None:
    """One row per parameter: each chain's draws against the iteration (the first 8)."""
    chains, num, k = draws.shape
    fig, axes = new_figure(k, 1, figsize=(8, 1.6 * k), squeeze=False, sharex=True)
    for j, ax in enumerate(axes[:, 0]):
        for c in range(min(chains, 8)):
            ax.plot(draws[c, :, j], lw=0.5, alpha=0.8, label=f"chain {c}")
        ax.set_ylabel(names[j])
    axes[-1, 0].set_xlabel("draw")
    axes[0, 0].set_title(
        f"traces (parameters of lowest bulk ESS; {min(chains, 8)} of {chains} chains)"
    )
    ctx.save_figure(fig, name)


def plot_ranks(
    ctx: RunContext,
    draws: np.ndarray,
    names: list[str],
    bins: int = 20,
    name: str = "ranks",
    max_chains: int = 8,
) -> None:
    """Rank histograms per chain: ranks of each chain's draws among all chains' draws.

    Uniform histograms (inside the band of ±2 binomial sd shown dashed) mean the chains
    agree; Vehtari et al. (2021) section 4.
    """
    chains, num, k = draws.shape
    shown = min(chains, max_chains)
    fig, axes = new_figure(
        k, shown, figsize=(1.9 * shown, 1.5 * k), squeeze=False, sharex=True, sharey="row"
    )
    total = chains * num
    edges = np.linspace(0, total, bins + 1)
    expected = num / bins
    band = 2 * math.sqrt(expected * (1 - 1 / bins))
    for j in range(k):
        ranks = draws[..., j].reshape(-1).argsort(kind="stable").argsort().reshape(chains, num)
        for c in range(shown):
            ax = axes[j, c]
            ax.hist(ranks[c], bins=edges, color="C0", alpha=0.8)
            ax.axhline(expected, color="k", lw=0.8)
            for h in (expected - band, expected + band):
                ax.axhline(h, color="k", lw=0.6, ls="--")
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(names[j])
            if j == 0:
                ax.set_title(f"chain {c}", fontsize=9)
    fig.suptitle("rank histograms per chain")
    ctx.save_figure(fig, name)


def plot_energy(ctx: RunContext, energy: np.ndarray, bfmi: list[float]) -> None:
    """Marginal energy (centred per chain) against energy transitions, with E-BFMI."""
    fig, ax = new_figure(figsize=(6, 4))
    centred = (energy - energy.mean(1, keepdims=True)).ravel()
    transitions = np.diff(energy, axis=1).ravel()
    ax.hist(centred, bins=40, density=True, alpha=0.5, label="marginal energy (centred)")
    ax.hist(transitions, bins=40, density=True, alpha=0.5, label="energy transition")
    ax.set_xlabel("energy")
    ax.set_title("E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in bfmi[:8]))
    ax.legend()
    ctx.save_figure(fig, "energy")


def plot_divergences(
    ctx: RunContext,
    x: np.ndarray,
    y: np.ndarray,
    divergent: np.ndarray,
    names: tuple,
    name: str = "divergences",
    log_y: bool = False,
) -> None:
    """A pair plot of all draws with the divergent ones marked (``y`` on a log axis with
    ``log_y``: the neck of a funnel)."""
    fig, ax = new_figure(figsize=(5.5, 4.5))
    ok = ~divergent
    ax.scatter(x[ok], y[ok], s=4, alpha=0.4, color="C0", label="draws")
    ax.scatter(
        x[divergent], y[divergent], s=14, color="C3", label=f"divergent ({int(divergent.sum())})"
    )
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend()
    if log_y:
        ax.set_yscale("log")
    ax.set_title("divergent transitions")
    ctx.save_figure(fig, name)
