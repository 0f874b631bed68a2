"""ESS per second of NUTS / ChEES-HMC: bayestorch vs Pyro NUTS vs NumPyro NUTS, side by side.

All samplers see the *same* log density in float64 (the bayestorch test targets; the JAX copy
is written line for line from them) and the same initial positions (uniform on [-2, 2], as
Stan does). Defaults everywhere: diagonal mass matrix adapted in Stan's windows, dual-averaging
step size to an acceptance of 0.8, max tree depth 10.

Targets:
    gaussian      100-d ill-conditioned Gaussian, variances log-spaced over 1e-4..1
                  (``bayestorch.testing.targets.ill_conditioned_gaussian(100)``)
    eight_schools eight schools, non-centred (10 unconstrained parameters)
    logistic      Bayesian logistic regression on scikit-learn's breast-cancer data,
                  features standardised, N(0, 1) prior (30 weights + intercept)

Rows:
    bayestorch NUTS            ``bt.mcmc.sample(kernel="nuts")`` at each of ``--chains``
    bayestorch ChEES-HMC       ``bt.mcmc.sample(kernel="chees")`` at ``--chees-chains``
    ... (compiled)             ``compile=True`` (one graph per transition), at
                               ``--compiled-chains`` (NUTS) / ``--compiled-chees-chains``
    ... (compiled gradient)    ChEES-HMC with an eager trajectory and the density wrapped in
                               ``CompiledLogProb`` (``--compiled-gradient-chees-chains``)
    pyro NUTS (jit off / on)   1 chain, the model ``x ~ flat; factor(log p(x))``
                               (``jit_compile`` only acts on Pyro's model interface, not
                               on ``potential_fn``), ``--pyro-warmup`` + ``--pyro-samples``
    numpyro NUTS               1 chain, and ``--numpyro-chains`` chains with
                               ``chain_method="vectorized"``, ``potential_fn`` interface

Columns: wall and process-CPU time (CPU seconds are the fairer clock on a machine shared with
other jobs), min over parameters of the bulk ESS (Vehtari et al. 2021, the same function for
every row), and ESS/s twice: *cold* counts everything a user waits for (JIT compilation
included), *warm* excludes one-time compilation. For NumPyro warm = the run minus the time JAX
spent tracing, lowering and compiling during it (``JaxCompileClock``, from ``jax.monitoring``);
a second ``MCMC.run`` would not do, NumPyro recompiles its sampling loop on every ``run``. For
the eager rows (bayestorch, Pyro jit off) cold = warm; for Pyro jit on the trace is part of
every run (a new ``MCMC`` retraces), so warm = cold too (the trace is small next to the run).

Overhead: time per leapfrog step of bayestorch NUTS (wall time of the whole run / leapfrog
steps the batch executed: per transition the batch runs max over chains of ``num_steps``)
divided by one bare ``bayestorch.utils.log_prob_and_grad`` evaluation at the same chain count
(wall and CPU); per-transition time is printed as well. Goals (issue 3): >= 10x Pyro, >= NumPyro
cold, >= NumPyro warm at equal chain counts; overhead ratio <= 1.5.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/mcmc.py [--targets gaussian,eight_schools,logistic]
        [--num-warmup 500] [--num-samples 500] [--chains 1,4,128] [--chees-chains 128]
        [--compiled-chains 1,4,128] [--compiled-chees-chains 128]
        [--compiled-gradient-chees-chains 128]
        [--pyro-warmup 250] [--pyro-samples 250] [--numpyro-chains 1,4] [--pyro-jit off,on]
        [--skip-pyro] [--skip-numpyro] [--repeats 1] [--seed 0] [--device cpu]
        [--threads 1] [--json out.json]
    python benchmarks/mcmc.py --report a.json,b.json   # merge the tables of several runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# One thread for every framework (set before jax / torch are imported).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import bayestorch  # noqa: E402
from bayestorch.mcmc import diagnostics  # noqa: E402
from bayestorch.mcmc import sample as bt_sample  # noqa: E402
from bayestorch.testing.targets import (  # noqa: E402
    EightSchools,
    LogisticRegression,
    ill_conditioned_gaussian,
)
from bayestorch.utils.autograd import CompiledLogProb, log_prob_and_grad  # noqa: E402

TARGETS = ("gaussian", "eight_schools", "logistic")
EXTRA_TARGETS = ("year_regression",)  # run with --targets year_regression


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    dim: int
    log_prob: Callable[[Tensor], Tensor]  # torch, (chains, dim) -> (chains,)
    jax_log_prob: Callable | None  # jax, (dim,) -> ()  (built lazily)
    description: str


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return x.astype(np.float64), data.target.astype(np.float64)


def make_target(name: str, device: torch.device, with_jax: bool) -> Target:
    like = dict(dtype=torch.float64, device=device)
    if name == "gaussian":
        gauss = ill_conditioned_gaussian(100).to(**like)
        jax_fn = None
        if with_jax:
            import jax.numpy as jnp

            precision = jnp.asarray(gauss.precision.cpu().numpy())
            mean = jnp.asarray(gauss.mean.cpu().numpy())

            def jax_fn(x):
                d = x - mean
                return -0.5 * jnp.sum((d @ precision) * d, -1)

        return Target(name, 100, gauss.log_prob, jax_fn, "100-d Gaussian, condition number 1e4")
    if name == "eight_schools":
        schools = EightSchools(centred=False)
        jax_fn = None
        if with_jax:
            import jax.numpy as jnp

            y, sigma = jnp.asarray(EightSchools.y), jnp.asarray(EightSchools.sigma)

            def jax_fn(x):
                mu, log_tau, eta = x[..., 0], x[..., 1], x[..., 2:]
                tau = jnp.exp(log_tau)
                lp = -0.5 * (mu / 5.0) ** 2 - jnp.log1p((tau / 5.0) ** 2) + log_tau
                theta = mu[..., None] + tau[..., None] * eta
                lp = lp - 0.5 * jnp.sum(eta**2, -1)
                return lp - 0.5 * jnp.sum(((y - theta) / sigma) ** 2, -1)

        return Target(name, 10, schools.log_prob, jax_fn, "eight schools, non-centred (10-d)")
    if name == "logistic":
        x_np, y_np = breast_cancer()
        model = LogisticRegression(torch.as_tensor(x_np, **like), torch.as_tensor(y_np, **like))
        jax_fn = None
        if with_jax:
            import jax
            import jax.numpy as jnp

            features, labels = jnp.asarray(x_np), jnp.asarray(y_np)

            def jax_fn(x):
                w, b = x[..., :-1], x[..., -1:]
                logits = w @ features.T + b
                log_lik = jnp.sum(labels * logits - jax.nn.softplus(logits), -1)
                return log_lik - 0.5 * jnp.sum(x**2, -1)

        desc = f"logistic regression, breast cancer ({x_np.shape[0]} x {x_np.shape[1]} + 1)"
        return Target(name, model.dim, model.log_prob, jax_fn, desc)
    if name == "year_regression":
        return year_regression(like, with_jax)
    raise ValueError(f"unknown target {name!r}; choose from {TARGETS + EXTRA_TARGETS}")


def year_regression(like: dict, with_jax: bool) -> Target:
    """y = a + b * year + noise on 62 years (1950-2011), year *not* centred or scaled:
    the posterior of (a, b) is a ridge with correlation ~ -0.99999, so NUTS with a diagonal
    metric runs trees of depth ~10 (the issue's 3-parameter case; synthetic data, seed 0).
    Parameters (a, b, log sigma); priors a ~ N(0, 1000), b ~ N(0, 10), sigma ~ HalfNormal(10)."""
    rng = np.random.default_rng(0)
    year_np = np.arange(1950.0, 2012.0)
    y_np = -300.0 + 0.16 * year_np + rng.normal(0.0, 1.5, year_np.shape)
    year, y = torch.as_tensor(year_np, **like), torch.as_tensor(y_np, **like)

    def log_prob(x: Tensor) -> Tensor:
        a, b, log_sigma = x[..., 0:1], x[..., 1:2], x[..., 2]
        sigma = log_sigma.exp()
        resid = (y - a - b * year) / sigma.unsqueeze(-1)
        lp = -0.5 * (resid**2).sum(-1) - y.shape[0] * log_sigma
        prior = -0.5 * (a[..., 0] / 1000.0) ** 2 - 0.5 * (b[..., 0] / 10.0) ** 2
        return lp + prior - 0.5 * (sigma / 10.0) ** 2 + log_sigma

    jax_fn = None
    if with_jax:
        import jax.numpy as jnp

        jyear, jy = jnp.asarray(year_np), jnp.asarray(y_np)

        def jax_fn(x):
            a, b, log_sigma = x[..., 0:1], x[..., 1:2], x[..., 2]
            sigma = jnp.exp(log_sigma)
            resid = (jy - a - b * jyear) / sigma[..., None]
            lp = -0.5 * jnp.sum(resid**2, -1) - jy.shape[0] * log_sigma
            prior = -0.5 * (a[..., 0] / 1000.0) ** 2 - 0.5 * (b[..., 0] / 10.0) ** 2
            return lp + prior - 0.5 * (sigma / 10.0) ** 2 + log_sigma

    desc = "linear regression on an unscaled year (62 points, 3 parameters)"
    return Target("year_regression", 3, log_prob, jax_fn, desc)


def initial_positions(chains: int, dim: int, seed: int) -> np.ndarray:
    """Uniform(-2, 2) like Stan; chain c gets the same start whatever the chain count."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(max(chains, 1), dim))


def min_bulk_ess(samples: Tensor) -> float:
    """min over coordinates of the bulk ESS of ``(chains, draws, dim)`` draws."""
    if hasattr(diagnostics, "ess_bulk"):
        return float(diagnostics.ess_bulk(samples.double().cpu()).min())
    import arviz

    return float(np.min(arviz.ess(samples.double().cpu().numpy(), method="bulk")))


# ------------------------------------------------------------------------------ rows


@dataclass
class Row:
    target: str
    method: str
    chains: int
    draws: int  # per chain
    wall_cold: float
    wall_warm: float
    ess: float
    ess_warm: float
    cpu_cold: float = float("nan")  # process CPU seconds (robust to other jobs' load)
    cpu_warm: float = float("nan")
    grads: float | None = None  # leapfrog steps executed (batched: max over chains)
    divergent: int | None = None
    step_size: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ess_per_s_cold(self) -> float:
        return self.ess / self.wall_cold

    @property
    def ess_per_s_warm(self) -> float:
        return self.ess_warm / self.wall_warm

    @property
    def ess_per_cpu_s_cold(self) -> float:
        return self.ess / self.cpu_cold

    @property
    def ess_per_cpu_s_warm(self) -> float:
        return self.ess_warm / self.cpu_warm


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_kernel(
    target: Target, kernel: str, init: Tensor, seed: int
) -> tuple[object, float, float]:
    """A kernel with ``compile=True`` whose trajectory functions are compiled by a few
    transitions at ``init``'s shape: returns it and the wall / CPU seconds that took (the
    compile a user waits for once; inductor's disk cache shortens it in later processes)."""
    from bayestorch.mcmc import NUTS, ChEESHMC

    cls = NUTS if kernel == "nuts" else ChEESHMC
    instance = cls(target.log_prob, compile=True)
    g = torch.Generator(device=init.device).manual_seed(seed + 10_000)
    t0, c0 = time.perf_counter(), time.process_time()
    state = instance.init(init, g)
    for _ in range(3):
        state, _ = instance.step(state, g)
    sync(init.device)
    return instance, time.perf_counter() - t0, time.process_time() - c0


def run_bayestorch(
    target: Target,
    kernel: str,
    chains: int,
    args: argparse.Namespace,
    seed: int,
    compiled: bool = False,
    compiled_gradient: bool = False,
) -> Row:
    """One bayestorch run. ``compiled``: the kernel's ``compile=True`` (the whole transition
    one graph). ``compiled_gradient``: an eager trajectory whose density is wrapped in
    ``bayestorch.utils.CompiledLogProb`` (a fused, vectorised value and gradient)."""
    device = torch.device(args.device)
    init = torch.as_tensor(initial_positions(chains, target.dim, args.seed), device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    compile_wall = compile_cpu = 0.0
    kernel_arg: object = kernel
    kwargs = {} if compiled else {"compile": False}
    log_prob = target.log_prob
    if compiled_gradient:
        from bayestorch.utils import CompiledLogProb

        t0, c0 = time.perf_counter(), time.process_time()
        log_prob = CompiledLogProb(target.log_prob)
        log_prob.value_and_grad(init)  # compiles for this layout
        compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  compile (gradient x{chains}): {compile_wall:.1f} s wall", flush=True)
    if compiled:
        kernel_arg, compile_wall, compile_cpu = compile_kernel(target, kernel, init, seed)
        print(
            f"  compile ({kernel} x{chains}): {compile_wall:.1f} s wall, {compile_cpu:.1f} s "
            "CPU in this process (inductor's workers run in others)",
            flush=True,
        )
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    result = bt_sample(
        log_prob,
        init,
        kernel=kernel_arg,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        generator=g,
        progress=False,
        **kwargs,
    )
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = [result.warmup_stats.get("num_steps"), result.stats.get("num_steps")]
    executed = sum(float(s.max(0).values.sum()) for s in steps if s is not None)
    mean_steps = float(result.stats["num_steps"].double().mean())
    ess = min_bulk_ess(result.samples)
    extra = {"mean_steps_per_draw": mean_steps, "compile_wall_s": compile_wall}
    if "tree_depth" in result.stats:
        extra["max_tree_depth_seen"] = int(result.stats["tree_depth"].max())
    if kernel == "chees":
        extra["trajectory_length"] = float(result.kernel.trajectory_length)
    name = f"bayestorch {'NUTS' if kernel == 'nuts' else 'ChEES-HMC'}"
    suffix = " (compiled)" if compiled else " (compiled gradient)" if compiled_gradient else ""
    return Row(
        target.name,
        name + suffix,
        chains,
        args.num_samples,
        wall + compile_wall,
        wall,
        ess,
        ess,
        cpu + compile_cpu,
        cpu,
        grads=executed,
        divergent=int(result.num_divergent.sum()),
        step_size=float(result.kernel.step_size.double().mean()),
        extra=extra,
    )


def run_pyro(target: Target, jit: bool, args: argparse.Namespace, seed: int) -> Row:
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import MCMC, NUTS

    dim = target.dim
    # A flat site (a masked normal: log density 0, but it can draw Pyro's prototype trace);
    # the whole log density enters through the factor.
    base = pdist.Normal(torch.zeros(dim), 1.0).to_event(1).mask(False)

    def model() -> None:
        x = pyro.sample("x", base)
        pyro.factor("log_density", target.log_prob(x.unsqueeze(0)).squeeze(0))

    init = torch.as_tensor(initial_positions(1, dim, args.seed)[0])
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    kernel = NUTS(
        model,
        jit_compile=jit,
        ignore_jit_warnings=True,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        full_mass=False,
        target_accept_prob=0.8,
        max_tree_depth=10,
    )
    mcmc = MCMC(
        kernel,
        num_samples=args.pyro_samples,
        warmup_steps=args.pyro_warmup,
        initial_params={"x": init},
        num_chains=1,
        disable_progbar=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0, c0 = time.perf_counter(), time.process_time()
        mcmc.run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    draws = mcmc.get_samples(group_by_chain=True)["x"].detach()  # (1, draws, dim)
    ess = min_bulk_ess(draws)
    step = float(kernel.step_size)
    return Row(
        target.name,
        f"pyro NUTS (jit {'on' if jit else 'off'})",
        1,
        args.pyro_samples,
        wall,
        wall,
        ess,
        ess,
        cpu,
        cpu,
        step_size=step,
        extra={"num_warmup": args.pyro_warmup, "num_samples": args.pyro_samples},
    )


class JaxCompileClock:
    """Wall and CPU seconds JAX spends tracing, lowering and compiling (outermost spans only).

    JAX reports the start (``record_scalar``) and the end (``record_event_time_span``) of
    every jaxpr trace, MLIR lowering and XLA compilation; nested spans (a jit traced inside
    another trace) are counted once, through the outermost one.
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )
    _installed: JaxCompileClock | None = None

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._stack: list[tuple[float, float]] = []

    @classmethod
    def get(cls) -> JaxCompileClock:
        if cls._installed is None:
            import jax.monitoring as monitoring

            clock = cls()
            monitoring.register_scalar_listener(clock._start)
            monitoring.register_event_time_span_listener(clock._end)
            cls._installed = clock
        return cls._installed

    def _start(self, event: str, value, **kwargs) -> None:
        if event in self.EVENTS:
            self._stack.append((time.perf_counter(), time.process_time()))

    def _end(self, event: str, start: float, end: float, **kwargs) -> None:
        if event in self.EVENTS and self._stack:
            wall0, cpu0 = self._stack.pop()
            if not self._stack:
                self.wall += time.perf_counter() - wall0
                self.cpu += time.process_time() - cpu0

    def read(self) -> tuple[float, float]:
        return self.wall, self.cpu


def run_numpyro(target: Target, chains: int, args: argparse.Namespace, seed: int) -> Row:
    """One ``MCMC.run`` (warm-up + draws in one compiled loop). Warm time = wall time minus
    the time JAX spent tracing and compiling during the run (``JaxCompileClock``): a second
    ``run`` of the same ``MCMC`` object recompiles its loop (its jitted body is rebuilt per
    call), so it is no measure of warm speed."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    def potential(x):
        return -target.jax_log_prob(x)

    clock = JaxCompileClock.get()
    kernel = NUTS(potential_fn=potential, target_accept_prob=0.8, max_tree_depth=10)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    init = jnp.asarray(initial_positions(chains, target.dim, args.seed))
    if chains == 1:
        init = init[0]
    key = jax.random.PRNGKey(seed)
    compile_wall0, compile_cpu0 = clock.read()
    t0, c0 = time.perf_counter(), time.process_time()
    mcmc.run(key, init_params=init, extra_fields=("num_steps", "diverging"))
    draws = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(draws)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    compile_wall, compile_cpu = clock.read()
    compile_wall, compile_cpu = compile_wall - compile_wall0, compile_cpu - compile_cpu0
    arr = np.array(draws).reshape(chains, args.num_samples, target.dim)
    ess = min_bulk_ess(torch.as_tensor(arr))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    grads = float(np.asarray(extra["num_steps"]).sum())
    divergent = int(np.asarray(extra["diverging"]).sum())
    step = float(np.mean(np.asarray(mcmc.last_state.adapt_state.step_size)))
    label = "numpyro NUTS" + (" (vectorized)" if chains > 1 else "")
    return Row(
        target.name,
        label,
        chains,
        args.num_samples,
        wall,
        wall - compile_wall,
        ess,
        ess,
        cpu,
        cpu - compile_cpu,
        divergent=divergent,
        step_size=step,
        extra={
            "sampling_grads": grads,
            "compile_wall_s": compile_wall,
            "compile_cpu_s": compile_cpu,
        },
    )


# -------------------------------------------------------------------- bare gradients


def time_call(
    fn: Callable[[], object], min_time: float = 0.5, blocks: int = 5
) -> tuple[float, float]:
    """Medians over ``blocks`` of the mean wall and CPU time of one call."""
    fn()
    n, elapsed = 1, 0.0
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > min_time / blocks:
            break
        n *= 2
    walls, cpus = [], []
    for _ in range(blocks):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        walls.append((time.perf_counter() - t0) / n)
        cpus.append((time.process_time() - c0) / n)
    return statistics.median(walls), statistics.median(cpus)


def bare_grad_time(
    target: Target, chains: int, device: torch.device, compiled: bool = False
) -> tuple[float, float]:
    """One log-prob + gradient: eager autograd, or ``CompiledLogProb`` (compiled here)."""
    x = torch.as_tensor(initial_positions(chains, target.dim, 0), device=device)
    fn = CompiledLogProb(target.log_prob) if compiled else target.log_prob

    def call() -> None:
        log_prob_and_grad(fn, x)
        sync(device)

    return time_call(call)


def jax_grad_time(target: Target) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp

    fn = jax.jit(jax.value_and_grad(target.jax_log_prob))
    x = jnp.asarray(initial_positions(1, target.dim, 0)[0])
    return time_call(lambda: jax.block_until_ready(fn(x)))


# ------------------------------------------------------------------------- report


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def print_table(rows: list[Row], overhead: dict, args: argparse.Namespace) -> str:
    lines = [
        "| target | method | chains | draws/chain | wall s (warm) | CPU s (warm) | min bulk ESS "
        "| ESS/s cold | ESS/s warm | ESS/CPU-s cold | ESS/CPU-s warm | divergent |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:

        def pair(cold: float, warm: float) -> str:
            return fmt(cold) + (f" ({fmt(warm)})" if abs(warm - cold) > 1e-9 else "")

        lines.append(
            f"| {r.target} | {r.method} | {r.chains} | {r.draws} | {pair(r.wall_cold, r.wall_warm)}"
            f" | {pair(r.cpu_cold, r.cpu_warm)} | {fmt(r.ess)} | {fmt(r.ess_per_s_cold)} "
            f"| {fmt(r.ess_per_s_warm)} | {fmt(r.ess_per_cpu_s_cold)} "
            f"| {fmt(r.ess_per_cpu_s_warm)} | {r.divergent if r.divergent is not None else '-'} |"
        )
    table = "\n".join(lines)
    print("\n" + table)

    # Goals of the issue, per target (wall-clock ESS/s, then the same on CPU seconds).
    goal_lines = [
        "",
        "| target | clock | best bayestorch ESS/s | vs best Pyro (goal >= 10x) | vs best NumPyro "
        "cold (goal >= 1x) | NUTS vs NumPyro warm at equal chains (moonshot >= 1x) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r.target for r in rows):
        mine = [r for r in rows if r.target == name and r.method.startswith("bayestorch")]
        pyro = [r for r in rows if r.target == name and r.method.startswith("pyro")]
        nump = [r for r in rows if r.target == name and r.method.startswith("numpyro")]
        if not mine:
            continue
        for clock, cold, warm in (
            ("wall", "ess_per_s_cold", "ess_per_s_warm"),
            ("CPU", "ess_per_cpu_s_cold", "ess_per_cpu_s_warm"),
        ):
            best = max(getattr(r, warm) for r in mine)
            vs_pyro = best / max(getattr(r, cold) for r in pyro) if pyro else float("nan")
            vs_cold = best / max(getattr(r, cold) for r in nump) if nump else float("nan")
            equal = []
            for n in nump:
                same = [
                    getattr(r, warm)
                    for r in mine
                    if r.chains == n.chains and r.method.startswith("bayestorch NUTS")
                ]
                if same:
                    equal.append(f"{max(same) / getattr(n, warm):.2g}x @{n.chains}")
            goal_lines.append(
                f"| {name} | {clock} | {fmt(best)} | {fmt(vs_pyro, 2)}x | {fmt(vs_cold, 2)}x "
                f"| {', '.join(equal) or '-'} |"
            )
    goals = "\n".join(goal_lines)
    print(goals)

    over_lines = [
        "",
        "| target | method | chains | bare log-prob+grad µs (CPU) | NUTS per leapfrog step µs "
        "(CPU) | overhead ratio wall (CPU) | leapfrog steps / transition | ms / transition (CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, o in overhead.items():
        name, chains = key[0], key[1]
        method = key[2] if len(key) > 2 else "bayestorch NUTS"
        over_lines.append(
            f"| {name} | {method} | {chains} | {o['bare_grad_us']:.0f} "
            f"({o['bare_grad_cpu_us']:.0f}) "
            f"| {o['step_us']:.0f} ({o['step_cpu_us']:.0f}) "
            f"| {o['ratio']:.2f} ({o['ratio_cpu']:.2f}) | {o['steps_per_transition']:.1f} "
            f"| {o['transition_ms']:.1f} ({o['transition_cpu_ms']:.1f}) |"
        )
    over = "\n".join(over_lines)
    print(over)
    return "\n".join([table, goals, over])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=str, default=",".join(TARGETS))
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--chains", type=str, default="1,4,128", help="bayestorch NUTS chain counts")
    p.add_argument("--chees-chains", type=str, default="128", help="'' to skip ChEES")
    p.add_argument(
        "--compiled-chains", type=str, default="1,4,128", help="compiled NUTS ('' to skip)"
    )
    p.add_argument("--compiled-chees-chains", type=str, default="128", help="compiled ChEES")
    p.add_argument(
        "--compiled-gradient-chees-chains",
        type=str,
        default="128",
        help="ChEES, eager trajectory, CompiledLogProb gradient",
    )
    p.add_argument("--pyro-warmup", type=int, default=250, help="Pyro is slow: fewer")
    p.add_argument("--pyro-samples", type=int, default=250)
    p.add_argument("--pyro-jit", type=str, default="off,on")
    p.add_argument("--numpyro-chains", type=str, default="1,4")
    p.add_argument("--skip-pyro", action="store_true")
    p.add_argument("--skip-numpyro", action="store_true")
    p.add_argument("--repeats", type=int, default=1, help="median over repeats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=str, default="cpu", help="bayestorch rows only")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--json", type=str, default=None, help="also write the results here")
    p.add_argument(
        "--report", type=str, default=None, help="comma-separated JSON files: print merged tables"
    )
    return p.parse_args(argv)


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def median_row(rows: list[Row]) -> Row:
    """The repeat with the median warm ESS/s."""
    ordered = sorted(rows, key=lambda r: r.ess_per_s_warm)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report:
        return {"markdown": report(args.report.split(","))}
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)  # Pyro's internals follow the default dtype
    device = torch.device(args.device)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]

    have_pyro = have_numpyro = False
    if not args.skip_pyro:
        try:
            import pyro  # noqa: F401

            have_pyro = True
        except ImportError:
            print("pyro-ppl is not installed: skipping the Pyro rows")
    if not args.skip_numpyro:
        try:
            import numpyro

            numpyro.enable_x64()
            numpyro.set_host_device_count(1)
            have_numpyro = True
        except ImportError:
            print("numpyro / jax are not installed: skipping the NumPyro rows")

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions["bayestorch"] = getattr(bayestorch, "__version__", "?")
    if have_pyro:
        import pyro

        versions["pyro"] = pyro.__version__
    if have_numpyro:
        import jax
        import numpyro

        versions["numpyro"] = numpyro.__version__
        versions["jax"] = jax.__version__
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} "
        f"{load[1]:.1f} {load[2]:.1f}; torch threads {torch.get_num_threads()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    print(
        f"bayestorch / numpyro: {args.num_warmup} warm-up + {args.num_samples} draws per chain; "
        f"pyro: {args.pyro_warmup} + {args.pyro_samples}; float64; device {device} "
        f"(bayestorch rows); repeats {args.repeats}"
    )

    rows: list[Row] = []
    overhead: dict = {}
    jax_grad_us: dict = {}
    for name in targets:
        target = make_target(name, device, have_numpyro)
        print(f"\n## {target.description}", flush=True)
        jobs: list[tuple[str, Callable[[int], Row]]] = []
        nuts_chains = ints(args.chains)

        def nuts_job(c: int, target: Target = target) -> tuple[str, Callable[[int], Row]]:
            return f"bayestorch NUTS x{c}", lambda s: run_bayestorch(target, "nuts", c, args, s)

        def compiled_job(c: int, kernel: str, target: Target = target):
            label = f"bayestorch {kernel} compiled x{c}"
            return label, lambda s: run_bayestorch(target, kernel, c, args, s, compiled=True)

        # Cheap rows first, the 128-chain NUTS last (the JSON is rewritten after every row).
        jobs += [nuts_job(c) for c in nuts_chains[:1]]
        jobs += [compiled_job(c, "nuts") for c in ints(args.compiled_chains)]
        jobs += [compiled_job(c, "chees") for c in ints(args.compiled_chees_chains)]
        for c in ints(args.compiled_gradient_chees_chains):
            jobs.append(
                (
                    f"bayestorch ChEES compiled gradient x{c}",
                    lambda s, c=c, target=target: run_bayestorch(
                        target, "chees", c, args, s, compiled_gradient=True
                    ),
                )
            )
        for c in ints(args.chees_chains):
            jobs.append(
                (
                    f"bayestorch ChEES x{c}",
                    lambda s, c=c, target=target: run_bayestorch(target, "chees", c, args, s),
                )
            )
        if have_numpyro:
            for c in ints(args.numpyro_chains):
                jobs.append(
                    (f"numpyro x{c}", lambda s, c=c, target=target: run_numpyro(target, c, args, s))
                )
        if have_pyro:
            for j in args.pyro_jit.split(","):
                jit = j.strip() == "on"
                jobs.append(
                    (
                        f"pyro jit {j}",
                        lambda s, jit=jit, target=target: run_pyro(target, jit, args, s),
                    )
                )
        jobs += [nuts_job(c) for c in nuts_chains[1:]]
        for label, job in jobs:
            reps = []
            for r in range(args.repeats):
                row = job(args.seed + r)
                reps.append(row)
                print(
                    f"  {label:24s} repeat {r}: wall {row.wall_cold:8.2f} s"
                    + (f" (warm {row.wall_warm:.2f} s)" if row.wall_warm != row.wall_cold else "")
                    + f" CPU {row.cpu_cold:.2f} s (warm {row.cpu_warm:.2f} s)"
                    + f"  min bulk ESS {row.ess:8.1f}  ESS/s {row.ess_per_s_cold:9.1f}"
                    + f" / {row.ess_per_s_warm:9.1f}  divergent {row.divergent}"
                    + f"  step {fmt(row.step_size)}",
                    flush=True,
                )
            row = median_row(reps)
            rows.append(row)
            if row.method.startswith("bayestorch NUTS") and row.chains in (1, 128):
                overhead[(name, row.chains, row.method)] = measure_overhead(
                    target, row, args, device
                )
            write_json(args, versions, load, rows, overhead, jax_grad_us, None)

        if have_numpyro:
            jw, jc = jax_grad_time(target)
            jax_grad_us[name] = {"wall": jw * 1e6, "cpu": jc * 1e6}
            print(
                f"  jax jit value_and_grad, 1 chain: {jw * 1e6:.1f} µs wall, {jc * 1e6:.1f} µs CPU"
            )

    table = print_table(rows, overhead, args)
    return write_json(args, versions, load, rows, overhead, jax_grad_us, table)


def measure_overhead(target: Target, run: Row, args: argparse.Namespace, device) -> dict:
    """Per leapfrog step of a NUTS run vs one bare log-prob+gradient at the same chain count."""
    bare_wall, bare_cpu = bare_grad_time(target, run.chains, device, "compiled" in run.method)
    transitions = args.num_warmup + args.num_samples
    o = {
        "bare_grad_us": bare_wall * 1e6,
        "bare_grad_cpu_us": bare_cpu * 1e6,
        "step_us": run.wall_warm / run.grads * 1e6,
        "step_cpu_us": run.cpu_warm / run.grads * 1e6,
        "ratio": run.wall_warm / run.grads / bare_wall,
        "ratio_cpu": run.cpu_warm / run.grads / bare_cpu,
        "steps_per_transition": run.grads / transitions,
        "transition_ms": run.wall_warm / transitions * 1e3,
        "transition_cpu_ms": run.cpu_warm / transitions * 1e3,
    }
    print(
        f"  overhead {run.method} x{run.chains}: bare log-prob+grad "
        f"{o['bare_grad_us']:.0f} µs wall / {o['bare_grad_cpu_us']:.0f} µs CPU; "
        f"per leapfrog step {o['step_us']:.0f} / "
        f"{o['step_cpu_us']:.0f} µs; ratio {o['ratio']:.2f} / {o['ratio_cpu']:.2f}",
        flush=True,
    )
    return o


def write_json(args, versions, load, rows, overhead, jax_grad_us, table) -> dict:
    out = {
        "args": vars(args),
        "versions": versions,
        "load_average": load,
        "rows": [
            {
                **asdict(r),
                "ess_per_s_cold": r.ess_per_s_cold,
                "ess_per_s_warm": r.ess_per_s_warm,
                "ess_per_cpu_s_cold": r.ess_per_cpu_s_cold,
                "ess_per_cpu_s_warm": r.ess_per_cpu_s_warm,
            }
            for r in rows
        ],
        "overhead": {"@".join(map(str, k)): v for k, v in overhead.items()},
        "jax_grad_us": jax_grad_us,
        "markdown": table,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=float)
        if table is not None:
            print(f"\nwrote {args.json}")
    return out


def report(paths: list[str]) -> str:
    """Merge the JSON files of several runs (e.g. one per target) into one set of tables."""
    rows, overhead = [], {}
    names = {f.name for f in Row.__dataclass_fields__.values()}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        rows += [Row(**{k: v for k, v in r.items() if k in names}) for r in data["rows"]]
        for key, value in data["overhead"].items():
            target, chains, *method = key.split("@")
            overhead[(target, int(chains), *method)] = value
    return print_table(rows, overhead, argparse.Namespace())


if __name__ == "__main__":
    sys.exit(main() and 0)
