"""The HMC family's transitions, eager or as one compiled graph call.

A transition of HMC, ChEES-HMC or NUTS runs many small steps: leapfrog steps, and for NUTS a
leaf's multinomial and U-turn bookkeeping and each doubling's merge. In eager PyTorch each of
their ~170 ATen operations per step costs microseconds of dispatch whatever the tensor size,
which is the whole cost on small models. Compiled, the whole transition after the momentum
draw is one function (``nuts._transition``, ``integrators.masked_trajectory``) whose steps
run in a ``while_loop`` (``loop``) with the loop state packed into a few tensors (``pack``),
traced with ``make_fx`` into one graph of ATen operations, the density's ``torch.func``
gradient included (``TracedDensity``), and compiled by inductor with its C++ wrapper
(``INDUCTOR_CPU_OPTIONS``): one graph call per transition, with no Python and no
``torch.compile`` guards between calls.

* Same draws: the compiled and the eager paths take the same inputs (the momentum and one
  key from which every uniform of the transition is hashed,
  ``bayestorch.utils.random.counter_uniforms``), so draws agree to round-off (tests check
  ``1e-10`` in float64).
* Compile once: inductor's FX-graph and AOTAutograd caches (``TORCHINDUCTOR_CACHE_DIR``,
  on disk) take the graphs (``while_loop`` is marked cacheable for them, see
  ``_inductor_config``): a second process with the same model and shapes traces (a second
  or so) and loads the compiled code; it lowers and compiles nothing.
* One graph: the log density must trace (no Python branches on values, ``.item()``,
  random draws): otherwise the kernel warns once, says why, and goes on eagerly.
  torch.distributions' argument checks are off while tracing (value checks cannot be in a
  graph).
* Fallback: a call whose density raises (``bayestorch.utils.autograd.DENSITY_ERRORS``) is
  rerun eagerly, where ``log_prob_and_grad`` turns the exception into a rejected proposal;
  a compiler failure warns once and the kernel stays eager.

``compile="auto"`` (the kernels' default) compiles only where it pays: see ``resolve_auto``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._higher_order_ops.while_loop import while_loop_op
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from bayestorch.utils.autograd import DENSITY_ERRORS, SCALAR_CPU_OPTIONS, LogProbFn, compiling

__all__ = [
    "AUTO_MAX_CHAINS",
    "AUTO_MIN_WARMUP",
    "INDUCTOR_CPU_OPTIONS",
    "POINTWISE_CAT_MAX_NUMEL",
    "NotCompilable",
    "TracedDensity",
    "TrajectoryFunction",
    "check_compile",
    "compile_backend",
    "compile_graph",
    "func_value_and_grad",
    "inductor_options",
    "loop",
    "pack",
    "random_ops",
    "resolve_auto",
    "tracing",
    "unpack",
]

logger = logging.getLogger(__name__)

AUTO_MIN_WARMUP = 1000
"""``compile="auto"`` compiles for a warm-up at least this long (Stan's default length). A
cold compile of NUTS costs tens of seconds on CPU, a warm one (on-disk cache) a few; a
compiled NUTS leaf on a small model saves a few hundred microseconds, so only runs of ~10^5
leapfrog steps repay a cold compile (measured in ``benchmarks/mcmc.py``)."""

AUTO_MAX_CHAINS = 16
"""``compile="auto"`` compiles for at most this many chains. A compiled transition runs
fixed-shape tensor code: every NUTS leaf reads and writes its U-turn checkpoints at all tree
levels, and the C++ is scalar (``INDUCTOR_CPU_OPTIONS``); the eager path touches only the
levels it needs with vectorised ATen kernels. Measured per NUTS leaf (CPU): 8-14x faster
compiled at 1-4 chains; at 128 chains 2-3x faster on eight schools (10-d) but 2.7x *slower*
on a 100-d Gaussian (``benchmarks/mcmc.py``)."""


INDUCTOR_CPU_OPTIONS = {"cpp_wrapper": True, **SCALAR_CPU_OPTIONS}
"""Inductor's options on CPU. A compiled trajectory is a ``while_loop`` whose body runs
thousands of times per second: with inductor's default Python wrapper each iteration pays
~1 µs per buffer it allocates or views (~150 for a NUTS leaf), with the C++ wrapper
(``cpp_wrapper``) far less. Scalar C++ (``SCALAR_CPU_OPTIONS``): torch 2.13's vectorised CPU
code for the NUTS loop corrupts the heap from ~100 chains on ("free(): invalid next size",
with or without the C++ wrapper) and computes some densities wrongly; the scalar code gives
the eager draws to 3e-14 at 100 and 3,000 chains, and on eight schools it was also faster at
128 chains (437 vs 946 µs per leaf)."""

POINTWISE_CAT_MAX_NUMEL = 64
"""Positions ``(chains, dim)`` of at most this many numbers also get inductor's
``force_pointwise_cat``: the packed loop state is computed inside the fused kernel rather
than written through a view per part. That saves allocations (eight schools, 1 chain: 54 vs
68 µs per NUTS leaf; 4 chains: equal) but recomputes shared inputs per element, which at 128
chains cost 2.8x (1,229 vs 437 µs)."""


def inductor_options(device: torch.device, numel: int) -> dict | None:
    """Inductor's options for a trajectory on ``device`` whose positions hold ``numel``
    numbers (``None``: inductor's defaults, used off CPU, where they are not measured)."""
    if device.type != "cpu":
        return None
    return {**INDUCTOR_CPU_OPTIONS, "force_pointwise_cat": numel <= POINTWISE_CAT_MAX_NUMEL}


def compile_backend() -> str:
    """The backend of compiled trajectories: the environment variable
    ``BAYESTORCH_COMPILE_BACKEND``, else ``"inductor"``. ``"aot_eager"`` traces the
    transition into the same ATen graph as inductor gets and runs that graph eagerly,
    without generating code: the test suite uses it to run every kernel test compiled in
    seconds."""
    return os.environ.get("BAYESTORCH_COMPILE_BACKEND", "inductor")


def check_compile(compile: Any) -> bool | str:
    """Validate a kernel's ``compile`` argument: ``True``, ``False`` or ``"auto"``."""
    if compile is True or compile is False or compile == "auto":
        return compile
    raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")


def _compiler_available(device: torch.device) -> tuple[bool, str]:
    if shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"):
        return True, "a C++ compiler is available"
    return False, "no C++ compiler for inductor on CPU"


def resolve_auto(num_warmup: int, chains: int, device: torch.device) -> tuple[bool, str]:
    """``compile="auto"``'s choice for a run of ``chains`` with ``num_warmup`` warm-up steps.

    Compiles on CPU (where it was measured) when a C++ compiler is found, the warm-up is at
    least ``AUTO_MIN_WARMUP`` long and there are at most ``AUTO_MAX_CHAINS`` chains. The
    choice is deterministic (never timed), so a seed gives the same draws on every machine.
    Returns ``(compile, reason)``.
    """
    if device.type != "cpu":
        return False, f"eager: compiling is not measured on {device.type} yet (compile=True)"
    available, why = _compiler_available(device)
    if not available:
        return False, f"eager: {why}"
    if chains > AUTO_MAX_CHAINS:
        return False, (
            f"eager: at {chains} > {AUTO_MAX_CHAINS} chains compiling does not pay on CPU "
            "(pass compile=True to compile anyway)"
        )
    if num_warmup < AUTO_MIN_WARMUP:
        return False, (
            f"eager: a warm-up of {num_warmup} < {AUTO_MIN_WARMUP} iterations is too short "
            "to repay compiling (pass compile=True to compile anyway)"
        )
    return True, f"compiled: {chains} chain(s), warm-up of {num_warmup} iterations, {why}"


def func_value_and_grad(log_prob_fn: LogProbFn) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``x -> (log_prob_fn(x), grad)`` through ``torch.func`` (traceable by ``torch.compile``).

    Shape: ``(chains, dim) -> (chains,), (chains, dim)``.
    """

    def summed(x: Tensor) -> tuple[Tensor, Tensor]:
        log_prob = log_prob_fn(x)
        return log_prob.sum(), log_prob

    grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

    def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        grad, (_, log_prob) = grad_and_value(x)
        return log_prob, grad

    return value_and_grad


def _layout(leaf: Any) -> tuple:
    """What a compiled graph is specialised on: a tensor's shape, stride, dtype and device;
    any other leaf's value."""
    if isinstance(leaf, Tensor):
        return (tuple(leaf.shape), leaf.stride(), leaf.dtype, leaf.device)
    return ("value", type(leaf).__name__, leaf)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _inductor_config(device: torch.device, numel: int) -> dict:
    """``inductor_options`` plus the cache and ISA settings (where this torch has them)."""
    options = dict(inductor_options(device, numel) or {})
    config = torch._inductor.config
    if hasattr(config, "unsafe_marked_cacheable_functions"):
        # Inductor's FX-graph and AOTAutograd caches skip graphs with higher-order
        # operators unless marked: a while_loop's body and condition are sub-GraphModules
        # that the cache key hashes like the main graph (their code and constants).
        options["unsafe_marked_cacheable_functions"] = {
            **config.unsafe_marked_cacheable_functions,
            _WHILE_LOOP: f"bayestorch-{_version()}",
        }
    if options.get("cpp.simdlen") == 1 and hasattr(config.cpp, "vec_isa_ok"):
        # Scalar code uses no vector ISA: skip inductor's probe of them (a C++ build and a
        # Python subprocess per ISA, ~2 s per process; see ``compile_graph``).
        options["cpp.vec_isa_ok"] = False
    return options


_WHILE_LOOP = "torch.ops.higher_order.while_loop"


def _version() -> str:
    from bayestorch import __version__

    return __version__


def compile_graph(graph: torch.fx.GraphModule, tensors: list[Tensor]) -> Callable:
    """Compile a traced ATen graph for ``tensors``' layout with ``compile_backend()``:
    inductor (``_inductor_config``), or ``"aot_eager"`` (the graph itself, run eagerly)."""
    backend = compile_backend()
    if backend == "aot_eager":
        return graph
    if backend != "inductor":
        raise ValueError(f"BAYESTORCH_COMPILE_BACKEND must be inductor or aot_eager, not {backend}")
    from torch._inductor import cpu_vec_isa

    device, numel = tensors[0].device, tensors[0].numel()
    probed = cpu_vec_isa.valid_vec_isa_list.cache_info().currsize > 0
    try:
        return torch._inductor.standalone_compile(
            graph,
            list[Any](tensors),
            dynamic_shapes="from_example_inputs",
            options={"config_patches": _inductor_config(device, numel)},
        )
    finally:
        if not probed:  # the ISA list that vec_isa_ok=False left is cached process-wide:
            cpu_vec_isa.valid_vec_isa_list.cache_clear()  # later compiles probe as usual


class TrajectoryFunction:
    """``fn(*args, log_prob_fn=..., value_and_grad=..., **static)``, eager or compiled.

    ``fn`` computes gradients through its ``value_and_grad`` keyword: ``None`` in eager
    (then ``bayestorch.utils.log_prob_and_grad``, with its guard against densities that
    raise), a traced graph of the ``torch.func`` gradient when compiled.

    Compiled, each layout of the arguments (shape, stride, dtype and device of every
    tensor, the value of every other leaf) gets one graph on its first call (``_build``):
    ``make_fx`` traces the density's value and gradient, then the whole of ``fn`` around
    them, into ATen operations on fake tensors, and ``compile_graph`` compiles that. Later
    calls run the compiled graph directly: no Python of ``fn`` or of the density, no
    ``torch.compile`` guards.

    Args:
        fn: a pure function of tensors (and ``NamedTuple``s of tensors).
        log_prob_fn: the log density ``(chains, dim) -> (chains,)``.
        compile: compile (on the first call) or stay eager.
        **static: keyword arguments fixed for this kernel (flags, thresholds).
    """

    def __init__(self, fn: Callable, log_prob_fn: LogProbFn, compile: bool, **static) -> None:
        self.fn = fn
        self.log_prob_fn = log_prob_fn
        self.static = static
        self.compiled = bool(compile)
        self._calls: dict[tuple, Callable[[list], Any]] = {}

    def eager(self, *args):
        return self.fn(*args, log_prob_fn=self.log_prob_fn, value_and_grad=None, **self.static)

    def _trace_density(self, position: Tensor) -> TracedDensity:
        """The density's value and gradient at ``position``'s layout as a ``make_fx`` graph
        (fake tensors: no value is seen, so a branch on a value fails rather than being
        baked in)."""
        try:
            graph = make_fx(
                func_value_and_grad(self.log_prob_fn),
                tracing_mode="fake",
                _allow_non_fake_inputs=True,
            )(position.detach())
        except Exception as error:
            raise NotCompilable(
                f"the log density cannot be traced into a graph ({_first_line(error)}). A "
                "compiled trajectory is one graph, log density included: Python branches on "
                "tensor values, .item() or prints in the log density prevent it (use "
                "torch.where; raise from torch ops, e.g. a Cholesky, not Python)"
            ) from error
        random = random_ops(graph)
        if random:  # e.g. a subsampled plate: a graph would not draw from the user's generator
            raise NotCompilable(
                f"the log density draws random numbers ({', '.join(random)}; a subsampled "
                "plate?), which a compiled trajectory would not draw from the kernel's "
                "generator"
            )
        return TracedDensity(graph)

    def _build(self, leaves: list, spec: TreeSpec) -> Callable[[list], Any]:
        """One compiled graph for this layout of the arguments (their pytree ``leaves``)."""
        index = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor)]
        tensors = [leaves[i].detach() for i in index]
        value_and_grad = self._trace_density(tensors[0])
        fn, static, out_spec = self.fn, self.static, []

        def flat(*tensors):
            filled = list(leaves)
            for i, t in zip(index, tensors):
                filled[i] = t
            out = fn(
                *tree_unflatten(filled, spec),
                log_prob_fn=lambda x: value_and_grad(x)[0],
                value_and_grad=value_and_grad,
                **static,
            )
            out_leaves, treespec = tree_flatten(out)
            out_spec.append(treespec)
            return out_leaves

        with tracing(value_and_grad):
            graph = make_fx(flat, tracing_mode="fake", _allow_non_fake_inputs=True)(*tensors)
        run = compile_graph(graph, tensors)

        def call(leaves: list):
            return tree_unflatten(list(run(*[leaves[i] for i in index])), out_spec[-1])

        return call

    def _compiled_call(self, leaves: list, spec: TreeSpec) -> Callable[[list], Any]:
        key = (str(spec), *map(_layout, leaves))
        call = self._calls.get(key)
        if call is None:
            # torch.distributions' argument checks branch on values: off while tracing
            # (restored after; the graph has none).
            with compiling(validate_args=False, quiet=True):
                call = self._calls[key] = self._build(leaves, spec)
        return call

    def __call__(self, *args):
        if not self.compiled:
            return self.eager(*args)
        leaves, spec = tree_flatten(args)
        try:
            call = self._compiled_call(leaves, spec)
        except Exception as error:  # tracing or compiling failed: say why, go on eagerly
            self.compiled = False
            name = self.fn.__name__
            why = (
                f"{name} is not compiled: {error}"
                if isinstance(error, NotCompilable)
                else f"torch.compile failed on {name} ({_first_line(error)})"
            )
            warnings.warn(
                f"{why}; this kernel goes on eagerly.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(*args)
        try:
            return call(leaves)
        except DENSITY_ERRORS:
            # The density raised at some chains: the eager path's guard rejects them.
            return self.eager(*args)


class NotCompilable(Exception):
    """A log density that cannot be one graph with the trajectory (the message says why)."""


class TracedDensity:
    """A log density's value and gradient as a ``make_fx`` graph whose tensor constants
    (the model's data) are inputs: ``x -> (log_prob, grad)``, shapes ``(chains, dim) ->
    (chains,), (chains, dim)``.

    A loop body may not hold constants of its own (AOTAutograd's functionalisation of a
    ``while_loop`` rejects them), so while a trajectory is traced (``tracing``) every
    ``loop`` passes the constants of the densities in use as loop inputs, and the body's
    calls read them from its arguments (``bound``).
    """

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        self.constants: list[Tensor] = []
        placeholders: dict[int, torch.fx.Node] = {}  # one input per constant tensor
        storages: set[int] = set()
        last = next(iter(reversed(graph.graph.find_nodes(op="placeholder"))))
        for node in list(graph.graph.nodes):
            value = getattr(graph, str(node.target), None) if node.op == "get_attr" else None
            if not isinstance(value, Tensor):
                continue
            if id(value) not in placeholders:
                storage = value.untyped_storage().data_ptr()
                # Loop inputs must not alias: two views of one buffer get a copy each.
                self.constants.append(value.clone() if storage in storages else value)
                storages.add(storage)
                with graph.graph.inserting_after(last):
                    last = graph.graph.placeholder(f"constant_{len(self.constants) - 1}")
                placeholders[id(value)] = last
            node.replace_all_uses_with(placeholders[id(value)])
            graph.graph.erase_node(node)
        graph.graph._codegen = torch.fx.graph.CodeGen()  # plain positional arguments
        graph.recompile()
        self.graph = graph
        self.bound: tuple[Tensor, ...] | None = None

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        constants = self.constants if self.bound is None else self.bound
        log_prob, grad = self.graph(x, *constants)
        return log_prob, grad


_tracing: list[TracedDensity] = []  # densities whose constants loops pass on (while tracing)


@contextlib.contextmanager
def tracing(density: TracedDensity):
    """While tracing a trajectory that calls ``density``: see ``TracedDensity``."""
    _tracing.append(density)
    try:
        yield
    finally:
        _tracing.remove(density)


def loop(
    cond: Callable[..., Tensor],
    body: Callable[..., tuple[Tensor, ...]],
    carried: tuple[Tensor, ...],
    inputs: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """``while cond(*carried, *inputs): carried = body(*carried, *inputs)``; returns
    ``carried``. torch's ``while_loop`` operator called directly: ``cond`` and ``body`` must
    read no tensor but their arguments (``inputs`` are the loop-invariant ones, and the
    constants of the densities being traced are added to them, see ``TracedDensity``).
    Inside a ``make_fx`` trace this records one ``while_loop`` node; ``torch.while_loop``
    itself would first run dynamo over the loop to find the tensors the functions close
    over, and dynamo keeps one cache for every loop of the process (a second layout is
    traced with symbolic sizes, a ninth hits its recompilation limit). Eagerly it is a
    Python loop.
    """
    densities = list(_tracing)
    lifted = tuple(t for d in densities for t in (d.bound or d.constants))
    own = len(carried) + len(inputs)

    def binding(fn):
        def bound(*args):
            saved = [d.bound for d in densities]
            offset = own
            for d in densities:
                d.bound = args[offset : offset + len(d.constants)]
                offset += len(d.constants)
            try:
                return fn(*args[:own])
            finally:
                for d, b in zip(densities, saved):
                    d.bound = b

        return bound

    return while_loop_op(binding(cond), binding(body), tuple[Any, ...](carried), (*inputs, *lifted))


def pack(tensors: list[Tensor], copy: bool = True) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """Stack tensors of equal dtype and shape: a compiled loop's carried state as a few
    tensors, not ~50 (each costs an allocation and checks per iteration). Returns the
    stacks and each tensor's (stack, index). Stacks are new memory; with ``copy=False`` a
    tensor alone in its group is only given a leading dim (a view: for a loop body's
    outputs, which are new tensors already).
    """
    groups: dict[tuple, int] = {}
    members: list[list[Tensor]] = []
    layout = []
    for t in tensors:
        group = groups.setdefault((t.dtype, t.shape), len(members))
        if group == len(members):
            members.append([])
        layout.append((group, len(members[group])))
        members[group].append(t)
    return [
        m[0].unsqueeze(0) if len(m) == 1 and not copy else torch.stack(m) for m in members
    ], layout


def unpack(stacks, layout: list[tuple[int, int]]) -> list[Tensor]:
    """The tensors ``pack`` stacked (views of the stacks)."""
    return [stacks[group][index] for group, index in layout]


def random_ops(graph: torch.fx.GraphModule) -> list[str]:
    """The random ATen operations of a traced graph (``nondeterministic_seeded``)."""
    return sorted(
        {
            str(node.target)
            for node in graph.graph.nodes
            if isinstance(node.target, torch._ops.OpOverload)
            and torch.Tag.nondeterministic_seeded in node.target.tags
        }
    )


def log_compile_choice(kernel_name: str, reason: str) -> None:
    """Say which path ``compile="auto"`` took and why (``logging``, level INFO)."""
    logger.info("%s compile='auto': %s", kernel_name, reason)
