"""Models written in the model language: the layer's overhead, and ESS/s beside Pyro and NumPyro.

Part 1, ``overhead``: time of one log density + gradient
(``bayestorch.utils.log_prob_and_grad``) of ``bt.infer.ModelDensity(model).log_prob`` over
the hand-written unconstrained density of the same model (Jacobians worked out by hand), at
each of ``--chains``. The two are checked to differ by a constant (the normalisers the hand
density drops) before they are timed; the timing interleaves the two in blocks and reports
the median of the per-block ratios (robust to the load of a shared machine). Goal (issue
19): at most 1.2x. Unless ``--no-compiled``, two more columns: the model's traced and
compiled gradient (``ModelDensity.value_and_grad`` with ``gradient_mode="compiled"``,
through ``log_prob_and_grad``; checked against the eager gradient) and the hand-written
density compiled (``bayestorch.utils.CompiledLogProb``), each as a ratio to the eager
hand-written density, with the CPU seconds of the first call (trace + compile).

Part 2, ``peers``: NUTS on the same model written in each library's own language, 500
warm-up + 1000 draws per chain by default: Pyro (``pyro.infer.NUTS(model)``, 1 chain, fewer
iterations: ``--pyro-warmup``/``--pyro-samples``), NumPyro (``numpyro.infer.NUTS(model)``,
1 chain and ``chain_method="vectorized"``), ``bt.infer.mcmc`` and, for reference,
``bt.mcmc.sample`` on the hand-written density (the same initial points and seed as
``bt.infer.mcmc``; the two densities differ by a constant and by round-off, so the runs
start alike but drift apart: the layer's cost inside the sampler is compared per leapfrog
step, wall time over the steps the batch executed). ESS/s = min over scalar parameters of
the bulk ESS / total time of the call (model tracing, initialisation, compilation
included: cold), on the wall clock and on the process-CPU clock (the fairer one on a
machine shared with other jobs, where a process may get a fraction of a core).
For NumPyro, *warm* also leaves out the time JAX spent tracing and compiling
(``JaxCompileClock`` of ``benchmarks/mcmc.py``); the other rows have no compile step
(warm = cold). The pair ``bt.infer.mcmc`` at the most chains / NumPyro at the most chains
runs ``--repeats`` times (the spread on a shared machine); the other rows run once.
``--gradients eager,compiled`` runs one ``bt.infer.mcmc`` row per ``gradient=`` option
(default ``auto``), ``--kernel-compile false`` keeps the NUTS kernel eager.

Models (float64, 1 thread):
    eight_schools  Rubin's eight schools, non-centred: mu ~ N(0, 5), tau ~ HalfCauchy(5),
                   eta_j ~ N(0, 1), y_j ~ N(mu + tau eta_j, sigma_j)  (10 parameters)
    logistic       logistic regression on scikit-learn's breast cancer (569 x 30,
                   standardised), w, b ~ N(0, 1)  (31 parameters)
    grunfeld       varying-intercept regression on statsmodels' grunfeld (220 firm-years,
                   11 firms): log invest ~ N(mu_a + sigma_a eta_firm + x beta, sigma), x =
                   standardised log value and log capital, non-centred  (16 parameters;
                   overhead only)

Usage::

    OMP_NUM_THREADS=1 python benchmarks/models.py [--parts overhead,peers]
        [--models eight_schools,logistic,grunfeld] [--chains 1,4,128]
        [--peer-models eight_schools,logistic] [--num-warmup 500] [--num-samples 1000]
        [--pyro-warmup 250] [--pyro-samples 500] [--numpyro-chains 1,4] [--repeats 2]
        [--hand-chains 4,128] [--skip-pyro] [--skip-numpyro] [--quick] [--seed 0]
        [--no-compiled] [--gradients auto] [--kernel-compile auto]
        [--json out.json]
    python benchmarks/models.py --report a.json,b.json   # merge the tables of several runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

# One thread for every framework (set before jax / torch are imported).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributions as D  # noqa: E402
from mcmc import JaxCompileClock, breast_cancer, fmt, initial_positions, min_bulk_ess  # noqa: E402
from torch import Tensor  # noqa: E402

import bayestorch as bt  # noqa: E402
from bayestorch.infer import ModelDensity  # noqa: E402
from bayestorch.mcmc.compiled import compile_backend  # noqa: E402
from bayestorch.testing.targets import EightSchools, LogisticRegression  # noqa: E402
from bayestorch.utils.autograd import CompiledLogProb, log_prob_and_grad  # noqa: E402

MODELS = ("eight_schools", "logistic", "grunfeld")


# ---------------------------------------------------------------------------- models


@dataclass
class Case:
    """One model in every language: the bayestorch model and its arguments, the hand-written
    unconstrained density (same coordinate order as ``ModelDensity``), and builders of the
    Pyro and NumPyro models (``None`` where not written)."""

    name: str
    description: str
    model: Callable
    args: tuple
    hand: Callable[[Tensor], Tensor]  # (chains, dim) -> (chains,)
    pyro: Callable[[], tuple[Callable, tuple]] | None = None
    numpyro: Callable[[], tuple[Callable, tuple]] | None = None


def eight_schools_model(sigma: Tensor, y: Tensor) -> None:
    mu = bt.sample("mu", D.Normal(0.0, 5.0))
    tau = bt.sample("tau", D.HalfCauchy(5.0))
    with bt.plate("school", len(sigma)):
        eta = bt.sample("eta", D.Normal(0.0, 1.0))
        bt.sample("y", D.Normal(mu + tau * eta, sigma), obs=y)


def eight_schools_case() -> Case:
    y, sigma = torch.tensor(EightSchools.y), torch.tensor(EightSchools.sigma)

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        def model(sigma, y):
            mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = pyro.sample("tau", dist.HalfCauchy(5.0))
            with pyro.plate("school", len(sigma)):
                eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
                pyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

        return model, (sigma, y)

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model(sigma, y):
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
            with numpyro.plate("school", len(sigma)):
                eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
                numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

        return model, (jnp.asarray(sigma.numpy()), jnp.asarray(y.numpy()))

    return Case(
        "eight_schools",
        "eight schools, non-centred (10 parameters)",
        eight_schools_model,
        (sigma, y),
        EightSchools(centred=False).log_prob,
        pyro_model,
        numpyro_model,
    )


def logistic_model(x: Tensor, y: Tensor) -> None:
    w = bt.sample("w", D.Independent(D.Normal(torch.zeros(x.shape[1]), 1.0), 1))
    b = bt.sample("b", D.Normal(0.0, 1.0))
    with bt.plate("data", x.shape[0]):
        bt.sample("y", D.Bernoulli(logits=x @ w + b), obs=y)


def logistic_case() -> Case:
    x_np, y_np = breast_cancer()
    x, y = torch.as_tensor(x_np), torch.as_tensor(y_np)

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        def model(x, y):
            w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1]), 1.0).to_event(1))
            b = pyro.sample("b", dist.Normal(0.0, 1.0))
            with pyro.plate("data", x.shape[0]):
                pyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

        return model, (x, y)

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model(x, y):
            w = numpyro.sample("w", dist.Normal(jnp.zeros(x.shape[1]), 1.0).to_event(1))
            b = numpyro.sample("b", dist.Normal(0.0, 1.0))
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

        return model, (jnp.asarray(x_np), jnp.asarray(y_np))

    return Case(
        "logistic",
        f"logistic regression, breast cancer ({x.shape[0]} x {x.shape[1]} + 1 parameters)",
        logistic_model,
        (x, y),
        LogisticRegression(x, y).log_prob,
        pyro_model,
        numpyro_model,
    )


def grunfeld_model(firm: Tensor, x: Tensor, y: Tensor, num_firms: int) -> None:
    mu_a = bt.sample("mu_a", D.Normal(0.0, 5.0))
    sigma_a = bt.sample("sigma_a", D.HalfNormal(1.0))
    beta = bt.sample("beta", D.Independent(D.Normal(torch.zeros(x.shape[1]), 1.0), 1))
    sigma = bt.sample("sigma", D.HalfNormal(1.0))
    with bt.plate("firm", num_firms):
        eta = bt.sample("eta", D.Normal(0.0, 1.0))
    alpha = mu_a + sigma_a * eta
    with bt.plate("obs", len(y)):
        bt.sample("y", D.Normal(alpha[firm] + x @ beta, sigma), obs=y)


class GrunfeldDensity:
    """The varying-intercept model by hand: ``z = (mu_a, log sigma_a, beta (2), log sigma,
    eta (firms))``, normalising constants dropped, log-Jacobians of the two exps added."""

    def __init__(self, firm: Tensor, x: Tensor, y: Tensor) -> None:
        self.firm, self.x, self.y = firm, x, y

    def __call__(self, z: Tensor) -> Tensor:
        mu_a, log_sigma_a, beta, log_sigma = z[:, 0], z[:, 1], z[:, 2:4], z[:, 4]
        eta = z[:, 5:]
        sigma_a, sigma = log_sigma_a.exp(), log_sigma.exp()
        lp = -0.5 * (mu_a / 5.0) ** 2 - 0.5 * sigma_a**2 + log_sigma_a
        lp = lp - 0.5 * (beta**2).sum(-1) - 0.5 * sigma**2 + log_sigma
        lp = lp - 0.5 * (eta**2).sum(-1)
        alpha = mu_a[:, None] + sigma_a[:, None] * eta  # (chains, firms)
        mean = alpha[:, self.firm] + beta @ self.x.T  # (chains, n)
        resid = (self.y - mean) / sigma[:, None]
        return lp - 0.5 * (resid**2).sum(-1) - len(self.y) * log_sigma


def grunfeld_case() -> Case:
    import statsmodels.api as sm

    data = sm.datasets.grunfeld.load_pandas().data
    codes, firms = data["firm"].factorize()
    x = np.log(data[["value", "capital"]].to_numpy(dtype=np.float64))
    x = (x - x.mean(0)) / x.std(0)
    y = np.log(data["invest"].to_numpy(dtype=np.float64))
    y = (y - y.mean()) / y.std()
    firm, x_t, y_t = torch.as_tensor(codes), torch.as_tensor(x), torch.as_tensor(y)
    return Case(
        "grunfeld",
        f"varying intercepts, grunfeld ({len(y)} firm-years, {len(firms)} firms; "
        f"{5 + len(firms)} parameters)",
        grunfeld_model,
        (firm, x_t, y_t, len(firms)),
        GrunfeldDensity(firm, x_t, y_t),
    )


CASES = {"eight_schools": eight_schools_case, "logistic": logistic_case, "grunfeld": grunfeld_case}


def check_same_model(case: Case, density: ModelDensity, seed: int) -> float:
    """Max spread over random points of ``model - hand`` (a constant when they agree)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(64, density.dim, generator=g)
    diff = density.log_prob(z) - case.hand(z)
    spread = float(diff.max() - diff.min())
    if not spread < 1e-8 * (1 + float(diff.abs().max())):
        raise AssertionError(
            f"{case.name}: the model and the hand-written density differ by more than a "
            f"constant (spread {spread:.3g}): they are not the same model"
        )
    return spread


# --------------------------------------------------------------------- part 1: overhead


def interleaved_ratio(
    fns: dict[str, Callable[[], object]], min_time: float, blocks: int
) -> dict[str, dict[str, float]]:
    """Mean wall / CPU time of one call of each function, timed in interleaved blocks, and
    the median over blocks of each one's ratio to the first."""
    for fn in fns.values():
        fn()
    calls = {}
    for name, fn in fns.items():  # calibrate: a block of each lasts about min_time / blocks
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - t0 > min_time / blocks:
                break
            n *= 2
        calls[name] = n
    walls = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            n = calls[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                fn()
            walls[name].append((time.perf_counter() - t0) / n)
            cpus[name].append((time.process_time() - c0) / n)
    first = next(iter(fns))
    out = {}
    for name in fns:
        out[name] = {
            "wall_us": statistics.median(walls[name]) * 1e6,
            "cpu_us": statistics.median(cpus[name]) * 1e6,
            "ratio": statistics.median(w / b for w, b in zip(walls[name], walls[first])),
            "ratio_cpu": statistics.median(c / b for c, b in zip(cpus[name], cpus[first])),
        }
    return out


def overhead(case: Case, chains: list[int], args: argparse.Namespace) -> list[dict]:
    density = ModelDensity(case.model, *case.args)
    spread = check_same_model(case, density, args.seed)
    fast = ModelDensity(case.model, *case.args)
    fast.gradient_mode = "compiled"  # ModelDensity.value_and_grad: traced + torch.compile
    rows = []
    for c in chains:
        z = torch.as_tensor(initial_positions(c, density.dim, args.seed))
        fns = {
            "hand": lambda z=z: log_prob_and_grad(case.hand, z),
            "model": lambda z=z: log_prob_and_grad(density.log_prob, z),
        }
        compile_cpu = {}
        if not args.no_compiled:
            hand_compiled = CompiledLogProb(case.hand, backend=compile_backend())
            for name, fn in (("model_compiled", fast), ("hand_compiled", hand_compiled)):
                with Clock() as clock:  # trace (model) and compile, once per chain count
                    log_prob_and_grad(fn, z)
                compile_cpu[name] = clock.cpu
                fns[name] = lambda z=z, fn=fn: log_prob_and_grad(fn, z)
            expected = log_prob_and_grad(density.log_prob, z)
            got = log_prob_and_grad(fast, z)
            error = max(float((a - b).abs().max()) for a, b in zip(got, expected))
        timed = interleaved_ratio(fns, args.min_time, args.blocks)
        row = {
            "model": case.name,
            "chains": c,
            "hand_us": timed["hand"]["wall_us"],
            "model_us": timed["model"]["wall_us"],
            "hand_cpu_us": timed["hand"]["cpu_us"],
            "model_cpu_us": timed["model"]["cpu_us"],
            "ratio": timed["model"]["ratio"],
            "ratio_cpu": timed["model"]["ratio_cpu"],
            "constant_spread": spread,
        }
        line = (
            f"  {case.name:14s} x{c:<4d} hand {row['hand_us']:8.0f} µs  model "
            f"{row['model_us']:8.0f} µs  ratio {row['ratio']:.2f} (CPU {row['ratio_cpu']:.2f})"
        )
        for name in compile_cpu:
            row[f"{name}_us"] = timed[name]["wall_us"]
            row[f"{name}_cpu_us"] = timed[name]["cpu_us"]
            row[f"{name}_ratio"] = timed[name]["ratio"]
            row[f"{name}_ratio_cpu"] = timed[name]["ratio_cpu"]
            row[f"{name}_compile_cpu_s"] = compile_cpu[name]
            line += f"  {name} {row[f'{name}_cpu_us']:6.0f} µs CPU ({row[f'{name}_ratio_cpu']:.2f})"
        if compile_cpu:
            row["model_compiled_max_error"] = error
            row["model_compiled_over_hand_compiled_cpu"] = (
                row["model_compiled_ratio_cpu"] / row["hand_compiled_ratio_cpu"]
            )
        rows.append(row)
        print(line, flush=True)
    return rows


# ------------------------------------------------------------------------ part 2: peers


@dataclass
class Row:
    model: str
    method: str
    chains: int
    draws: int  # per chain
    warmup: int
    wall: float  # cold: everything the user waits for
    cpu: float  # process CPU seconds (the fairer clock on a machine shared with other jobs)
    ess: float
    wall_warm: float | None = None  # without JAX's compilation (NumPyro); = wall elsewhere
    cpu_warm: float | None = None
    divergent: int | None = None
    grads: float | None = None  # leapfrog steps the batch executed (max over chains)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wall_warm = self.wall if self.wall_warm is None else self.wall_warm
        self.cpu_warm = self.cpu if self.cpu_warm is None else self.cpu_warm

    def rate(self, clock: str, warm: bool = False) -> float:
        """ESS per second of ``clock`` (``"wall"`` or ``"cpu"``), cold or warm."""
        return self.ess / getattr(self, clock + ("_warm" if warm else ""))


class Clock:
    """Wall and process-CPU seconds of a ``with`` block."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def stacked(draws: dict, chains: int, num: int) -> Tensor:
    """Named draws ``{name: (chains, draws, *shape)}`` -> ``(chains, draws, scalars)``."""
    parts = [torch.as_tensor(np.asarray(v)).reshape(chains, num, -1) for v in draws.values()]
    return torch.cat(parts, -1).double()


def executed_steps(result) -> float:
    """Leapfrog steps the batch executed: per transition, the max over chains."""
    steps = [result.warmup_stats.get("num_steps"), result.stats.get("num_steps")]
    return sum(float(s.max(0).values.sum()) for s in steps if s is not None)


def run_bt_model(
    case: Case, chains: int, args: argparse.Namespace, seed: int, gradient: str = "auto"
) -> Row:
    density_dim = ModelDensity(case.model, *case.args).dim
    init = torch.as_tensor(initial_positions(chains, density_dim, args.seed))
    g = torch.Generator().manual_seed(seed)
    with Clock() as clock:
        posterior = bt.infer.mcmc(
            case.model,
            *case.args,
            kernel="nuts",
            chains=chains,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            init=init,
            generator=g,
            progress=False,
            gradient=gradient,
            kernel_kwargs={"compile": args.kernel_compile},
        )
    ess = min_bulk_ess(stacked(posterior.draws, chains, args.num_samples))
    return Row(
        case.name,
        "bt.infer.mcmc NUTS (model)" + ("" if gradient == "auto" else f", gradient={gradient}"),
        chains,
        args.num_samples,
        args.num_warmup,
        clock.wall,
        clock.cpu,
        ess,
        divergent=posterior.num_divergent,
        grads=executed_steps(posterior.result),
    )


def run_bt_hand(case: Case, chains: int, args: argparse.Namespace, seed: int) -> Row:
    density_dim = ModelDensity(case.model, *case.args).dim
    init = torch.as_tensor(initial_positions(chains, density_dim, args.seed))
    g = torch.Generator().manual_seed(seed)
    with Clock() as clock:
        result = bt.mcmc.sample(
            case.hand,
            init,
            kernel="nuts",
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            generator=g,
            progress=False,
        )
    return Row(
        case.name,
        "bt.mcmc.sample NUTS (hand-written)",
        chains,
        args.num_samples,
        args.num_warmup,
        clock.wall,
        clock.cpu,
        min_bulk_ess(result.samples),
        divergent=int(result.num_divergent.sum()),
        grads=executed_steps(result),
    )


def run_pyro(case: Case, chains: int, args: argparse.Namespace, seed: int) -> Row:
    import pyro
    from pyro.infer import MCMC, NUTS

    model, model_args = case.pyro()
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    kernel = NUTS(model, target_accept_prob=0.8, max_tree_depth=10)
    mcmc = MCMC(
        kernel,
        num_samples=args.pyro_samples,
        warmup_steps=args.pyro_warmup,
        num_chains=chains,
        disable_progbar=True,
    )
    with warnings.catch_warnings(), Clock() as clock:
        warnings.simplefilter("ignore")
        mcmc.run(*model_args)
    draws = {k: v.detach() for k, v in mcmc.get_samples(group_by_chain=True).items()}
    ess = min_bulk_ess(stacked(draws, chains, args.pyro_samples))
    divergent = mcmc.diagnostics().get("divergences", {})
    return Row(
        case.name,
        "pyro NUTS",
        chains,
        args.pyro_samples,
        args.pyro_warmup,
        clock.wall,
        clock.cpu,
        ess,
        divergent=sum(len(v) for v in divergent.values()) if divergent else None,
    )


def run_numpyro(case: Case, chains: int, args: argparse.Namespace, seed: int) -> Row:
    """One ``MCMC.run``; warm = wall minus JAX's tracing and compilation during it."""
    import jax
    from numpyro.infer import MCMC, NUTS

    model, model_args = case.numpyro()
    jax_clock = JaxCompileClock.get()
    compile0 = jax_clock.read()
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.8, max_tree_depth=10),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    with Clock() as clock:
        mcmc.run(jax.random.PRNGKey(seed), *model_args, extra_fields=("diverging", "num_steps"))
        draws = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(draws)
    compile_wall, compile_cpu = (b - a for a, b in zip(compile0, jax_clock.read()))
    ess = min_bulk_ess(stacked(draws, chains, args.num_samples))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return Row(
        case.name,
        "numpyro NUTS" + (" (vectorized)" if chains > 1 else ""),
        chains,
        args.num_samples,
        args.num_warmup,
        clock.wall,
        clock.cpu,
        ess,
        wall_warm=clock.wall - compile_wall,
        cpu_warm=clock.cpu - compile_cpu,
        divergent=int(np.asarray(extra["diverging"]).sum()),
        extra={"compile_s": compile_wall, "compile_cpu_s": compile_cpu},
    )


# ------------------------------------------------------------------------------ report


def overhead_table(rows: list[dict]) -> str:
    compiled = any("model_compiled_us" in r for r in rows)
    lines = [
        "| model | chains | hand-written µs / grad, wall (CPU) | model µs / grad, wall (CPU) "
        "| ratio, wall (CPU) |"
        + (
            " model compiled µs, CPU | ratio to hand eager, CPU | hand compiled µs, CPU "
            "| model compiled / hand compiled, CPU | trace + compile s, CPU (model; hand) |"
            if compiled
            else ""
        ),
        "|---|---:|---:|---:|---:|" + ("---:|---:|---:|---:|---:|" if compiled else ""),
    ]
    for r in rows:
        line = (
            f"| {r['model']} | {r['chains']} | {r['hand_us']:.0f} ({r['hand_cpu_us']:.0f}) "
            f"| {r['model_us']:.0f} ({r['model_cpu_us']:.0f}) "
            f"| {r['ratio']:.2f} ({r['ratio_cpu']:.2f}) |"
        )
        if compiled and "model_compiled_us" in r:
            line += (
                f" {r['model_compiled_cpu_us']:.0f} | {r['model_compiled_ratio_cpu']:.2f} "
                f"| {r['hand_compiled_cpu_us']:.0f} "
                f"| {r['model_compiled_over_hand_compiled_cpu']:.2f} "
                f"| {r['model_compiled_compile_cpu_s']:.1f}; "
                f"{r['hand_compiled_compile_cpu_s']:.1f} |"
            )
        elif compiled:
            line += " - | - | - | - | - |"
        lines.append(line)
    return "\n".join(lines)


def peers_table(rows: list[Row]) -> str:
    lines = [
        "| model | method | chains | warm-up + draws | wall s (CPU s) | compile s | min bulk ESS "
        "| ESS/s cold | ESS/s warm | ESS/CPU-s cold | ESS/CPU-s warm | CPU µs / leapfrog step "
        "| divergent |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        step = r.cpu / r.grads * 1e6 if r.grads else None
        lines.append(
            f"| {r.model} | {r.method} | {r.chains} | {r.warmup} + {r.draws} "
            f"| {fmt(r.wall)} ({fmt(r.cpu)}) | {fmt(r.extra.get('compile_s'))} | {fmt(r.ess)} "
            f"| {fmt(r.rate('wall'))} | {fmt(r.rate('wall', True))} | {fmt(r.rate('cpu'))} "
            f"| {fmt(r.rate('cpu', True))} | {fmt(step)} "
            f"| {r.divergent if r.divergent is not None else '-'} |"
        )
    return "\n".join(lines)


def _both(mine: Row, other: Row, mine_warm: bool, other_warm: bool) -> str:
    """``x (y CPU)``: ESS/s ratio on the wall clock and on the CPU clock."""
    wall = mine.rate("wall", mine_warm) / other.rate("wall", other_warm)
    cpu = mine.rate("cpu", mine_warm) / other.rate("cpu", other_warm)
    return f"{wall:.2f}x ({cpu:.2f}x CPU)"


def ratios_table(rows: list[Row]) -> str:
    """Per model: model vs hand-written at equal chains (CPU per leapfrog step), and the
    best bayestorch model row vs NumPyro and Pyro, per seed (repeat) of the pair; ESS/s ratios on
    the wall clock and (in brackets) on the CPU clock."""
    lines = ["| model | comparison | ratio |", "|---|---|---:|"]
    for name in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == name]
        model_rows = [r for r in mine if r.method.startswith("bt.infer")]
        hand_rows = [r for r in mine if r.method.startswith("bt.mcmc")]
        for m in model_rows:
            for h in hand_rows:
                if h.chains == m.chains and h.extra.get("seed") == m.extra.get("seed"):
                    lines.append(
                        f"| {name} | model / hand-written, CPU time per leapfrog step, "
                        f"{m.chains} chains | {(m.cpu / m.grads) / (h.cpu / h.grads):.2f}x |"
                    )
                    lines.append(
                        f"| {name} | model / hand-written, ESS/s, {m.chains} chains "
                        f"| {_both(m, h, False, False)} |"
                    )
        for seed in sorted({r.extra.get("seed", 0) for r in model_rows}):
            ours = [r for r in model_rows if r.extra.get("seed", 0) == seed]
            peers = [
                r for r in mine if r.method.startswith("numpyro") and r.extra.get("seed", 0) == seed
            ]
            if not ours or not peers:
                continue
            best = max(ours, key=lambda r: r.rate("cpu"))
            warm = max(peers, key=lambda r: r.rate("cpu", True))
            cold = max(peers, key=lambda r: r.rate("cpu"))
            lines.append(
                f"| {name} | bt model {best.chains} chains / NumPyro warm {warm.chains} "
                f"chains, seed {seed} | {_both(best, warm, False, True)} |"
            )
            lines.append(
                f"| {name} | bt model {best.chains} chains / NumPyro cold {cold.chains} "
                f"chains, seed {seed} | {_both(best, cold, False, False)} |"
            )
            for p in peers:
                same = [r for r in ours if r.chains == p.chains]
                if same:
                    lines.append(
                        f"| {name} | bt model / NumPyro warm, both {p.chains} chains, seed "
                        f"{seed} | {_both(same[0], p, False, True)} |"
                    )
        pyro = [r for r in mine if r.method.startswith("pyro")]
        if pyro and model_rows:
            best = max(model_rows, key=lambda r: r.rate("cpu"))
            p = max(pyro, key=lambda r: r.rate("cpu"))
            lines.append(
                f"| {name} | bt model {best.chains} chains / Pyro {p.chains} chain(s) "
                f"| {_both(best, p, False, False)} |"
            )
    return "\n".join(lines)


# -------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", type=str, default="overhead,peers")
    p.add_argument("--models", type=str, default=",".join(MODELS), help="overhead part")
    p.add_argument("--peer-models", type=str, default="eight_schools,logistic")
    p.add_argument("--chains", type=str, default="1,4,128", help="bayestorch chain counts")
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--pyro-warmup", type=int, default=250, help="Pyro is slow: fewer")
    p.add_argument("--pyro-samples", type=int, default=500)
    p.add_argument("--pyro-chains", type=str, default="1")
    p.add_argument("--numpyro-chains", type=str, default="1,4")
    p.add_argument("--repeats", type=int, default=2, help="of the bt / NumPyro pair (>= 2)")
    p.add_argument("--skip-pyro", action="store_true")
    p.add_argument("--skip-numpyro", action="store_true")
    p.add_argument(
        "--hand-chains", type=str, default="4,128", help="hand-written NUTS rows ('' for none)"
    )
    p.add_argument(
        "--no-compiled",
        action="store_true",
        help="overhead: no compiled columns (ModelDensity.value_and_grad, CompiledLogProb)",
    )
    p.add_argument(
        "--gradients",
        type=str,
        default="auto",
        help="peers: bt.infer.mcmc's gradient= options, one model row each (e.g. eager,compiled)",
    )
    p.add_argument(
        "--kernel-compile",
        type=lambda v: {"true": True, "false": False, "auto": "auto"}[v.lower()],
        default="auto",
        help="peers: the NUTS kernel's compile= of the bt.infer.mcmc rows (true/false/auto)",
    )
    p.add_argument("--min-time", type=float, default=2.0, help="overhead: seconds per fn")
    p.add_argument("--blocks", type=int, default=7, help="overhead: interleaved blocks")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (~5 min): 100 + 200 iterations, 1 repeat, no Pyro, short timings",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=str, default=None, help="also write the results here")
    p.add_argument(
        "--report", type=str, default=None, help="comma-separated JSON files: merged tables"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.num_warmup, args.num_samples, args.repeats = 100, 200, 1
        args.skip_pyro, args.min_time, args.blocks = True, 0.3, 3
    return args


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def names(text: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in CASES]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {MODELS}")
    return chosen


def peer_jobs(
    case: Case, args: argparse.Namespace, have_pyro: bool, have_numpyro: bool, repeat: int
) -> list[tuple[str, Callable[[int], Row]]]:
    """The runs of one repeat: every row in the first, then only the pair (``bt.infer.mcmc``
    at the most chains, NumPyro at the most chains). Cheap rows first."""
    chains, hand = ints(args.chains), ints(args.hand_chains)
    numpyro_chains = ints(args.numpyro_chains) if have_numpyro and case.numpyro else []
    pyro_chains = ints(args.pyro_chains) if have_pyro and case.pyro else []
    if repeat > 0:
        chains, hand, pyro_chains = chains[-1:], [], []
        numpyro_chains = numpyro_chains[-1:]
    jobs = [(f"pyro x{c}", partial(run_pyro, case, c, args)) for c in pyro_chains]
    many = []  # bayestorch at more chains than NumPyro runs: last
    for c in chains:
        bt_jobs = [(f"bt hand x{c}", partial(run_bt_hand, case, c, args))] if c in hand else []
        for gradient in [g.strip() for g in args.gradients.split(",") if g.strip()]:
            bt_jobs.append(
                (
                    f"bt model {gradient} x{c}",
                    partial(run_bt_model, case, c, args, gradient=gradient),
                )
            )
        (many if c > max(numpyro_chains, default=0) else jobs).extend(bt_jobs)
    jobs += [(f"numpyro x{c}", partial(run_numpyro, case, c, args)) for c in numpyro_chains]
    return jobs + many


def machine_state(versions: dict) -> str:
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), {load}; "
        f"torch threads {torch.get_num_threads()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report:
        return report(args.report.split(","))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # the models' Python-number parameters, Pyro's too
    parts = {p.strip() for p in args.parts.split(",")}
    have_pyro = have_numpyro = False
    if "peers" in parts and not args.skip_pyro:
        try:
            import pyro  # noqa: F401

            have_pyro = True
        except ImportError:
            print("pyro-ppl is not installed: skipping the Pyro rows")
    if "peers" in parts and not args.skip_numpyro:
        try:
            import numpyro

            numpyro.enable_x64()
            numpyro.set_host_device_count(1)
            have_numpyro = True
        except ImportError:
            print("numpyro / jax are not installed: skipping the NumPyro rows")
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if have_pyro:
        import pyro

        versions["pyro"] = pyro.__version__
    if have_numpyro:
        import jax
        import numpyro

        versions["numpyro"], versions["jax"] = numpyro.__version__, jax.__version__
    out: dict = {"args": vars(args), "versions": versions, "state_start": machine_state(versions)}
    print(out["state_start"], flush=True)

    if "overhead" in parts:
        print("\n# overhead: log_prob_and_grad, model / hand-written (float64, 1 thread)")
        out["overhead"] = []
        for name in names(args.models):
            case = CASES[name]()
            out["overhead"] += overhead(case, ints(args.chains), args)
            write_json(args, out)
        out["overhead_table"] = overhead_table(out["overhead"])
        print("\n" + out["overhead_table"], flush=True)

    if "peers" in parts:
        print(
            f"\n# peers: NUTS, {args.num_warmup} warm-up + {args.num_samples} draws per chain "
            f"(Pyro {args.pyro_warmup} + {args.pyro_samples}); repeats of the bayestorch / "
            f"NumPyro pair: {args.repeats}"
        )
        rows: list[Row] = []
        for name in names(args.peer_models):
            case = CASES[name]()
            print(f"\n## {case.description}", flush=True)
            for repeat in range(args.repeats):
                for label, job in peer_jobs(case, args, have_pyro, have_numpyro, repeat):
                    row = job(args.seed + repeat)
                    row.extra["seed"] = args.seed + repeat
                    rows.append(row)
                    print(
                        f"  {label:16s} repeat {repeat}: wall {row.wall:8.2f} s"
                        + (f" (warm {row.wall_warm:.2f} s)" if row.wall_warm != row.wall else "")
                        + f"  CPU {row.cpu:8.2f} s  min bulk ESS {row.ess:9.1f}  ESS/s "
                        + f"{row.rate('wall'):9.1f} (warm {row.rate('wall', True):9.1f})  "
                        + f"ESS/CPU-s {row.rate('cpu'):9.1f} (warm {row.rate('cpu', True):9.1f})"
                        + f"  divergent {row.divergent}",
                        flush=True,
                    )
                    out["peers"] = [asdict(r) for r in rows]
                    write_json(args, out)
        out["peers_table"] = peers_table(rows)
        out["ratios_table"] = ratios_table(rows)
        print("\n" + out["peers_table"] + "\n\n" + out["ratios_table"], flush=True)

    out["state_end"] = machine_state(versions)
    print("\n" + out["state_end"])
    write_json(args, out)
    return out


def report(paths: list[str]) -> dict:
    """Merge the JSON files of several runs (e.g. one per model) into one set of tables."""
    fields = set(Row.__dataclass_fields__)
    over, rows, states = [], [], []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        over += data.get("overhead", [])
        for r in data.get("peers", []):
            row = Row(**{k: v for k, v in r.items() if k in fields})
            if "seed" not in row.extra:  # files written before rows named their seed
                row.extra["seed"] = data["args"]["seed"] + row.extra.get("repeat", 0)
            rows.append(row)
        states += [data.get("state_start"), data.get("state_end")]
    out = {"overhead_table": overhead_table(over) if over else ""}
    if rows:
        out["peers_table"], out["ratios_table"] = peers_table(rows), ratios_table(rows)
    print("\n\n".join(v for v in out.values() if v))
    print("\nmachine state at the start and end of each run:")
    print("\n".join(f"- {s}" for s in states if s))
    return out


def write_json(args: argparse.Namespace, out: dict) -> None:
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=float)


if __name__ == "__main__":
    sys.exit(main() and 0)
