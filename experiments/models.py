"""Models written once in the model language, inferred by NUTS and by ADVI, compared.

Four problems on real data (``experiments/model_zoo.py``): Rubin's eight schools,
non-centred and centred (the centred funnel shows as divergent transitions); a
varying-intercept, varying-slope regression of Grunfeld's investment data with an LKJ
prior on the intercept-slope correlation; Poisson and negative-binomial regressions of
Kennan's strike durations; a one-hidden-layer Bayesian neural network on the diabetes
data with a held-out split. Each model variant is fitted by NUTS (many chains as one
batch) and by ADVI (a Gaussian guide on the same unconstrained space), then:

- the NUTS summary table (mean, sd, HDI, MCSE, bulk/tail ESS, split R-hat, divergences);
- trace and rank plots of the parameters of lowest bulk ESS, and a pair plot with the
  divergent transitions marked;
- posterior predictive checks (the observations against the 90% predictive intervals;
  posterior predictive p-values of the mean and sd of the data);
- PSIS-LOO (``az.loo`` on ``to_arviz()``) for NUTS's and ADVI's draws;
- NUTS against ADVI: each scalar's posterior mean and sd side by side;
- with a held-out split: RMSE of the predictive mean and coverage of the 90% predictive
  interval, for both.

References:
    Kucukelbir, Tran, Ranganath, Gelman & Blei (2017), "Automatic differentiation
    variational inference", JMLR 18.
    Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC", Statistics and Computing 27.
    Gelman, Meng & Stern (1996), "Posterior predictive assessment of model fitness via
    realized discrepancies", Statistica Sinica 6.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

import bayestorch as bt
from bayestorch.experiment import ConfigError, ExperimentConfig, RunContext
from bayestorch.infer.posterior import Posterior
from experiments import model_zoo
from experiments.model_plots import plot_comparison, plot_heldout, plot_ppc
from experiments.posterior import plot_divergences, plot_ranks, plot_traces, scalar_columns


@dataclass
class ModelConfig:
    name: Literal["eight_schools", "grunfeld", "strikes", "diabetes_bnn"] = "eight_schools"
    lkj_concentration: float = 2.0  # grunfeld: LKJ(eta) prior on the correlation
    hidden: int = 16  # diabetes_bnn: hidden units (tanh)
    prior_scale: float = 1.0  # diabetes_bnn: weights ~ N(0, prior_scale^2 / fan_in)
    test_fraction: float = 0.2  # diabetes_bnn: held-out share
    split_seed: int = 0


@dataclass
class NUTSConfig:
    chains: int = 128
    num_warmup: int = 300
    num_samples: int = 200
    max_tree_depth: int = 8
    target_accept: float = 0.8


@dataclass
class ADVIConfig:
    guide: Literal["meanfield", "fullrank"] = "meanfield"
    num_steps: int = 5000
    lr: float = 0.05
    num_particles: int = 4  # guide draws per ELBO estimate (advi's num_samples)
    num_draws: int = 4000  # guide draws for the summary and LOO


@dataclass
class Config(ExperimentConfig):
    experiment: str = "models"
    output_dir: str = "runs/models"
    dtype: Literal["float64", "float32"] = "float64"
    model: ModelConfig = field(default_factory=ModelConfig)
    nuts: NUTSConfig = field(default_factory=NUTSConfig)
    advi: ADVIConfig = field(default_factory=ADVIConfig)
    num_predictive: int = 1000  # predictive draws per method (spread over all draws)
    interval: float = 0.9  # central predictive interval for coverage
    num_plot_params: int = 4  # traces / rank plots for the parameters of lowest bulk ESS
    plot_chains: int = 4  # chains shown in the rank plots
    table_rows: int | None = 40


def _check(cfg: Config) -> None:
    positive = {
        "nuts.chains": cfg.nuts.chains,
        "nuts.num_warmup": cfg.nuts.num_warmup,
        "advi.num_steps": cfg.advi.num_steps,
        "advi.num_particles": cfg.advi.num_particles,
        "num_predictive": cfg.num_predictive,
        "plot_chains": cfg.plot_chains,
        "model.hidden": cfg.model.hidden,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"'{key}' must be >= 1, got {value}")
    if cfg.advi.num_steps >= _STEP:
        raise ConfigError(f"'advi.num_steps' must be < {_STEP}, got {cfg.advi.num_steps}")
    if cfg.nuts.num_samples < 4 or cfg.advi.num_draws < 4:
        raise ConfigError("'nuts.num_samples' and 'advi.num_draws' must be >= 4")
    for key, value in {
        "interval": cfg.interval,
        "model.test_fraction": cfg.model.test_fraction,
    }.items():
        if not 0.0 < value < 1.0:
            raise ConfigError(f"'{key}' must be in (0, 1), got {value}")


def load_variants(cfg: ModelConfig, dtype: torch.dtype, device: torch.device):
    """The model variants of ``cfg.name`` with their data."""
    if cfg.name == "eight_schools":
        return model_zoo.eight_schools(dtype, device)
    if cfg.name == "grunfeld":
        return model_zoo.grunfeld(dtype, device, cfg.lkj_concentration)
    if cfg.name == "strikes":
        return model_zoo.strikes(dtype, device)
    return model_zoo.diabetes(
        dtype, device, cfg.hidden, cfg.prior_scale, cfg.test_fraction, cfg.split_seed
    )


_STEP = 1_000_000  # metrics steps of variant k lie in [k * _STEP, (k + 1) * _STEP)


def run(cfg: Config, ctx: RunContext) -> None:
    _check(cfg)
    variants = load_variants(cfg.model, getattr(torch, cfg.dtype), ctx.device)
    generator = ctx.make_generator("models")
    # A checkpoint after each variant: a resumed run skips the variants it finished (their
    # plots are on disk) and, with the generator restored, draws what an uninterrupted
    # run draws for the rest.
    _, extra = ctx.restore({})
    results: dict[str, Any] = extra.get("results", {})
    texts: list[str] = extra.get("texts", [])
    for index, variant in enumerate(variants):
        if variant.name in results:
            continue
        result, text = fit_variant(variant, cfg, ctx, generator, step=index * _STEP)
        results[variant.name] = result
        texts.append(text)
        ctx.save_checkpoint((index + 1) * _STEP, {}, extra={"results": results, "texts": texts})
    out: dict[str, Any] = {"model": cfg.model.name, "device": str(ctx.device), "variants": results}
    out["divergences"] = {n: r["nuts"]["divergences"] for n, r in results.items()}
    out["elpd_loo"] = {
        n: {m: r[m]["loo"]["elpd_loo"] for m in ("nuts", "advi")} for n, r in results.items()
    }
    text = "\n\n".join(texts)
    ctx.write_text("summary", text)
    ctx.write_summary(out)
    ctx.info(text)


def fit_variant(variant, cfg: Config, ctx: RunContext, generator: torch.Generator, step: int):
    """NUTS and ADVI on one model variant; returns its summary dict and text, writes plots.
    ``step``: where its metrics start in ``metrics.jsonl``."""
    model, args, kwargs = variant.model, variant.args, variant.kwargs
    start = time.perf_counter()
    nuts = bt.infer.mcmc(
        model,
        *args,
        y=variant.y,
        model_kwargs=kwargs,
        kernel="nuts",
        chains=cfg.nuts.chains,
        num_warmup=cfg.nuts.num_warmup,
        num_samples=cfg.nuts.num_samples,
        generator=generator,
        progress=cfg.progress,
        kernel_kwargs={
            "max_tree_depth": cfg.nuts.max_tree_depth,
            "target_accept": cfg.nuts.target_accept,
        },
    )
    nuts_time = time.perf_counter() - start
    start = time.perf_counter()
    with _vmap_fallback_notice_ignored():  # prior draws for the initial point
        fit = bt.infer.advi(
            model,
            *args,
            y=variant.y,
            model_kwargs=kwargs,
            guide=cfg.advi.guide,
            num_steps=cfg.advi.num_steps,
            lr=cfg.advi.lr,
            num_samples=cfg.advi.num_particles,
            generator=generator,
            progress=cfg.progress,
        )
    advi_time = time.perf_counter() - start
    advi = fit.posterior(cfg.advi.num_draws, generator)
    elbo = fit.elbo.detach().cpu().double()
    for i in range(0, len(elbo), max(1, len(elbo) // 100)):
        ctx.log(step + i, variant=variant.name, advi_elbo=float(elbo[i]))

    nuts_stats, advi_stats = nuts.summary(), advi.summary()
    divergent = nuts.stats["is_divergent"]
    result: dict[str, Any] = {
        "nuts": {
            "wall_time_s": nuts_time,
            "chains": cfg.nuts.chains,
            "draws": cfg.nuts.num_samples,
            "divergences": int(divergent.sum()),
            "mean_tree_depth": float(nuts.stats["tree_depth"].double().mean()),
            "min_ess_bulk": _extreme(nuts_stats, "ess_bulk", min),
            "max_r_hat": _extreme(nuts_stats, "r_hat", max),
            "loo": loo(nuts),
            "parameters": nuts_stats,
        },
        "advi": {
            "wall_time_s": advi_time,
            "guide": cfg.advi.guide,
            "final_elbo": float(elbo[-max(1, len(elbo) // 10) :].mean()),
            "loo": loo(advi),
        },
    }
    comparison = compare(nuts_stats, advi_stats, variant.compare)
    result["nuts_vs_advi"] = comparison
    ctx.log(step + len(elbo), variant=variant.name, nuts_wall_time_s=nuts_time)

    # Posterior predictive checks, on the training data and (if any) the held-out data.
    predictive = {}
    for method, post in (("nuts", nuts), ("advi", advi)):
        draws = spread(post.draws, cfg.num_predictive)
        with _vmap_fallback_notice_ignored():
            y_rep = bt.infer.predictive(
                model, draws, *args, generator=generator, model_kwargs=kwargs
            )
        predictive[method] = y_rep["y"].reshape(-1, *variant.y.shape)
        result[method]["ppc"] = ppc_summary(predictive[method], variant.y, cfg.interval)
        if variant.test_args is not None:
            with _vmap_fallback_notice_ignored():
                test = bt.infer.predictive(
                    model, draws, *variant.test_args, generator=generator, model_kwargs=kwargs
                )["y"].reshape(-1, *variant.test_y.shape)
            result[method]["heldout"] = heldout_summary(test, variant.test_y, cfg.interval)
            predictive[method + "_test"] = test

    _plots(variant, nuts, comparison, elbo, predictive, cfg, ctx)
    return result, _text(variant, nuts, result, cfg)


@contextlib.contextmanager
def _vmap_fallback_notice_ignored() -> Iterator[None]:
    """Ignore torch's notice that a sampler runs an op without a vmap batching rule (the
    Gamma sampler's in-place clamp, in prior and predictive draws): slower, not wrong."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop because")
        yield


def _extreme(stats: dict[str, dict[str, float]], key: str, pick) -> float:
    values = [s[key] for s in stats.values() if np.isfinite(s[key])]
    return float(pick(values)) if values else float("nan")


def _site_of(name: str) -> str:
    return name.split("[", 1)[0]


def compare(
    nuts: dict[str, dict[str, float]], advi: dict[str, dict[str, float]], sites: list[str] | None
) -> dict[str, Any]:
    """Per scalar: both means and sds, ``(advi mean - nuts mean) / nuts sd`` and the ratio
    of sds; constant scalars (a Cholesky factor's fixed entries) are left out."""
    rows = {}
    for name, s in nuts.items():
        if (sites is not None and _site_of(name) not in sites) or not s["sd"] > 0:
            continue
        a = advi[name]
        rows[name] = {
            "nuts_mean": s["mean"],
            "nuts_sd": s["sd"],
            "advi_mean": a["mean"],
            "advi_sd": a["sd"],
            "mean_shift_in_nuts_sd": (a["mean"] - s["mean"]) / s["sd"],
            "sd_ratio": a["sd"] / s["sd"],
        }
    shifts = np.array([abs(r["mean_shift_in_nuts_sd"]) for r in rows.values()])
    ratios = np.array([r["sd_ratio"] for r in rows.values()])
    return {
        "max_abs_mean_shift_in_nuts_sd": float(shifts.max()),
        "median_sd_ratio": float(np.median(ratios)),
        "min_sd_ratio": float(ratios.min()),
        "max_sd_ratio": float(ratios.max()),
        "parameters": rows,
    }


def loo(posterior: Posterior) -> dict[str, float]:
    """PSIS-LOO of the draws by arviz; Pareto-k warnings are reported (``max_pareto_k``,
    the count above 0.7), not raised."""
    with warnings.catch_warnings():
        # arviz guesses the layout when chains outnumber draws; ours is (chains, draws).
        warnings.filterwarnings("ignore", message="More chains")
        idata = posterior.to_arviz()
    import arviz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the high-k warning: max_pareto_k reports it
        result = arviz.loo(idata, pointwise=True)
    k = np.asarray(result.pareto_k)
    return {
        "elpd_loo": float(result.elpd_loo),
        "se": float(result.se),
        "p_loo": float(result.p_loo),
        "max_pareto_k": float(k.max()),
        "num_pareto_k_above_0.7": int((k > 0.7).sum()),
    }


def spread(draws: dict[str, Tensor], num: int) -> dict[str, Tensor]:
    """``num`` draws evenly spread over all chains and draws, as one chain.

    Shape: ``{name: (chains, draws, *shape)} -> {name: (1, num, *shape)}``.
    """
    first = next(iter(draws.values()))
    total = first.shape[0] * first.shape[1]
    index = torch.linspace(0, total - 1, min(num, total), device=first.device).round().long()
    return {n: v.reshape(total, *v.shape[2:])[index].unsqueeze(0) for n, v in draws.items()}


def _interval(y_rep: Tensor, level: float) -> tuple[Tensor, Tensor]:
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=y_rep.dtype, device=y_rep.device)
    lower, upper = torch.quantile(y_rep, q, dim=0)
    return lower, upper


def ppc_summary(y_rep: Tensor, y: Tensor, level: float) -> dict[str, float]:
    """Share of observations inside their central predictive interval, and posterior
    predictive p-values ``P(T(y_rep) >= T(y))`` of the mean and the sd.

    Shape: ``y_rep (draws, *y.shape)``.
    """
    lower, upper = _interval(y_rep, level)
    dims = tuple(range(1, y_rep.dim()))
    return {
        "coverage": float(((y >= lower) & (y <= upper)).double().mean()),
        "p_value_mean": float((y_rep.mean(dims) >= y.mean()).double().mean()),
        "p_value_sd": float((y_rep.std(dims) >= y.std()).double().mean()),
    }


def heldout_summary(y_rep: Tensor, y: Tensor, level: float) -> dict[str, float]:
    """RMSE of the predictive mean on held-out data, the RMSE of predicting 0 (the
    training mean of the standardised target) and the coverage of the interval."""
    lower, upper = _interval(y_rep, level)
    return {
        "rmse": float((y_rep.mean(0) - y).pow(2).mean().sqrt()),
        "rmse_of_training_mean": float(y.pow(2).mean().sqrt()),
        "coverage": float(((y >= lower) & (y <= upper)).double().mean()),
        "num_test": int(y.numel()),
    }


def _plots(variant, nuts: Posterior, comparison, elbo, predictive, cfg: Config, ctx) -> None:
    tag = variant.name
    columns, names = scalar_columns(nuts.draws)
    stats = nuts.summary()
    varying = [i for i, n in enumerate(names) if stats[n]["sd"] > 0]
    order = sorted(varying, key=lambda i: stats[names[i]]["ess_bulk"])[: cfg.num_plot_params]
    draws = columns.detach().cpu().double().numpy()
    shown = [names[i] for i in order]
    plot_traces(ctx, draws[..., order], shown, name=f"traces_{tag}")
    plot_ranks(ctx, draws[..., order], shown, name=f"ranks_{tag}", max_chains=cfg.plot_chains)
    if variant.pair is not None:
        x, y = (names.index(n) for n in variant.pair)
        divergent = nuts.stats["is_divergent"].cpu().numpy().astype(bool)
        plot_divergences(
            ctx,
            draws[..., x],
            draws[..., y],
            divergent,
            variant.pair,
            name=f"divergences_{tag}",
            log_y=variant.log_y,
        )
    plot_comparison(ctx, comparison["parameters"], elbo.numpy(), f"nuts_vs_advi_{tag}")
    plot_ppc(ctx, variant.y, predictive, cfg.interval, f"ppc_{tag}")
    if variant.test_y is not None:
        plot_heldout(ctx, variant.test_y, predictive, cfg.interval, f"heldout_{tag}")


def _text(variant, nuts: Posterior, result: dict[str, Any], cfg: Config) -> str:
    n, a, c = result["nuts"], result["advi"], result["nuts_vs_advi"]
    lines = [
        f"== {cfg.model.name} / {variant.name}: NUTS {cfg.nuts.chains} chains x "
        f"({cfg.nuts.num_warmup} warm-up + {cfg.nuts.num_samples} draws) in "
        f"{n['wall_time_s']:.1f} s; ADVI ({cfg.advi.guide}, {cfg.advi.num_steps} steps) in "
        f"{a['wall_time_s']:.1f} s",
        nuts.summary_table(max_rows=cfg.table_rows),
        f"LOO elpd: NUTS {n['loo']['elpd_loo']:.2f} (se {n['loo']['se']:.2f}, max Pareto k "
        f"{n['loo']['max_pareto_k']:.2f}); ADVI {a['loo']['elpd_loo']:.2f} (se "
        f"{a['loo']['se']:.2f}, max Pareto k {a['loo']['max_pareto_k']:.2f})",
        f"ADVI vs NUTS: max |mean shift| {c['max_abs_mean_shift_in_nuts_sd']:.2f} NUTS sd; "
        f"sd ratio median {c['median_sd_ratio']:.2f} (range {c['min_sd_ratio']:.2f} to "
        f"{c['max_sd_ratio']:.2f})",
        f"posterior predictive {cfg.interval:.0%} coverage (train): NUTS "
        f"{n['ppc']['coverage']:.3f}, ADVI {a['ppc']['coverage']:.3f}; p-value of the sd: NUTS "
        f"{n['ppc']['p_value_sd']:.2f}, ADVI {a['ppc']['p_value_sd']:.2f}",
    ]
    if "heldout" in n:
        h, ha = n["heldout"], a["heldout"]
        lines.append(
            f"held-out ({h['num_test']}): RMSE NUTS {h['rmse']:.3f}, ADVI {ha['rmse']:.3f} "
            f"(training mean {h['rmse_of_training_mean']:.3f}); {cfg.interval:.0%} coverage "
            f"NUTS {h['coverage']:.3f}, ADVI {ha['coverage']:.3f}"
        )
    return "\n".join(lines)
