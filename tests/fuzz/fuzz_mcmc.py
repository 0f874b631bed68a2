"""Fuzz cases of bayestorch.mcmc."""

from __future__ import annotations

import math

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

M = bt.mcmc

exempt(
    "namedtuple",
    "a kernel's state or per-transition info (built by init/step, fuzzed with the kernel)",
    "mcmc.ChEESInfo",
    "mcmc.GibbsInfo",
    "mcmc.GibbsState",
    "mcmc.HMCInfo",
    "mcmc.HMCState",
    "mcmc.IMHState",
    "mcmc.MetropolisInfo",
    "mcmc.NUTSInfo",
    "mcmc.PottsGibbsInfo",
    "mcmc.PottsState",
    "mcmc.RWMState",
    "mcmc.SliceInfo",
    "mcmc.SliceState",
    "mcmc.SwendsenWangInfo",
)
exempt(
    "constant", "the critical temperature of the 2-D Ising model", "mcmc.ISING_CRITICAL_TEMPERATURE"
)
exempt("constant", "the name -> kernel class table of sample()", "mcmc.KERNELS")
exempt(
    "protocol", "the abstract kernel interface (init/step raise NotImplementedError)", "mcmc.Kernel"
)
exempt(
    "dataclass", "the result record of sample() (fuzzed through mcmc.sample)", "mcmc.SampleResult"
)


def _log_p(x):
    return -0.5 * (x**2).sum(-1)


def _position(f, min_chains=0):
    chains, dim = f.size(min_chains, 3), f.size(1, 3)
    return chains, dim, f.randn(chains, dim)


def _run_kernel(f, kernel, steps=2):
    chains, dim, x = _position(f)
    kernel = kernel.to(dtype=f.dtype)
    state = kernel.init(f.arg("position", x, shape_fuzz=("fewer",)))
    g = f.generator()
    for _ in range(steps):
        state, info = kernel.step(state, g)
    f.expect(state.position, (chains, dim))
    f.allow_neg_inf()  # accept-probability logs of rejected proposals
    return state, info


@case("mcmc.HMC", examples=0.5)
def _(f):
    return _run_kernel(
        f,
        M.HMC(
            f.arg("log_prob_fn", _log_p),
            f.arg("num_steps", f.size(1, 4)),
            step_size=f.arg("step_size", 0.3),
        ),
    )


@case("mcmc.NUTS", examples=0.5)
def _(f):
    return _run_kernel(
        f,
        M.NUTS(
            f.arg("log_prob_fn", _log_p),
            f.arg("max_tree_depth", f.size(1, 4)),
            step_size=f.arg("step_size", 0.5),
        ),
    )


@case("mcmc.ChEESHMC", examples=0.5)
def _(f):
    return _run_kernel(
        f,
        M.ChEESHMC(
            f.arg("log_prob_fn", _log_p),
            trajectory_length=f.arg("trajectory_length", 1.0),
            step_size=f.arg("step_size", 0.3),
        ),
    )


@case("mcmc.RandomWalkMetropolis")
def _(f):
    return _run_kernel(f, M.RandomWalkMetropolis(f.arg("log_prob_fn", _log_p), f.arg("scale", 0.8)))


@case("mcmc.IndependentMetropolis")
def _(f):
    chains, dim, x = _position(f, min_chains=1)  # 0 chains: test_known_bugs
    loc = torch.zeros(dim, dtype=f.dtype)
    proposal = D.Independent(D.Normal(loc, 2 * torch.ones_like(loc)), 1)
    kernel = M.IndependentMetropolis(f.arg("log_prob_fn", _log_p), f.arg("proposal", proposal))
    state = kernel.init(f.arg("position", x, shape_fuzz=("fewer",)))
    state, info = kernel.step(state, f.generator())
    f.allow_neg_inf()
    return f.expect(state.position, (chains, dim)), info


@case("mcmc.SliceSampler")
def _(f):
    return _run_kernel(
        f,
        M.SliceSampler(
            f.arg("log_prob_fn", _log_p),
            f.arg("width", 1.0),
            method=f.arg("method", f.draw(st.sampled_from(["coordinate", "direction"]))),
        ),
    )


@case("mcmc.Gibbs", "mcmc.gibbs_step")
def _(f):
    chains, dim, x = _position(f)
    blocks = [list(range(dim))]
    conditional = _normal_block(dim)
    kernel = M.Gibbs(
        f.arg("blocks", blocks),
        f.arg("conditionals", [conditional]),
        f.arg("log_prob_fn", _log_p),
        scan=f.arg("scan", f.draw(st.sampled_from(["systematic", "random"]))),
    )
    state = kernel.init(f.arg("position", x, shape_fuzz=("fewer",)))
    state, info = kernel.step(state, f.generator())
    return f.expect(state.position, (chains, dim)), info


def _normal_block(size):
    def conditional(position, generator):
        return torch.randn(
            position.shape[0],
            size,
            generator=generator,
            dtype=position.dtype,
            device=position.device,
        )

    return conditional


def _hmc_state(f, x):
    lp, grad = bt.utils.log_prob_and_grad(_log_p, x)
    return M.HMCState(x, lp, grad)


@case("mcmc.hmc_step", "mcmc.nuts_step")
def _(f):
    chains, dim, x = _position(f)
    state = _hmc_state(f, x)
    common = dict(
        # the functional core: HMC/NUTS (the Modules) check their step size
        step_size=f.arg("step_size", f.tensor(0.3), propagates=True),
        inverse_mass_matrix=f.arg(
            "inverse_mass_matrix", torch.ones(dim, dtype=f.dtype), propagates=True
        ),
        generator=f.generator(),
    )
    if f.draw(st.booleans()):
        state, info = M.hmc_step(
            f.arg("state", state), _log_p, num_steps=f.arg("num_steps", f.size(1, 3)), **common
        )
    else:
        state, info = M.nuts_step(
            f.arg("state", state),
            _log_p,
            max_tree_depth=f.arg("max_tree_depth", f.size(1, 3)),
            **common,
        )
    f.allow_neg_inf()
    return f.expect(state.position, (chains, dim)), info


@case("mcmc.rwm_step")
def _(f):
    chains, dim, x = _position(f)
    state = M.RWMState(x, _log_p(x))
    state, info = M.rwm_step(
        f.arg("state", state),
        f.arg("log_prob_fn", _log_p),
        scale=f.arg("scale", f.tensor(0.5), propagates=True),
        generator=f.generator(),
    )
    return f.expect(state.position, (chains, dim)), info


@case("mcmc.imh_step")
def _(f):
    chains, dim, x = _position(f, min_chains=1)  # 0 chains: torch's Independent.log_prob
    q = D.Independent(D.Normal(torch.zeros(dim, dtype=f.dtype), 2.0), 1)
    state = M.IMHState(x, _log_p(x), q.log_prob(x))

    def sample_fn(num, generator=None):
        return 2.0 * torch.randn(num, dim, generator=generator, dtype=f.dtype)

    state, info = M.imh_step(
        f.arg("state", state),
        f.arg("log_prob_fn", _log_p),
        f.arg("proposal_sample_fn", sample_fn),
        f.arg("proposal_log_prob_fn", q.log_prob),
        generator=f.generator(),
    )
    return f.expect(state.position, (chains, dim)), info


@case("mcmc.slice_step")
def _(f):
    chains, dim, x = _position(f)
    state = M.SliceState(x, _log_p(x))
    state, info = M.slice_step(
        f.arg("state", state),
        f.arg("log_prob_fn", _log_p),
        width=f.arg("width", torch.ones(dim, dtype=f.dtype), propagates=True),
        generator=f.generator(),
    )
    return f.expect(state.position, (chains, dim)), info


@case("mcmc.mh_accept")
def _(f):
    chains, dim, x = _position(f)
    y = f.randn(chains, dim)
    ratio = f.randn(chains)
    state, accepted, prob = M.mh_accept(
        f.arg("log_accept_ratio", ratio, neg_inf_ok=True, nan_ok=True),  # NaN means reject
        f.arg("current", M.RWMState(x, _log_p(x))),
        f.arg("proposed", M.RWMState(y, _log_p(y))),
        generator=f.generator(),
    )
    return f.expect(state.position, (chains, dim)), f.expect(prob, (chains,))


@case("mcmc.sample", examples=0.3)
def _(f):
    chains, dim, x = _position(f, min_chains=1)  # 0 chains: test_known_bugs
    draws = f.size(1, 4)
    kernel = f.draw(st.sampled_from(["nuts", "hmc", "rwm", "slice"]))
    out = M.sample(
        f.arg("log_prob_fn", _log_p),
        f.arg("initial_position", x, shape_fuzz=("fewer",)),
        f.arg("kernel", kernel),
        num_warmup=f.arg("num_warmup", f.size(0, 4)),
        num_samples=f.arg("num_samples", draws),
        thin=f.arg("thin", 1),
        generator=f.generator(),
        progress=False,
    )
    f.allow_neg_inf()
    return f.expect(out.samples, (chains, draws, dim)), out.stats


@case("mcmc.SGHMC")
def _(f):
    d = f.size(1, 3)
    w = torch.nn.Parameter(f.randn(d))
    sampler = M.SGHMC(
        [w],
        f.arg("lr", 1e-2),
        friction=f.arg("friction", 0.1),
        num_data=f.arg("num_data", f.size(1, 10)),
    )
    for _ in range(2):
        sampler.zero_grad()
        (0.5 * (w**2).sum()).backward()
        sampler.step(generator=f.generator())
    return w.detach()


@case("mcmc.BayesianGaussianMixture", examples=0.5)
def _(f):
    n = f.size(1, 6)
    model = M.BayesianGaussianMixture(
        f.arg("data", f.randn(n), shape_fuzz=("fewer",)),
        f.arg("num_components", f.size(1, 3)),
        concentration=f.arg("concentration", 1.0),
    )
    return model


# ---- diagnostics: (chains, draws, *event) -> (*event,)


def _draws(f, min_chains=1, min_draws=4):
    chains, draws = f.size(min_chains, 4), f.size(min_draws, 12)
    event = f.shape(max_dims=1, hi=3)
    return event, f.randn(chains, draws, *event)


def _diagnostic(fn, min_chains=1, **kwargs):
    def run(f):
        event, x = _draws(f, min_chains)
        out = fn(
            f.arg("samples", x, propagates=True), **{k: f.arg(k, v) for k, v in kwargs.items()}
        )
        return f.expect(out, event)

    return run


for _name, _kw in [
    ("effective_sample_size", {}),
    ("ess_bulk", {}),
    ("ess_tail", {"prob": 0.05}),
    ("ess_quantile", {"prob": 0.5}),
    ("mcse_mean", {}),
    ("mcse_sd", {}),
    ("rhat", {"min_chains": 2}),
]:  # R-hat of one chain is NaN, as in arviz
    case(f"mcmc.{_name}")(_diagnostic(getattr(M, _name), **_kw))


@case("mcmc.rank_normalize")
def _(f):
    event, x = _draws(f)
    return f.expect(M.rank_normalize(f.arg("samples", x, propagates=True)), x.shape)


@case("mcmc.summary", "mcmc.format_summary")
def _(f):
    event, x = _draws(f, min_chains=2)  # r_hat of one chain is NaN, as in arviz
    stats = M.summary(f.arg("samples", x, propagates=True), hdi_prob=f.arg("hdi_prob", 0.9))
    for value in stats.values():
        f.expect(value, event)
    text = M.format_summary(f.arg("stats", stats), max_rows=f.arg("max_rows", 5))
    assert isinstance(text, str)
    return stats


@case("mcmc.integrated_autocorrelation_time")
def _(f):
    event, x = _draws(f)
    return f.expect(M.integrated_autocorrelation_time(f.arg("samples", x, propagates=True)), event)


# ---- Potts / Swendsen-Wang


@case("mcmc.lattice_edges")
def _(f):
    h, w = f.size(1, 4), f.size(1, 4)
    periodic = f.draw(st.booleans()) and h >= 3 and w >= 3
    edges = M.lattice_edges(
        f.arg("height", h),
        f.arg("width", w),
        connectivity=f.arg("connectivity", f.draw(st.sampled_from([4, 8]))),
        periodic=f.arg("periodic", periodic),
    )
    assert edges.dim() == 2 and edges.shape[1] == 2
    assert bool(((edges >= 0) & (edges < h * w)).all())
    return edges


def _graph(f):
    h, w = f.size(1, 3), f.size(1, 3)
    return h * w, M.lattice_edges(h, w)


@case("mcmc.connected_components")
def _(f):
    n, edges = _graph(f)
    r = f.size(0, 3)
    active = torch.rand(r, edges.shape[0], generator=f.generator()) < 0.5
    out = M.connected_components(
        f.arg("edges", edges), f.arg("active", active, shape_fuzz=True), f.arg("num_nodes", n)
    )
    return f.expect(out, (r, n))


def _potts_kernel(cls):
    def run(f):
        n, edges = _graph(f)
        q = f.size(2, 4)
        kernel = cls(
            f.arg("edges", edges), f.arg("couplings", 0.7), f.arg("num_states", q), num_nodes=n
        )
        r = f.size(1, 3)
        labels = torch.randint(0, q, (r, n), generator=f.generator())
        state = kernel.init(f.arg("labels", labels, aliases=("position",)))
        state, info = kernel.step(state, f.generator())
        return f.expect(state.labels, (r, n)), info

    return run


case("mcmc.SwendsenWang")(_potts_kernel(M.SwendsenWang))
case("mcmc.PottsGibbs")(_potts_kernel(M.PottsGibbs))


@case("mcmc.potts_energy")
def _(f):
    n, edges = _graph(f)
    r, q = f.size(0, 3), f.size(2, 4)
    labels = torch.randint(0, q, (r, n), generator=f.generator())
    out = M.potts_energy(f.arg("labels", labels), f.arg("edges", edges), f.arg("couplings", 0.5))
    return f.expect(out, (r,))


@case("mcmc.magnetisation")
def _(f):
    r, n, q = f.size(0, 3), f.size(1, 6), f.size(2, 4)
    labels = torch.randint(0, q, (r, n), generator=f.generator())
    return f.expect(M.magnetisation(f.arg("labels", labels), f.arg("num_states", q)), (r,))


@case("mcmc.cluster_statistics")
def _(f):
    n, edges = _graph(f)
    r = f.size(0, 3)
    active = torch.rand(r, edges.shape[0], generator=f.generator()) < 0.5
    clusters = M.connected_components(edges, active, n)
    out = M.cluster_statistics(f.arg("clusters", clusters))
    return [f.expect(o, (r,)) for o in out]


@case("mcmc.ising_exact_energy", "mcmc.ising_exact_magnetisation")
def _(f):
    t = f.draw(st.floats(0.1, 5.0))
    e = M.ising_exact_energy(f.arg("temperature", t))
    m = M.ising_exact_magnetisation(f.arg("temperature", t))
    assert math.isfinite(e) and 0.0 <= m <= 1.0
    return e, m
