"""Local-level model on the Nile series: maximum-likelihood variances, filtered/smoothed level.

``y_t = mu_t + eps_t`` (irregular variance ``sigma2_irregular`` = R),
``mu_t = mu_{t-1} + eta_t`` (level variance ``sigma2_level`` = Q): a ``KalmanFilter`` with
A = H = 1 whose two variances are fitted by maximising the exact log-likelihood (L-BFGS on the
softplus-Cholesky parameters), compared with statsmodels' ``UnobservedComponents('local level')``.

Initialisation, like for like: statsmodels' fit reports the log-likelihood of an approximate
diffuse initialisation (state variance 1e6) with the first observation left out
(``loglikelihood_burn = 1``). Here ``x_0 ~ N(0, kappa)`` with ``kappa = diffuse_variance``
(default 1e6, the same) and the objective is the sum of the step log-likelihoods from the
second observation on; the summary also gives the exact-diffuse limit (``kappa = 1e12``).
Durbin & Koopman (2012), sections 2.9-2.10 and 5.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.ssm import KalmanFilter


@dataclass
class FitConfig:
    method: Literal["sequential", "parallel"] = "sequential"
    max_iterations: int = 100  # L-BFGS iterations
    initial_irregular: float = 1000.0  # starting guesses for the two variances
    initial_level: float = 1000.0
    diffuse_variance: float = 1.0e6  # kappa, the variance of x_0 (statsmodels: 1e6)


@dataclass
class Config(ExperimentConfig):
    experiment: str = "kalman_nile"
    output_dir: str = "runs/kalman_nile"
    fit: FitConfig = field(default_factory=FitConfig)
    compare_statsmodels: bool = True


def load_nile() -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.datasets import nile

    data = nile.load_pandas().data
    return data["year"].to_numpy(), np.array(data["volume"], dtype=float)


def diffuse_log_likelihood(model: KalmanFilter, y: torch.Tensor, method: str) -> torch.Tensor:
    """Sum of ``log p(y_t | y_1..y_{t-1})`` for t >= 2 (the diffuse log-likelihood)."""
    return model.filter(y, method=method).step_log_likelihoods[:, 1:].sum()


def local_level(irregular: float, level: float, kappa: float, device) -> KalmanFilter:
    one = torch.ones(1, 1, dtype=torch.float64)
    model = KalmanFilter(one, one, level * one, irregular * one, init_cov=kappa * one).to(
        device=device, dtype=torch.float64
    )
    for name in ("A", "H", "init_mean", "raw_init_cov"):
        getattr(model, name).requires_grad_(False)
    return model


def statsmodels_fit(y: np.ndarray) -> dict[str, float] | None:
    try:
        from statsmodels.tsa.statespace.structural import UnobservedComponents
    except ImportError:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = UnobservedComponents(y, "local level").fit(disp=False)
    params = dict(zip(result.model.param_names, result.params, strict=True))
    return {
        "sigma2_irregular": float(params["sigma2.irregular"]),
        "sigma2_level": float(params["sigma2.level"]),
        "log_likelihood": float(result.llf),
    }


def run(cfg: Config, ctx: RunContext) -> None:
    years, volume = load_nile()
    y = torch.as_tensor(volume, dtype=torch.float64, device=ctx.device).view(1, -1, 1)
    model = local_level(
        cfg.fit.initial_irregular, cfg.fit.initial_level, cfg.fit.diffuse_variance, ctx.device
    )
    params = [model.raw_Q, model.raw_R]
    optimizer = torch.optim.LBFGS(
        params,
        max_iter=cfg.fit.max_iterations,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
    )
    evaluations = []

    def closure():
        optimizer.zero_grad()
        loss = -diffuse_log_likelihood(model, y, cfg.fit.method)
        loss.backward()
        evaluations.append(-loss.item())
        ctx.log(
            len(evaluations),
            log_likelihood=-loss.item(),
            sigma2_irregular=model.R.item(),
            sigma2_level=model.Q.item(),
        )
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        loglik = diffuse_log_likelihood(model, y, cfg.fit.method).item()
        other = "parallel" if cfg.fit.method == "sequential" else "sequential"
        loglik_other = diffuse_log_likelihood(model, y, other).item()
        exact_diffuse = local_level(model.R.item(), model.Q.item(), 1e12, ctx.device)
        loglik_exact_diffuse = diffuse_log_likelihood(exact_diffuse, y, cfg.fit.method).item()
    summary = {
        "bayestorch": {
            "sigma2_irregular": model.R.item(),
            "sigma2_level": model.Q.item(),
            "log_likelihood": loglik,
            "log_likelihood_exact_diffuse_limit": loglik_exact_diffuse,
        },
        "diffuse_variance": cfg.fit.diffuse_variance,
        "method": cfg.fit.method,
        f"log_likelihood_{other}": loglik_other,
        "function_evaluations": len(evaluations),
        "num_observations": int(y.shape[1]),
    }
    reference = statsmodels_fit(volume) if cfg.compare_statsmodels else None
    if reference is not None:
        at_reference = local_level(
            reference["sigma2_irregular"],
            reference["sigma2_level"],
            cfg.fit.diffuse_variance,
            ctx.device,
        )
        with torch.no_grad():
            reference["bayestorch_log_likelihood_at_these_params"] = diffuse_log_likelihood(
                at_reference, y, cfg.fit.method
            ).item()
        summary["statsmodels"] = reference
    ctx.write_summary(summary)
    ctx.info(
        f"sigma2_irregular={model.R.item():.1f} sigma2_level={model.Q.item():.1f} "
        f"log-likelihood={loglik:.3f}"
        + (
            f" (statsmodels: {reference['sigma2_irregular']:.1f} / "
            f"{reference['sigma2_level']:.1f} / {reference['log_likelihood']:.3f})"
            if reference
            else ""
        )
    )
    plot(model, y, years, volume, cfg.fit.method, ctx)


def plot(model: KalmanFilter, y, years, volume, method: str, ctx: RunContext) -> None:
    with torch.no_grad():
        filtered = model.filter(y, method=method)
        smoothed = model.smooth(y, method=method)
    fig, axes = new_figure(1, 2, figsize=(12, 4), sharey=True)
    for ax, out, label in ((axes[0], filtered, "filtered"), (axes[1], smoothed, "smoothed")):
        mean = out.means[0, :, 0].cpu().numpy()
        sd = out.covs[0, :, 0, 0].sqrt().cpu().numpy()
        ax.plot(years, volume, ".", color="0.4", label="Nile flow")
        ax.plot(years, mean, color="C0", label=f"{label} level")
        ax.fill_between(
            years, mean - 1.645 * sd, mean + 1.645 * sd, color="C0", alpha=0.25, label="90% band"
        )
        ax.set_xlabel("year")
        ax.set_title(f"{label} level (local-level model, ML variances)")
    axes[0].set_ylabel("annual flow (10^8 m^3)")
    axes[0].legend(loc="upper right")
    ctx.save_figure(fig, "nile_level")

    records = ctx.read_metrics()
    fig, ax = new_figure(figsize=(5, 3.5))
    ax.plot([r["step"] for r in records], [r["log_likelihood"] for r in records])
    ax.set_xlabel("L-BFGS function evaluation")
    ax.set_ylabel("diffuse log-likelihood")
    ax.set_ylim(bottom=max(min(r["log_likelihood"] for r in records), -700))
    ctx.save_figure(fig, "fit")
