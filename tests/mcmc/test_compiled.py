"""Compiled trajectories (bayestorch/mcmc/compiled.py): same draws as eager, on-disk cache,
eager fallback, and ``compile="auto"``.

Compiling costs seconds per graph on CPU, so the compiled runs are built once per module
(a module-scoped fixture) on one small model and shared by the tests.
"""

import logging
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from bayestorch.mcmc import HMC, NUTS, ChEESHMC, sample
from bayestorch.mcmc.compiled import (
    AUTO_MAX_CHAINS,
    AUTO_MIN_WARMUP,
    TrajectoryFunction,
    resolve_auto,
)
from bayestorch.testing.targets import EightSchools
from bayestorch.utils.autograd import DensityErrorLog

F64 = torch.float64
TRANSITIONS = 8
# Compiled kernels fuse operations and may round differently: draws agree to round-off.
# Over 8 transitions on eight schools the measured difference is below 1e-14.
TOLERANCE = 1e-10

pytestmark = pytest.mark.slow


def _kernel(kind, log_prob, compile):
    metric = dict(inverse_mass_matrix=torch.full((10,), 0.5, dtype=F64), compile=compile)
    if kind == "nuts":
        return NUTS(log_prob, step_size=0.3, max_tree_depth=6, **metric)
    if kind == "hmc":
        return HMC(log_prob, num_steps=5, step_size=0.3, step_size_jitter=0.2, **metric)
    return ChEESHMC(log_prob, trajectory_length=1.5, step_size=0.3, **metric)


def _run(kind, chains, compile):
    target = EightSchools(centred=False)
    g = torch.Generator().manual_seed(11)
    kernel = _kernel(kind, target.log_prob, compile)
    state = kernel.init(torch.rand(chains, 10, generator=g, dtype=F64) * 4 - 2, g)
    positions, infos = [], []
    for _ in range(TRANSITIONS):
        state, info = kernel.step(state, g)
        positions.append(state.position)
        infos.append(info)
    return torch.stack(positions), infos, kernel


@pytest.fixture(scope="module")
def runs():
    return {
        (kind, chains, compile): _run(kind, chains, compile)
        for kind in ("nuts", "hmc", "chees")
        for chains in (1, 16)
        for compile in (False, True)
    }


@pytest.mark.parametrize("kind", ["nuts", "hmc", "chees"])
@pytest.mark.parametrize("chains", [1, 16])
def test_compiled_draws_equal_eager(runs, kind, chains):
    eager, eager_info, _ = runs[(kind, chains, False)]
    compiled, compiled_info, kernel = runs[(kind, chains, True)]
    assert kernel.use_compiled and all(f.compiled for f in _functions(kernel))
    assert float((eager - compiled).abs().max()) < TOLERANCE
    for a, b in zip(eager_info, compiled_info):
        assert torch.equal(a.num_steps, b.num_steps)
        assert torch.equal(a.is_divergent, b.is_divergent)


def _functions(kernel):
    (functions,) = kernel.__dict__["_functions"].values()
    if isinstance(functions, TrajectoryFunction):
        return [functions]
    return [functions.transition]


def test_second_process_hits_the_inductor_cache(tmp_path):
    # The graphs (a while_loop each) go through inductor's FX-graph and AOTAutograd caches:
    # a second process with the same model compiles nothing again. Its data differ (same
    # shapes): the data are graph inputs, not baked into the cached code, so its draws are
    # still the eager ones.
    script = textwrap.dedent(
        """
        import sys
        import torch
        from torch._dynamo.utils import counters
        from bayestorch.mcmc import HMC

        data = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64) * float(sys.argv[1])

        def log_prob(x):
            return -0.5 * ((x[:, :1] - data) ** 2).sum(-1) - 0.1 * (x**4).sum(-1)

        positions = []
        for compile in (False, True):
            kernel = HMC(log_prob, num_steps=3, step_size=0.2, compile=compile)
            g = torch.Generator().manual_seed(0)
            state = kernel.init(torch.zeros(2, 3, dtype=torch.float64), g)
            for _ in range(3):
                state, _ = kernel.step(state, g)
            positions.append(state.position)
        assert kernel.trajectory().compiled
        inductor = counters["inductor"]
        difference = float((positions[0] - positions[1]).abs().max())
        print(inductor["fxgraph_cache_hit"], inductor["fxgraph_cache_miss"], difference)
        """
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    env.pop("BAYESTORCH_COMPILE_BACKEND", None)

    def run(scale: float) -> tuple[int, int, float, dict]:
        out = subprocess.run(
            [sys.executable, "-c", script, str(scale)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        hits, misses, difference = out.stdout.split()
        so_files = {path: path.stat().st_mtime_ns for path in cache.rglob("*.so")}
        return int(hits), int(misses), float(difference), so_files

    hits, misses, difference, first = run(1.0)
    assert first and (hits, misses) == (0, 1)  # a cold cache: one graph compiled
    assert difference < TOLERANCE
    hits, misses, difference, second = run(5.0)
    assert (hits, misses) == (1, 0)  # a second process: the graph comes from the cache
    assert second == first  # and no C++ is compiled or rewritten
    assert difference < TOLERANCE  # with its own data


class _Raises(TrajectoryFunction):
    """Fails to build (``when="build"``) or raises from the compiled call (``"call"``)."""

    def __init__(self, error, when):
        super().__init__(lambda x, **kw: x + 1, lambda x: x.sum(-1), compile=True)
        self.error, self.when = error, when

    def _build(self, leaves, spec):
        if self.when == "build":
            raise self.error

        def compiled(leaves):
            raise self.error

        return compiled


def test_density_error_in_compiled_call_reruns_eagerly():
    fn = _Raises(ValueError("density raised"), "call")
    assert torch.equal(fn(torch.zeros(2)), torch.ones(2))
    assert fn.compiled  # a density error is about this call, not the compiler


def test_compiler_failure_warns_and_stays_eager():
    fn = _Raises(RuntimeError("boom"), "build")
    with pytest.warns(RuntimeWarning, match="torch.compile failed on .*RuntimeError: boom"):
        assert torch.equal(fn(torch.zeros(2)), torch.ones(2))
    assert not fn.compiled


def _correlation_density(x):
    # log N(0 | 0, [[1, r], [r, 1]]) - x1^2 / 2 with r = x0: a Cholesky that raises (inside
    # the compiled graph, no graph break) for |x0| >= 1, where the matrix is not PD.
    eye = torch.eye(2, dtype=x.dtype)
    off = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=x.dtype)
    chol = torch.linalg.cholesky(eye + x[:, 0, None, None] * off)
    return -chol.diagonal(dim1=-2, dim2=-1).log().sum(-1) - 0.5 * x[:, 1] ** 2


def test_compiled_nuts_rejects_where_the_density_raises():
    kernel = NUTS(_correlation_density, step_size=0.9, max_tree_depth=4, compile=True)
    g = torch.Generator().manual_seed(2)
    state = kernel.init(torch.zeros(4, 2, dtype=F64), g)
    errors = DensityErrorLog(num_chains=4)
    with errors, warnings.catch_warnings():
        # torch 2.13's inductor cannot lower torch.linalg.cholesky's error check inside a
        # while_loop ("Expected positional argument"): the kernel may warn and go eager.
        warnings.filterwarnings("ignore", "torch.compile failed", RuntimeWarning)
        for _ in range(10):
            state, info = kernel.step(state, g)
            assert bool((state.position[:, 0].abs() < 1).all())
    assert errors.total > 0
    # Compiling left torch.distributions' argument validation as it was (dynamo turns it off).
    assert torch.distributions.Distribution._validate_args


def test_graph_break_in_the_density_warns_and_goes_eager():
    def log_prob(x):
        if bool((x[:, 0] > 1.5).any()):  # Python control flow on values: a graph break
            raise ValueError("outside the support")
        return -0.5 * (x**2).sum(-1)

    kernel = NUTS(log_prob, step_size=1.2, max_tree_depth=3, compile=True)
    g = torch.Generator().manual_seed(2)
    state = kernel.init(torch.zeros(4, 2, dtype=F64), g)
    with pytest.warns(RuntimeWarning, match="use torch.where"):
        state, _ = kernel.step(state, g)
    assert not any(f.compiled for f in _functions(kernel))
    with DensityErrorLog(num_chains=4):
        for _ in range(5):
            state, _ = kernel.step(state, g)  # eager: the guard rejects where it raises
            assert bool((state.position[:, 0] <= 1.5).all())


def test_auto_compiles_long_few_chain_cpu_runs_only(caplog):
    cpu = torch.device("cpu")
    assert not resolve_auto(AUTO_MIN_WARMUP - 1, 1, cpu)[0]
    assert not resolve_auto(AUTO_MIN_WARMUP, AUTO_MAX_CHAINS + 1, cpu)[0]
    assert not resolve_auto(AUTO_MIN_WARMUP, 1, torch.device("meta"))[0]
    chosen, reason = resolve_auto(AUTO_MIN_WARMUP, AUTO_MAX_CHAINS, cpu)
    assert chosen == ("no C++ compiler" not in reason)
    target = EightSchools(centred=False)
    with caplog.at_level(logging.INFO, logger="bayestorch"):
        result = sample(
            target.log_prob,
            torch.zeros(2, 10, dtype=F64),
            "nuts",
            num_warmup=30,
            num_samples=5,
            progress=False,
            generator=torch.Generator().manual_seed(0),
        )
    assert not result.kernel.use_compiled
    assert "too short to repay compiling" in result.kernel.compile_reason
    assert any("compile='auto'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad", ["yes", 1.0, None])
def test_compile_argument_is_checked(bad):
    with pytest.raises(ValueError, match="compile must be"):
        NUTS(lambda x: -(x**2).sum(-1), compile=bad)


def test_random_ops_are_found_in_a_traced_density():
    # A density that draws (e.g. a subsampled plate) is not compiled from its make_fx graph.
    from torch.fx.experimental.proxy_tensor import make_fx

    from bayestorch.mcmc.compiled import random_ops

    def noisy(x):
        return -0.5 * (x**2).sum(-1) + torch.randn(x.shape[0], dtype=x.dtype)

    def plain(x):
        return -0.5 * (x**2).sum(-1)

    x = torch.zeros(3, 2, dtype=F64)
    assert random_ops(make_fx(noisy, tracing_mode="fake")(x))
    assert not random_ops(make_fx(plain, tracing_mode="fake")(x))


def _views_density():
    # The data are two views of one buffer, and one of them is used twice: the traced graph
    # gets each tensor once as a loop input, and no two inputs share memory.
    data = torch.linspace(-1.0, 1.0, 6, dtype=F64)
    a, b = data[:3], data[3:]
    return lambda x: -((x - a) ** 2).sum(-1) - 0.5 * ((x - b) ** 2).sum(-1) + (a * x).sum(-1)


def test_traced_density_lifts_its_constants_once_and_unaliased():
    from torch.fx.experimental.proxy_tensor import make_fx

    from bayestorch.mcmc.compiled import TracedDensity, func_value_and_grad
    from bayestorch.utils import log_prob_and_grad

    log_prob = _views_density()
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    graph = make_fx(
        func_value_and_grad(log_prob), tracing_mode="fake", _allow_non_fake_inputs=True
    )(x)
    density = TracedDensity(graph)
    assert len(density.constants) == 2
    assert len({c.untyped_storage().data_ptr() for c in density.constants}) == 2
    value, grad = density(x)
    expected_value, expected_grad = log_prob_and_grad(log_prob, x)
    assert torch.allclose(value, expected_value, rtol=0, atol=1e-12)
    assert torch.allclose(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_nuts_on_aliased_data_equals_eager(backend, monkeypatch):
    monkeypatch.setenv("BAYESTORCH_COMPILE_BACKEND", backend)
    draws = []
    for compile in (False, True):
        kernel = NUTS(_views_density(), step_size=0.4, max_tree_depth=4, compile=compile)
        g = torch.Generator().manual_seed(3)
        state = kernel.init(torch.zeros(2, 3, dtype=F64), g)
        for _ in range(5):
            state, _ = kernel.step(state, g)
        assert all(f.compiled for f in _functions(kernel)) == compile
        draws.append(state.position)
    assert float((draws[0] - draws[1]).abs().max()) < TOLERANCE
