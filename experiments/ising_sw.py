"""2-D Ising model: Swendsen–Wang against single-site heat-bath Gibbs.

Part 1 (Onsager): energy and |magnetisation| per site from Swendsen–Wang at temperatures
away from T_c = 2 / ln(1 + √2), on periodic L x L lattices, against Onsager's exact
infinite-lattice values (``ising_exact_energy`` / ``ising_exact_magnetisation``), in units
of the Monte Carlo standard error.

Part 2 (critical slowing down): the integrated autocorrelation time of the energy at
T_c for both samplers and every L, from many replicas started in equilibrium (Gibbs
chains start from Swendsen–Wang-equilibrated states, so they need no burn-in of their
own); the dynamic exponent z from a least-squares fit of log tau on log L. Literature:
z_int,E ≈ 0.2–0.35 for Swendsen–Wang (Salas & Sokal 1997 argue for a logarithm),
≈ 2.17 for local dynamics (Nightingale & Blöte 1996).

Resume: each finished (L, part) is checkpointed with its results; ``resume=true`` skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib.ticker
import numpy as np
import torch

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.mcmc.diagnostics import mcse_mean
from bayestorch.mcmc.swendsen_wang import (
    ISING_CRITICAL_TEMPERATURE,
    PottsGibbs,
    SwendsenWang,
    integrated_autocorrelation_time,
    ising_energy,
    ising_exact_energy,
    ising_exact_magnetisation,
    magnetisation,
)


@dataclass
class OnsagerConfig:
    temperatures: list[float] = field(default_factory=lambda: [1.5, 2.0, 2.6, 3.5])
    replicas: int = 16
    burn_in: int = 50
    sweeps: int = 200


@dataclass
class CriticalConfig:
    # per lattice size (same order as `sizes`)
    sw_replicas: list[int] = field(default_factory=lambda: [64, 64, 32])
    sw_sweeps: list[int] = field(default_factory=lambda: [600, 600, 500])
    gibbs_replicas: list[int] = field(default_factory=lambda: [64, 32, 16])
    gibbs_sweeps: list[int] = field(default_factory=lambda: [2000, 5000, 12000])
    burn_in: int = 100  # Swendsen–Wang sweeps to equilibrate before measuring either sampler
    groups: int = 4  # replicas are split into groups; the spread of tau gives its error


@dataclass
class Config(ExperimentConfig):
    experiment: str = "ising_sw"
    output_dir: str = "runs/ising_sw"
    sizes: list[int] = field(default_factory=lambda: [16, 32, 64])
    onsager: OnsagerConfig = field(default_factory=OnsagerConfig)
    critical: CriticalConfig = field(default_factory=CriticalConfig)


def measure(kernel, state, sweeps: int, generator, edges, size: int):
    """Run ``sweeps`` steps; energy and |m| per site of every replica, ``(R, sweeps)``."""
    energy, mag = [], []
    for _ in range(sweeps):
        state, _ = kernel.step(state, generator)
        energy.append(ising_energy(state.labels, edges) / size**2)
        mag.append(magnetisation(state.labels, 2))
    return state, torch.stack(energy, 1).double().cpu(), torch.stack(mag, 1).double().cpu()


def tau_with_error(energy: torch.Tensor, groups: int) -> tuple[float, float]:
    """tau_int of all replicas pooled, and its standard error from replica groups."""
    tau = float(integrated_autocorrelation_time(energy.unsqueeze(-1)))
    per_group = [
        float(integrated_autocorrelation_time(chunk.unsqueeze(-1)))
        for chunk in energy.chunk(groups, dim=0)
    ]
    return tau, float(np.std(per_group, ddof=1) / math.sqrt(groups))


def fit_exponent(sizes, taus, errors) -> tuple[float, float]:
    """Weighted least squares of log tau = c + z log L; returns z and its standard error."""
    x, y = np.log(sizes), np.log(taus)
    w = (np.asarray(taus) / np.maximum(errors, 1e-12)) ** 2  # 1 / var(log tau)
    design = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * y)
    return float(coef[1]), float(math.sqrt(cov[1, 1]))


def run(cfg: Config, ctx: RunContext) -> None:
    crit = cfg.critical
    for name in ("sw_replicas", "sw_sweeps", "gibbs_replicas", "gibbs_sweeps"):
        if len(getattr(crit, name)) != len(cfg.sizes):
            raise ValueError(f"critical.{name} needs one entry per size ({len(cfg.sizes)})")
    step, results = ctx.restore({})
    results = results or {"onsager": [], "critical": {}}
    gen = ctx.generator
    jobs = [("onsager", size) for size in cfg.sizes] + [("critical", s) for s in cfg.sizes]
    for job_index, (part, size) in enumerate(ctx.progress(jobs, desc="ising")):
        if job_index < step:
            continue
        if part == "onsager":
            for temperature in cfg.onsager.temperatures:
                kernel = SwendsenWang.lattice(
                    size, size, 2.0 / temperature, 2, periodic=True, device=ctx.device
                )
                state = kernel.init(kernel.uniform_labels(cfg.onsager.replicas, gen))
                state, _, _ = measure(kernel, state, cfg.onsager.burn_in, gen, kernel.edges, size)
                _, energy, mag = measure(kernel, state, cfg.onsager.sweeps, gen, kernel.edges, size)
                row = {"L": size, "T": temperature}
                for key, draws, exact in (
                    ("energy", energy, ising_exact_energy(temperature)),
                    ("abs_m", mag, ising_exact_magnetisation(temperature)),
                ):
                    mean, se = float(draws.mean()), float(mcse_mean(draws.unsqueeze(-1)))
                    row.update({key: mean, f"{key}_mcse": se, f"{key}_exact": exact})
                    row[f"{key}_z"] = (mean - exact) / se
                results["onsager"].append(row)
                ctx.log(job_index, **row)
        else:
            i = cfg.sizes.index(size)
            temperature = ISING_CRITICAL_TEMPERATURE
            sw = SwendsenWang.lattice(
                size, size, 2.0 / temperature, 2, periodic=True, device=ctx.device
            )
            gibbs = PottsGibbs.lattice(
                size, size, 2.0 / temperature, 2, periodic=True, device=ctx.device
            )
            entry = {}
            for label, kernel, replicas, sweeps in (
                ("sw", sw, crit.sw_replicas[i], crit.sw_sweeps[i]),
                ("gibbs", gibbs, crit.gibbs_replicas[i], crit.gibbs_sweeps[i]),
            ):
                state = sw.init(sw.uniform_labels(replicas, gen))
                state, _, _ = measure(sw, state, crit.burn_in, gen, sw.edges, size)
                _, energy, mag = measure(kernel, state, sweeps, gen, sw.edges, size)
                tau, tau_se = tau_with_error(energy, crit.groups)
                entry[label] = {
                    "tau_int_energy": tau,
                    "tau_se": tau_se,
                    "sweeps": sweeps,
                    "replicas": replicas,
                    "sweeps_per_tau": sweeps / tau,
                    "energy": float(energy.mean()),
                    "abs_m": float(mag.mean()),
                }
            entry["ratio_gibbs_over_sw"] = (
                entry["gibbs"]["tau_int_energy"] / entry["sw"]["tau_int_energy"]
            )
            results["critical"][str(size)] = entry
            taus = {f"{k}_tau": entry[k]["tau_int_energy"] for k in ("sw", "gibbs")}
            ctx.log(job_index, L=size, **taus)
        ctx.save_checkpoint(job_index + 1, {}, extra=results)

    summary = {"onsager": results["onsager"], "critical": results["critical"]}
    if len(cfg.sizes) >= 2:
        for label in ("sw", "gibbs"):
            taus = [results["critical"][str(s)][label]["tau_int_energy"] for s in cfg.sizes]
            errs = [results["critical"][str(s)][label]["tau_se"] for s in cfg.sizes]
            z, z_se = fit_exponent(cfg.sizes, taus, errs)
            summary[f"z_{label}"] = z
            summary[f"z_{label}_se"] = z_se
            # Successive slopes: an effective exponent that drifts with L shows corrections
            # to scaling that one power law over the whole range hides.
            summary[f"z_{label}_local"] = (
                np.diff(np.log(taus)) / np.diff(np.log(cfg.sizes))
            ).tolist()
    # |m| vanishes above T_c only on the infinite lattice (finite L: ~ L^-1): compare it
    # below T_c only.
    z_scores = [abs(r["energy_z"]) for r in results["onsager"]] + [
        abs(r["abs_m_z"]) for r in results["onsager"] if r["T"] < ISING_CRITICAL_TEMPERATURE
    ]
    summary["max_abs_z_onsager"] = max(z_scores, default=float("nan"))
    ctx.write_summary(summary)
    lines = ["L   T      energy (exact)          |m| (exact)"]
    for r in results["onsager"]:
        lines.append(
            f"{r['L']:<3} {r['T']:<5.3g}  {r['energy']:.4f}±{r['energy_mcse']:.4f} "
            f"({r['energy_exact']:.4f})  {r['abs_m']:.4f}±{r['abs_m_mcse']:.4f} "
            f"({r['abs_m_exact']:.4f})"
        )
    lines.append("L   tau_SW          tau_Gibbs        ratio")
    for s in cfg.sizes:
        e = results["critical"][str(s)]
        lines.append(
            f"{s:<3} {e['sw']['tau_int_energy']:.3f}±{e['sw']['tau_se']:.3f}  "
            f"{e['gibbs']['tau_int_energy']:.1f}±{e['gibbs']['tau_se']:.1f}  "
            f"{e['ratio_gibbs_over_sw']:.1f}"
        )
    if "z_sw" in summary:
        lines.append(
            f"z_SW = {summary['z_sw']:.3f} ± {summary['z_sw_se']:.3f}, "
            f"z_Gibbs = {summary['z_gibbs']:.3f} ± {summary['z_gibbs_se']:.3f}"
        )
        for label in ("sw", "gibbs"):
            slopes = ", ".join(f"{z:.2f}" for z in summary[f"z_{label}_local"])
            lines.append(f"local slopes {label}: {slopes}")
    ctx.write_text("table", "\n".join(lines))
    ctx.info("\n".join(lines))
    plot(cfg, results, summary, ctx)


def plot(cfg: Config, results, summary, ctx: RunContext) -> None:
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    sizes = np.array(cfg.sizes, dtype=float)
    for label, marker in (("sw", "o"), ("gibbs", "s")):
        taus = [results["critical"][str(s)][label]["tau_int_energy"] for s in cfg.sizes]
        errs = [results["critical"][str(s)][label]["tau_se"] for s in cfg.sizes]
        name = "Swendsen–Wang" if label == "sw" else "heat-bath Gibbs"
        if f"z_{label}" in summary:
            name += f" (z = {summary[f'z_{label}']:.2f} ± {summary[f'z_{label}_se']:.2f})"
        line = axes[0].errorbar(sizes, taus, yerr=errs, fmt=marker, capsize=3, label=name)
        if f"z_{label}" in summary:  # the fitted power law through the weighted mean point
            w = (np.asarray(taus) / np.asarray(errs)) ** 2
            centre = np.sum(w * (np.log(taus) - summary[f"z_{label}"] * np.log(sizes))) / w.sum()
            fit = np.exp(centre) * sizes ** summary[f"z_{label}"]
            axes[0].plot(sizes, fit, "--", color=line[0].get_color(), lw=1)
    axes[0].set(xscale="log", yscale="log", xlabel="L", ylabel="tau_int of the energy at T_c")
    axes[0].set_xticks(sizes, [str(int(s)) for s in sizes])
    axes[0].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0].legend()
    grid = np.linspace(1.2, 4.0, 300)
    axes[1].plot(grid, [ising_exact_energy(t) for t in grid], "k-", lw=1, label="Onsager")
    for size in cfg.sizes:
        rows = [r for r in results["onsager"] if r["L"] == size]
        axes[1].errorbar(
            [r["T"] for r in rows], [r["energy"] for r in rows],
            yerr=[r["energy_mcse"] for r in rows], fmt="o", ms=4, label=f"SW, L = {size}",
        )  # fmt: skip
    axes[1].axvline(ISING_CRITICAL_TEMPERATURE, color="grey", ls=":", lw=1)
    axes[1].set(xlabel="T", ylabel="energy per site")
    axes[1].legend()
    ctx.save_figure(fig, "ising_sw")
