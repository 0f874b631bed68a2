"""Plots of ``experiments/models.py``: NUTS against ADVI, posterior predictive checks,
held-out predictions."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bayestorch.experiment import RunContext
from bayestorch.experiment.plots import new_figure

_METHODS = (("nuts", "NUTS", "C0"), ("advi", "ADVI", "C1"))


def plot_comparison(ctx: RunContext, rows: dict, elbo: np.ndarray, name: str) -> None:
    """Each scalar's ADVI mean against its NUTS mean (error bars: the sds), the sds
    against each other, and the ELBO trace of ADVI."""
    fig, axes = new_figure(1, 3, figsize=(15, 4.2), gridspec_kw={"wspace": 0.3})
    values = {k: np.array([r[k] for r in rows.values()]) for k in next(iter(rows.values()))}
    ax = axes[0]
    ax.errorbar(
        values["nuts_mean"],
        values["advi_mean"],
        xerr=values["nuts_sd"],
        yerr=values["advi_sd"],
        fmt="o",
        ms=3,
        lw=0.6,
        alpha=0.7,
    )
    low = min(values["nuts_mean"].min(), values["advi_mean"].min())
    high = max(values["nuts_mean"].max(), values["advi_mean"].max())
    ax.plot([low, high], [low, high], "k--", lw=0.8)
    ax.set_xlabel("NUTS posterior mean")
    ax.set_ylabel("ADVI posterior mean")
    ax.set_title("means (bars: ±1 sd)")
    ax = axes[1]
    ax.plot(values["nuts_sd"], values["advi_sd"], "o", ms=3)
    low = min(values["nuts_sd"].min(), values["advi_sd"].min())
    high = max(values["nuts_sd"].max(), values["advi_sd"].max())
    ax.plot([low, high], [low, high], "k--", lw=0.8)
    ax.set_xlabel("NUTS posterior sd")
    ax.set_ylabel("ADVI posterior sd")
    ax.set_title("standard deviations")
    ax = axes[2]
    steps = np.arange(len(elbo))
    ax.plot(steps, elbo, lw=0.4, alpha=0.6)
    window = max(1, len(elbo) // 50)
    smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], smooth, color="C3", lw=1.2, label=f"running mean ({window})")
    tail = elbo[len(elbo) // 5 :]
    ax.set_ylim(np.quantile(tail, 0.01) - 1.0, tail.max() + 1.0)
    ax.set_xlabel("ADVI step")
    ax.set_ylabel("ELBO")
    ax.legend()
    ctx.save_figure(fig, name)


def _intervals(ax, y_rep: Tensor, level: float, offset: float, label: str, color: str) -> None:
    q = torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2], dtype=y_rep.dtype)
    lower, median, upper = torch.quantile(y_rep.cpu().reshape(len(y_rep), -1), q, dim=0).numpy()
    x = np.arange(len(median)) + offset
    ax.vlines(x, lower, upper, color=color, lw=1.0, alpha=0.6, label=f"{label} {level:.0%}")
    ax.plot(x, median, "_", color=color, ms=5)


def plot_ppc(ctx: RunContext, y: Tensor, predictive: dict, level: float, name: str) -> None:
    """Left: each observation (sorted by NUTS's predictive median when many) against its
    central predictive interval under NUTS and ADVI. Right: the distribution of the sd of
    replicated data sets against the observed sd."""
    y = y.detach().cpu().double().reshape(-1)
    nuts = predictive["nuts"].detach().cpu().double().reshape(-1, len(y))
    order = torch.argsort(nuts.median(0).values) if len(y) > 20 else torch.arange(len(y))
    fig, axes = new_figure(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    for i, (key, label, color) in enumerate(_METHODS):
        y_rep = predictive[key].detach().cpu().double().reshape(-1, len(y))[:, order]
        _intervals(ax, y_rep, level, -0.15 + 0.3 * i, label, color)
    ax.plot(np.arange(len(y)), y[order].numpy(), "k.", ms=4, label="observed")
    ax.set_xlabel("observation" + (" (sorted by predictive median)" if len(y) > 20 else ""))
    ax.set_ylabel("y")
    ax.legend(fontsize=8)
    ax.set_title("posterior predictive intervals")
    ax = axes[1]
    for key, label, color in _METHODS:
        sds = predictive[key].detach().cpu().double().reshape(-1, len(y)).std(1).numpy()
        ax.hist(sds, bins=40, density=True, alpha=0.5, color=color, label=label)
    ax.axvline(float(y.std()), color="k", lw=1.5, label="observed")
    ax.set_xlabel("sd of a replicated data set")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, name)


def plot_heldout(ctx: RunContext, y: Tensor, predictive: dict, level: float, name: str) -> None:
    """Held-out targets against the predictive means, with the central intervals."""
    y = y.detach().cpu().double().reshape(-1).numpy()
    fig, axes = new_figure(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, (key, label, color) in zip(axes, _METHODS):
        y_rep = predictive[key + "_test"].detach().cpu().double().reshape(-1, len(y))
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=y_rep.dtype)
        lower, upper = torch.quantile(y_rep, q, dim=0).numpy()
        mean = y_rep.mean(0).numpy()
        inside = (y >= lower) & (y <= upper)
        ax.errorbar(y, mean, yerr=[mean - lower, upper - mean], fmt="o", ms=3, lw=0.5, color=color)
        ax.plot([y.min(), y.max()], [y.min(), y.max()], "k--", lw=0.8)
        rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
        ax.set_title(f"{label}: RMSE {rmse:.3f}, {level:.0%} coverage {inside.mean():.2f}")
        ax.set_xlabel("held-out target (standardised)")
    axes[0].set_ylabel("predictive mean and interval")
    ctx.save_figure(fig, name)
