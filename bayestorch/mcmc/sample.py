"""The sampling runner: warm-up, draws, statistics, progress and resumable snapshots.

``sample`` drives any kernel that follows the protocol of ``bayestorch.mcmc.base``. Chain
state, adaptation state and collected draws stay on the device of ``initial_position``;
the host only looks at them to refresh the progress bar every ``refresh_every`` iterations.

Resuming: pass ``checkpoint_fn`` and it receives a snapshot dict (tensors and plain values
only, ``torch.save``-able with ``weights_only=True``) every ``checkpoint_every`` iterations;
pass such a snapshot back as ``resume=`` with the same arguments and the run continues
exactly where it stopped (same draws as an uninterrupted run, given a ``generator``). The
library never writes files itself: ``bayestorch.experiment`` saves snapshots atomically.

Independent chain groups and ``torch.distributed``: with ``chain_groups=G`` the chains
split into ``G`` groups, each run by its own copy of the kernel with its own generator
(seeded by a draw from ``generator``), so a group's draws depend on nothing outside it.
Under an initialised process group of ``W`` processes (e.g. ``torchrun``) each rank runs
``G / W`` of the groups (``G = W`` by default) and the results are all-gathered: the
draws equal those of one process with ``chain_groups=W``, whatever the kernel, because
each rank performs exactly the computation that process performs for its groups. (One
shared generator sliced by rank would not be exact: NUTS and slice sampling draw a
data-dependent number of variates for the batch as a whole.) Chains of different groups
do not pool their warm-up adaptation, as with independent runs (Stan's chains).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree
from tqdm.auto import tqdm

from bayestorch.mcmc import diagnostics
from bayestorch.mcmc.base import Kernel, check_position
from bayestorch.mcmc.chees import ChEESHMC
from bayestorch.mcmc.hmc import HMC
from bayestorch.mcmc.metropolis import RandomWalkMetropolis
from bayestorch.mcmc.nuts import NUTS
from bayestorch.mcmc.slice import SliceSampler
from bayestorch.utils import distributed as collectives
from bayestorch.utils.autograd import DensityErrorLog, DensityErrorWarning, LogProbFn
from bayestorch.utils.random import check_generator_device

__all__ = ["KERNELS", "SampleResult", "sample"]

KERNELS: dict[str, type[Kernel]] = {
    "nuts": NUTS,
    "hmc": HMC,
    "chees": ChEESHMC,
    "rwm": RandomWalkMetropolis,
    "slice": SliceSampler,
}
"""Kernels that ``sample(kernel=<name>)`` builds from ``log_prob_fn`` and ``**kernel_kwargs``."""

# arviz's names for the statistics (``diverging`` is arviz's name for ``is_divergent``).
_ARVIZ_STAT_NAMES = {
    "accept_prob": "acceptance_rate",
    "is_divergent": "diverging",
    "energy": "energy",
    "num_steps": "n_steps",
    "tree_depth": "tree_depth",
    "step_size": "step_size",
}


@dataclass
class SampleResult:
    """Draws and per-draw statistics of a run.

    ``stats["num_density_errors"]`` counts, per chain and transition, the evaluations of
    ``log_prob_fn`` that raised an exception (see ``bayestorch.utils.autograd``): each
    rejected the point, which ends an HMC/ChEES trajectory as divergent, a NUTS trajectory
    as divergent when the chain was still building it (NUTS also evaluates, in lockstep,
    chains whose trajectory had ended), and is a rejected proposal or a point outside the
    slice for Metropolis and slice sampling. ``num_density_errors`` sums them over the run.

    Shape:
        ``samples``: ``(chains, draws, dim)``; each ``stats[name]``: ``(chains, draws)``,
        keyed by the kernel's Info field names (``accept_prob``, ``is_divergent``, …) plus
        ``num_density_errors``.
    """

    samples: Tensor
    stats: dict[str, Tensor]
    kernel: Kernel
    final_state: Any = None
    warmup_stats: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_divergent(self) -> Tensor:
        """Divergent transitions after warm-up, per chain ``(chains,)`` (zeros if not tracked)."""
        div = self.stats.get("is_divergent")
        if div is None:
            return torch.zeros(self.samples.shape[0], dtype=torch.long)
        return div.sum(1)

    @property
    def num_density_errors(self) -> Tensor:
        """Exceptions of ``log_prob_fn`` over warm-up and draws, per chain ``(chains,)``."""
        total = torch.zeros(self.samples.shape[0], dtype=torch.long, device=self.samples.device)
        for stats in (self.warmup_stats, self.stats):
            if "num_density_errors" in stats:
                total = total + stats["num_density_errors"].sum(1)
        return total

    def summary(self) -> dict[str, Tensor]:
        """Per coordinate: mean, sd, MCSE, bulk and tail ESS, rank-normalised split R-hat.

        Shape: each value ``(dim,)``.
        """
        return diagnostics.summary(self.samples)

    def summary_table(self, names: list[str] | None = None, max_rows: int = 30) -> str:
        """``summary()`` as a fixed-width text table, plus divergences and mean acceptance."""
        table = diagnostics.format_summary(self.summary(), names=names, max_rows=max_rows)
        lines = [table, f"divergent transitions: {int(self.num_divergent.sum())}"]
        if "accept_prob" in self.stats:
            lines.append(
                f"mean acceptance statistic: {float(self.stats['accept_prob'].mean()):.3f}"
            )
        return "\n".join(lines)

    def to_arviz(self, var_name: str = "x", names: list[str] | None = None):
        """An ``arviz.InferenceData`` (needs arviz): posterior ``var_name`` with dims
        ``(chain, draw, <var_name>_dim)`` and sample stats under arviz's names:
        ``is_divergent`` becomes ``diverging``, ``accept_prob`` ``acceptance_rate``,
        ``num_steps`` ``n_steps`` (the same values); other statistics keep their names."""
        try:
            import arviz
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_arviz() needs arviz: pip install arviz") from error
        coords = {f"{var_name}_dim": names} if names is not None else None
        stats = {
            _ARVIZ_STAT_NAMES.get(k, k): v.detach().cpu().numpy() for k, v in self.stats.items()
        }
        return arviz.from_dict(
            posterior={var_name: self.samples.detach().cpu().numpy()},
            sample_stats=stats,
            coords=coords,
            dims={var_name: [f"{var_name}_dim"]} if names is not None else None,
        )


def _make_kernel(kernel, log_prob_fn, kernel_kwargs) -> Kernel:
    if isinstance(kernel, Kernel):
        if kernel_kwargs:
            raise TypeError(
                f"kernel options {sorted(kernel_kwargs)} apply only when kernel is a name; "
                "pass them to the kernel's constructor instead"
            )
        return kernel
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
        if log_prob_fn is None:
            raise TypeError(f"kernel={kernel!r} needs log_prob_fn")
        return KERNELS[kernel](log_prob_fn, **kernel_kwargs)
    raise TypeError(f"kernel must be a name or a Kernel instance, got {type(kernel).__name__}")


def _to_device(value: Any, device: torch.device) -> Any:
    return pytree.tree_map(lambda v: v.to(device) if isinstance(v, Tensor) else v, value)


def _rng_state(generator: torch.Generator | None) -> Tensor:
    return generator.get_state() if generator is not None else torch.get_rng_state()


def _set_rng_state(generator: torch.Generator | None, state: Tensor) -> None:
    if generator is not None:
        generator.set_state(state)
    else:
        torch.set_rng_state(state)


class _Recorder:
    """Preallocated (chains, draws, ...) buffers on the chains' device, filled column by column."""

    def __init__(self, num_draws: int) -> None:
        self.num_draws = num_draws
        self.buffers: dict[str, Tensor] = {}

    def record(self, index: int, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            if name not in self.buffers:
                shape = (value.shape[0], self.num_draws) + tuple(value.shape[1:])
                self.buffers[name] = torch.zeros(shape, dtype=value.dtype, device=value.device)
            self.buffers[name][:, index] = value

    def filled(self, count: int) -> dict[str, Tensor]:
        return {name: buf[:, :count].clone() for name, buf in self.buffers.items()}

    def load(self, saved: dict[str, Tensor]) -> None:
        for name, value in saved.items():
            shape = (value.shape[0], self.num_draws) + tuple(value.shape[2:])
            self.buffers[name] = torch.zeros(shape, dtype=value.dtype, device=value.device)
            self.buffers[name][:, : value.shape[1]] = value


def _refresh(bar, kernel: Kernel, warming: bool, accept: Tensor | None, divergent: Tensor) -> None:
    postfix = {} if accept is None else {"accept": f"{float(accept):.2f}"}
    postfix.update({k: f"{float(v):.3g}" for k, v in kernel.tuning_summary().items()})
    postfix["divergent"] = int(divergent)
    bar.set_description("warmup" if warming else "sample")
    bar.set_postfix(postfix, refresh=False)


class _Chains:
    """One group of chains driven by one kernel and one generator: state, warm-up, records."""

    def __init__(
        self,
        kernel: Kernel,
        initial_position: Tensor,
        generator: torch.Generator | None,
        num_warmup: int,
        num_samples: int,
        thin: int,
        resume: dict[str, Any] | None,
    ) -> None:
        self.kernel, self.generator = kernel, generator
        self.num_warmup, self.thin = num_warmup, thin
        self.warmup_rec, self.draw_rec = _Recorder(num_warmup), _Recorder(num_samples // thin)
        # Inside this log, an exception of log_prob_fn rejects the proposal (per chain);
        # at the initial position it is raised (check_initial_log_prob).
        self.errors = DensityErrorLog(initial_position.shape[0])
        self.device = initial_position.device
        if resume is None:
            with self.errors:
                self.state = kernel.init(initial_position, generator=generator)
            self.adapt_state = kernel.warmup_init(self.state, num_warmup) if num_warmup else None
            return
        # A snapshot loaded from disk may sit on the CPU: move it to the chains' device
        # (the RNG state stays the CPU byte tensor torch's generators expect).
        resume = {
            k: v if k == "rng_state" else _to_device(v, initial_position.device)
            for k, v in resume.items()
        }
        kernel.load_state_dict(resume["kernel"])
        with self.errors:
            template = kernel.init(initial_position, generator=generator)
        self.state = pytree.tree_unflatten(list(resume["state"]), pytree.tree_flatten(template)[1])
        self.adapt_state = None
        if num_warmup > 0:
            adapt_template = kernel.warmup_init(self.state, num_warmup)
            kernel.load_state_dict(resume["kernel"])  # warmup_init may reshape buffers
            self.adapt_state = pytree.tree_unflatten(
                list(resume["adapt_state"]), pytree.tree_flatten(adapt_template)[1]
            )
        self.warmup_rec.load(resume["warmup_stats"])
        self.draw_rec.load(resume["draws"])
        _set_rng_state(generator, resume["rng_state"])

    def step(self, iteration: int) -> tuple[Any, dict[str, Tensor]]:
        """Transition ``iteration`` (0-based, warm-up first): returns the Info and its
        per-chain statistics."""
        kernel, generator = self.kernel, self.generator
        with self.errors:
            self.state, info = kernel.step(self.state, generator=generator)
            if iteration < self.num_warmup:  # (a step-size search evaluates the density)
                self.adapt_state = kernel.warmup_update(
                    self.adapt_state, self.state, info, iteration, generator=generator
                )
        # Per-chain statistics only: (chains, dim) fields of an Info serve adaptation.
        stats = {k: v for k, v in info._asdict().items() if v.dim() == 1}
        stats["num_density_errors"] = self.errors.take(self.device)
        if iteration < self.num_warmup:
            self.warmup_rec.record(iteration, stats)
            if iteration == self.num_warmup - 1:
                kernel.warmup_finalize(self.adapt_state)
        else:
            index = iteration - self.num_warmup
            if (index + 1) % self.thin == 0:
                self.draw_rec.record(
                    index // self.thin, {"__position__": self.state.position, **stats}
                )
        return info, stats

    def snapshot(self, done: int) -> dict[str, Any]:
        """The resumable state after ``done`` transitions."""
        return {
            "iteration": done,
            "kernel": self.kernel.state_dict(),
            "state": pytree.tree_flatten(self.state)[0],
            "adapt_state": pytree.tree_flatten(self.adapt_state)[0],
            "warmup_stats": self.warmup_rec.filled(min(done, self.num_warmup)),
            "draws": self.draw_rec.filled(max(done - self.num_warmup, 0) // self.thin),
            "rng_state": _rng_state(self.generator),
        }


def _cat_dicts(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}


class _Plan:
    """How the chains split into independently seeded groups and the groups over ranks.

    Group ``g`` holds chains ``bounds[g]:bounds[g + 1]`` and is run by rank
    ``g // (num_groups // world_size)``; ``local`` lists this rank's groups.
    """

    def __init__(self, num_chains: int, chain_groups: int | None, distributed: bool | None):
        if distributed is None:
            distributed = collectives.is_distributed()
        elif distributed and not collectives.is_initialized():
            raise ValueError(
                "distributed=True needs an initialised torch.distributed process group "
                "(e.g. launch with torchrun and call torch.distributed.init_process_group)"
            )
        self.distributed = bool(distributed)
        self.world = collectives.world_size() if self.distributed else 1
        self.rank = collectives.rank() if self.distributed else 0
        groups = self.world if chain_groups is None else chain_groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"chain_groups must be a positive int or None, got {chain_groups!r}")
        if groups % self.world or groups > num_chains:
            raise ValueError(
                f"chain_groups must be a multiple of the world size {self.world} and at most "
                f"the number of chains {num_chains}, got {groups}"
            )
        self.num_groups = groups
        sizes = [len(c) for c in torch.arange(num_chains).tensor_split(groups)]
        self.bounds = [sum(sizes[:g]) for g in range(groups + 1)]
        per_rank = groups // self.world
        self.local = list(range(self.rank * per_rank, (self.rank + 1) * per_rank))

    @property
    def grouped(self) -> bool:
        return self.num_groups > 1 or self.distributed

    def chains(self, group: int) -> slice:
        return slice(self.bounds[group], self.bounds[group + 1])


def _group_generators(plan: _Plan, generator: torch.Generator | None, device) -> list:
    """One fresh generator per local group, seeded from ``generator`` (rank 0's draw)."""
    seeds = torch.randint(2**62, (plan.num_groups,), generator=generator, device=device)
    seeds = collectives.broadcast_object(seeds.tolist()) if plan.distributed else seeds.tolist()
    return [torch.Generator(device=device).manual_seed(seeds[g]) for g in plan.local]


def _group_resume(resume: dict[str, Any], plan: _Plan, group: int) -> dict[str, Any]:
    if "groups" not in resume or len(resume["groups"]) != plan.num_groups:
        found = len(resume["groups"]) if "groups" in resume else 1
        raise ValueError(
            f"resume snapshot holds {found} chain group(s) but this run has "
            f"{plan.num_groups}: resume with the same chain_groups and world size"
        )
    chains = plan.chains(group)
    return {
        **resume["groups"][group],
        "iteration": resume["iteration"],
        "draws": {k: v[chains] for k, v in resume["draws"].items()},
        "warmup_stats": {k: v[chains] for k, v in resume["warmup_stats"].items()},
    }


def _grouped_snapshot(plan: _Plan, runs: list[_Chains], done: int) -> dict[str, Any]:
    """Every group's snapshot (gathered from all ranks, on the CPU) in one resumable dict;
    ``draws``/``warmup_stats``/``kernel`` are laid out as an ungrouped snapshot's."""
    cpu = torch.device("cpu")
    local = [_to_device(run.snapshot(done), cpu) for run in runs]
    if plan.distributed:
        local = [snap for part in collectives.gather_objects(local) for snap in part]
    return {
        "iteration": done,
        "kernel": local[0]["kernel"],
        "draws": _cat_dicts([s.pop("draws") for s in local]),
        "warmup_stats": _cat_dicts([s.pop("warmup_stats") for s in local]),
        "groups": [{k: v for k, v in s.items() if k != "iteration"} for s in local],
    }


def _gather(plan: _Plan, value: Tensor) -> Tensor:
    return collectives.all_gather_cat(value) if plan.distributed else value


def sample(
    log_prob_fn: LogProbFn | None,
    initial_position: Tensor,
    kernel: str | Kernel = "nuts",
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    thin: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = True,
    refresh_every: int = 20,
    checkpoint_fn: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = 100,
    resume: dict[str, Any] | None = None,
    chain_groups: int | None = None,
    distributed: bool | None = None,
    **kernel_kwargs: Any,
) -> SampleResult:
    """Run warm-up (adapting the kernel) then ``num_samples`` transitions of every chain.

    Args:
        log_prob_fn: unnormalised log density ``(chains, dim) -> (chains,)``; may be ``None``
            when ``kernel`` is an instance (it has its own).
        initial_position: ``(chains, dim)``; its device and dtype are the run's.
        kernel: a name in ``KERNELS`` (``"nuts"``, ``"hmc"``, ``"chees"``, ``"rwm"``,
            ``"slice"``; built with ``**kernel_kwargs``) or a ``Kernel`` instance.
        num_warmup: adaptation transitions (not returned, except in ``warmup_stats``).
        num_samples: transitions kept (every ``thin``-th one is stored).
        generator: on the device of ``initial_position``; same seed, same draws.
        progress: a tqdm bar with acceptance, tuned step size and divergences.
        checkpoint_fn, checkpoint_every, resume: see the module docstring.
        chain_groups: split the chains into this many contiguous groups, each an
            independent sampler: its own copy of the kernel (own adaptation) and its own
            generator, seeded by a draw from ``generator``. Default: the world size when
            distributed, else 1 (no groups: one kernel and ``generator`` drive all chains).
        distributed: split the groups over the ranks of the initialised
            ``torch.distributed`` process group (rank ``r`` runs groups
            ``r * G / W ... (r + 1) * G / W - 1``). Default: whenever a group of more than
            one process is initialised. Every rank passes the same arguments; rank 0's
            ``initial_position`` and group seeds are broadcast.

    Distributed runs: because a group's randomness depends only on its own seed and its
    own chains, the draws of ``W`` ranks equal, bit for bit, those of one process run with
    ``chain_groups=W`` and the same ``generator`` seed. Every rank returns the *full*
    result (samples and statistics of all chains, gathered with ``all_gather``), so
    ``summary()`` (R-hat, ESS) covers all chains on any rank and experiment code needs no
    rank checks; ``kernel`` and ``final_state`` are this rank's first local group's.
    ``checkpoint_fn`` is called on every rank with the same snapshot of all groups (let
    rank 0 write it).

    Shape:
        returns ``SampleResult`` with ``samples (chains, num_samples // thin, dim)``.
    """
    check_position(initial_position, "initial_position")
    check_generator_device(generator, initial_position.device)
    if num_warmup < 0 or num_samples < 1 or thin < 1:
        raise ValueError(
            f"need num_warmup >= 0, num_samples >= 1, thin >= 1; got {num_warmup}, "
            f"{num_samples}, {thin}"
        )
    kernel = _make_kernel(kernel, log_prob_fn, kernel_kwargs)
    plan = _Plan(initial_position.shape[0], chain_groups, distributed)
    args = (num_warmup, num_samples, thin)
    if not plan.grouped:
        if resume is not None and "groups" in resume:
            _group_resume(resume, plan, 0)  # raises: a grouped snapshot
        runs = [_Chains(kernel, initial_position, generator, *args, resume)]
    else:
        if plan.distributed:  # every rank starts from rank 0's positions
            initial_position = initial_position.clone()
            torch.distributed.broadcast(initial_position, src=0)
        generators = _group_generators(plan, generator, initial_position.device)
        # Fresh copies of the kernel before any group initialises it (the model behind
        # log_prob_fn is shared, not copied).
        memo = {id(kernel.log_prob_fn): kernel.log_prob_fn}
        kernels = [kernel] + [copy.deepcopy(kernel, dict(memo)) for _ in plan.local[1:]]
        runs = [
            _Chains(
                k,
                initial_position[plan.chains(g)],
                gen,
                *args,
                None if resume is None else _group_resume(resume, plan, g),
            )
            for k, gen, g in zip(kernels, generators, plan.local)
        ]
    start = 0 if resume is None else int(resume["iteration"])
    num_draws = num_samples // thin

    total = num_warmup + num_samples
    progress = progress and plan.rank == 0
    bar = tqdm(total=total, initial=start, disable=not progress, desc="warmup", leave=False)
    # Running sums on the device (no sync); the host reads them only to refresh the bar.
    zero = torch.zeros((), device=initial_position.device)
    accept_sum, divergent_sum, count = zero, zero, 0
    try:
        for iteration in range(start, total):
            steps = [run.step(iteration) for run in runs]
            if progress:
                if iteration == num_warmup:  # the bar reports the sampling phase afresh
                    accept_sum, divergent_sum, count = zero, zero, 0
                infos = [info for info, _ in steps]
                if "accept_prob" in steps[0][1]:  # (the slice sampler has none)
                    accept_sum = accept_sum + torch.cat([i.accept_prob for i in infos]).mean()
                if "is_divergent" in steps[0][1]:
                    divergent_sum = divergent_sum + sum(i.is_divergent.sum() for i in infos)
                count += 1
                bar.update(1)
                if (iteration + 1) % refresh_every == 0 or iteration + 1 == total:
                    _refresh(
                        bar,
                        runs[0].kernel,
                        iteration < num_warmup,
                        accept_sum / count if "accept_prob" in steps[0][1] else None,
                        divergent_sum,
                    )
            if checkpoint_fn is not None and (iteration + 1) % checkpoint_every == 0:
                if plan.grouped:
                    checkpoint_fn(_grouped_snapshot(plan, runs, iteration + 1))
                else:
                    checkpoint_fn(runs[0].snapshot(iteration + 1))
    finally:
        bar.close()
    draws = _cat_dicts([run.draw_rec.filled(num_draws) for run in runs])
    warmup_stats = _cat_dicts([run.warmup_rec.filled(num_warmup) for run in runs])
    if plan.grouped:
        draws = {k: _gather(plan, v) for k, v in draws.items()}
        warmup_stats = {k: _gather(plan, v) for k, v in warmup_stats.items()}
    samples = draws.pop("__position__")
    result = SampleResult(samples, draws, runs[0].kernel, runs[0].state, warmup_stats)
    _warn_density_errors(result, runs)
    return result


def _warn_density_errors(result: SampleResult, runs: list[_Chains]) -> None:
    """One warning per run when ``log_prob_fn`` raised at some proposals (one host sync)."""
    per_chain = result.num_density_errors
    total = int(per_chain.sum())
    if total == 0:
        return
    first = next((run.errors.first_error for run in runs if run.errors.first_error), None)
    message = str(first)[:200] + ("..." if len(str(first)) > 200 else "")
    example = f"; the first: {type(first).__name__}: {message}" if first is not None else ""
    chains = per_chain.nonzero().flatten().tolist()
    warnings.warn(
        f"log_prob_fn raised an exception at {total} point(s) of chain(s) {chains[:10]}"
        f"{example}. Each point was rejected (a divergent trajectory for the HMC family) and "
        "the run went on; result.num_density_errors and stats['num_density_errors'] count "
        "them per chain",
        DensityErrorWarning,
        stacklevel=3,
    )
