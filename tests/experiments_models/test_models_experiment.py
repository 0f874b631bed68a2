"""experiments/models.py: every problem runs end to end at tiny sizes and writes its files;
config errors name the key; the models of model_zoo are the densities they claim to be."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.distributions as D

import bayestorch as bt
from bayestorch.experiment import ConfigError, RunContext, load_experiment_config, main
from experiments import REGISTRY, model_zoo

SMOKE = "configs/models_smoke.yaml"
TINY = [
    "nuts.chains=4",
    "nuts.num_warmup=30",
    "nuts.num_samples=10",
    "nuts.max_tree_depth=3",
    "advi.num_steps=30",
    "advi.num_draws=40",
    "num_predictive=20",
    "num_plot_params=1",
    "plot_chains=1",
]


@pytest.mark.parametrize(
    ("problem", "variants"),
    [
        ("grunfeld", ["varying_slopes"]),
        ("strikes", ["poisson", "negative_binomial"]),
        ("diabetes_bnn", ["bnn"]),
    ],
)
def test_problem_runs_and_writes_its_files(problem, variants, tmp_path):
    out = tmp_path / problem
    args = [SMOKE, f"model.name={problem}", f"output_dir={out}", "model.hidden=3", *TINY]
    assert main(args, REGISTRY) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["variants"]) == sorted(variants)
    for name in variants:
        result = summary["variants"][name]
        for method in ("nuts", "advi"):
            assert math.isfinite(result[method]["loo"]["elpd_loo"])
            assert 0.0 <= result[method]["ppc"]["coverage"] <= 1.0
        assert result["nuts_vs_advi"]["parameters"]
        for plot in ("traces", "ranks", "divergences", "nuts_vs_advi", "ppc"):
            assert (out / "plots" / f"{plot}_{name}.png").is_file()
    if problem == "diabetes_bnn":
        heldout = summary["variants"]["bnn"]["nuts"]["heldout"]
        assert heldout["num_test"] == round(0.2 * 442)
        assert (out / "plots" / "heldout_bnn.png").is_file()
    assert "summary.txt" in {p.name for p in out.iterdir()}


def _without_times(tree):
    if isinstance(tree, dict):
        return {k: _without_times(v) for k, v in tree.items() if k != "wall_time_s"}
    return tree


def test_a_run_killed_between_variants_resumes_to_the_same_summary(tmp_path, monkeypatch):
    import experiments.models as module

    reference = tmp_path / "reference"
    assert main([SMOKE, f"output_dir={reference}", *TINY], REGISTRY) == 0
    fit_variant = module.fit_variant

    def killed_on_the_second(variant, *args, **kwargs):
        if variant.name == "centred":
            raise KeyboardInterrupt
        return fit_variant(variant, *args, **kwargs)

    out = tmp_path / "killed"
    monkeypatch.setattr(module, "fit_variant", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        main([SMOKE, f"output_dir={out}", *TINY], REGISTRY)
    monkeypatch.setattr(module, "fit_variant", fit_variant)
    assert main([SMOKE, f"output_dir={out}", "resume=true", *TINY], REGISTRY) == 0
    expected = json.loads((reference / "summary.json").read_text())
    assert set(expected["divergences"]) == {"noncentred", "centred"}
    assert set(expected["elpd_loo"]["centred"]) == {"nuts", "advi"}
    resumed = json.loads((out / "summary.json").read_text())
    assert _without_times(resumed) == _without_times(expected)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.name=iris", "'model.name' must be one of"),
        ("nuts.chain=4", "unknown key 'nuts.chain'"),
        ("advi.guide=diagonal", "'advi.guide' must be one of"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(SMOKE, [override], REGISTRY)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("nuts.chains=0", "nuts.chains"),
        ("advi.num_draws=2", "advi.num_draws"),
        ("interval=1.5", "interval"),
    ],
)
def test_bad_values_name_the_key(override, key, tmp_path):
    cfg, module = load_experiment_config(SMOKE, [override, f"output_dir={tmp_path}"], REGISTRY)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        module.run(cfg, RunContext(cfg))


def _hand_negative_binomial(z, x, y):
    """log p(a, b, log phi | y) of model_zoo.negative_binomial_regression, by hand."""
    a, b, log_phi = z.unbind(-1)
    phi = log_phi.exp()
    mean = (a[:, None] + b[:, None] * x).exp()
    log_lik = (
        torch.lgamma(y + phi[:, None])
        - torch.lgamma(phi[:, None])
        - torch.lgamma(y + 1)
        + phi[:, None] * (phi[:, None] / (phi[:, None] + mean)).log()
        + y * (mean / (phi[:, None] + mean)).log()
    ).sum(-1)
    prior = (
        D.Normal(0.0, 5.0).log_prob(a)
        + D.Normal(0.0, 1.0).log_prob(b)
        + D.Gamma(2.0, 0.1).log_prob(phi)
        + log_phi  # Jacobian of phi = exp(log phi)
    )
    return prior + log_lik


def test_negative_binomial_model_is_the_written_density():
    variants = model_zoo.strikes(torch.float64, torch.device("cpu"))
    nb = next(v for v in variants if v.name == "negative_binomial")
    density = bt.infer.ModelDensity(nb.model, *nb.args, y=nb.y)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = _hand_negative_binomial(z, nb.args[0], nb.y)
    # torch writes the likelihood through log-sigmoids of the logits, this test through
    # ratios of means: sums of 62 terms in the hundreds agree to float64 rounding (~1e-9).
    torch.testing.assert_close(density.log_prob(z), expected, rtol=1e-8, atol=0.0)


def test_varying_slopes_model_is_the_written_density():
    (variant,) = model_zoo.grunfeld(torch.float64, torch.device("cpu"))
    x, group, num_groups = variant.args
    density = bt.infer.ModelDensity(variant.model, *variant.args, y=variant.y, **variant.kwargs)
    z = 0.5 * torch.randn(3, density.dim, generator=torch.Generator().manual_seed(1))
    z = z.double()
    values = density.constrain(z)
    for c in range(3):
        loc, scale, chol = values["loc"][c], values["scale"][c], values["corr_cholesky"][c]
        coef = torch.stack([values["intercept"][c], values["slope"][c]], -1)
        sigma = values["sigma"][c]
        cov = torch.diag(scale) @ chol @ chol.T @ torch.diag(scale)
        # The model samples (intercept, z) with slope = a function of them: its density
        # is the bivariate normal's times |d slope / d z| = scale_1 L_11 per firm.
        log_jacobian = num_groups * (scale[1] * chol[1, 1]).log()
        log_joint = (
            D.Normal(0.0, 1.0).log_prob(loc).sum()
            + D.HalfNormal(1.0).log_prob(scale).sum()
            + D.LKJCholesky(2, 2.0).log_prob(chol)
            + D.MultivariateNormal(loc, cov).log_prob(coef).sum()
            + log_jacobian
            + D.HalfNormal(1.0).log_prob(sigma)
            + D.Normal(coef[group, 0] + coef[group, 1] * x, sigma).log_prob(variant.y).sum()
        )
        without_jacobian = density.log_prob(z[c : c + 1], jacobian=False)[0]
        torch.testing.assert_close(without_jacobian, log_joint.double(), rtol=1e-10, atol=1e-8)
    assert num_groups == 11 and len(x) == 220
