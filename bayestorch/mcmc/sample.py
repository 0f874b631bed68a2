"""The sampling runner: warm-up, draws, statistics, progress and resumable snapshots.

``sample`` drives any kernel that follows the protocol of ``bayestorch.mcmc.base``. Chain
state, adaptation state and collected draws stay on the device of ``initial_position``;
the host only looks at them to refresh the progress bar every ``refresh_every`` iterations.

Resuming: pass ``checkpoint_fn`` and it receives a snapshot dict (tensors and plain values
only, ``torch.save``-able with ``weights_only=True``) every ``checkpoint_every`` iterations;
pass such a snapshot back as ``resume=`` with the same arguments and the run continues
exactly where it stopped (same draws as an uninterrupted run, given a ``generator``). The
library never writes files itself: ``bayestorch.experiment`` saves snapshots atomically.
"""

from __future__ import annotations

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
from bayestorch.utils.autograd import LogProbFn
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

    Shape:
        ``samples``: ``(chains, draws, dim)``; each ``stats[name]``: ``(chains, draws)``,
        keyed by the kernel's Info field names (``accept_prob``, ``is_divergent``, …).
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
        ``(chain, draw, <var_name>_dim)`` and sample stats under arviz's names."""
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


def _refresh(bar, kernel: Kernel, warming: bool, accept: Tensor, divergent: Tensor) -> None:
    postfix = {"accept": f"{float(accept):.2f}"}
    postfix.update({k: f"{float(v):.3g}" for k, v in kernel.tuning_summary().items()})
    postfix["divergent"] = int(divergent)
    bar.set_description("warmup" if warming else "sample")
    bar.set_postfix(postfix, refresh=False)


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
    num_draws = num_samples // thin
    warmup_rec, draw_rec = _Recorder(num_warmup), _Recorder(num_draws)

    if resume is None:
        state = kernel.init(initial_position, generator=generator)
        adapt_state = kernel.warmup_init(state, num_warmup) if num_warmup > 0 else None
        start = 0
    else:
        # A snapshot loaded from disk may sit on the CPU: move it to the chains' device
        # (the RNG state stays the CPU byte tensor torch's generators expect).
        resume = {
            k: v if k == "rng_state" else _to_device(v, initial_position.device)
            for k, v in resume.items()
        }
        kernel.load_state_dict(resume["kernel"])
        template = kernel.init(initial_position, generator=generator)
        state = pytree.tree_unflatten(list(resume["state"]), pytree.tree_flatten(template)[1])
        adapt_state = None
        if num_warmup > 0:
            adapt_template = kernel.warmup_init(state, num_warmup)
            kernel.load_state_dict(resume["kernel"])  # warmup_init may reshape buffers
            adapt_state = pytree.tree_unflatten(
                list(resume["adapt_state"]), pytree.tree_flatten(adapt_template)[1]
            )
        warmup_rec.load(resume["warmup_stats"])
        draw_rec.load(resume["draws"])
        _set_rng_state(generator, resume["rng_state"])
        start = int(resume["iteration"])

    total = num_warmup + num_samples
    bar = tqdm(total=total, initial=start, disable=not progress, desc="warmup", leave=False)
    # Running sums on the device (no sync); the host reads them only to refresh the bar.
    zero = torch.zeros((), device=initial_position.device)
    accept_sum, divergent_sum, count = zero, zero, 0
    try:
        for iteration in range(start, total):
            state, info = kernel.step(state, generator=generator)
            # Per-chain statistics only: (chains, dim) fields of an Info serve adaptation.
            stats = {k: v for k, v in info._asdict().items() if v.dim() == 1}
            if iteration < num_warmup:
                warmup_rec.record(iteration, stats)
                adapt_state = kernel.warmup_update(
                    adapt_state, state, info, iteration, generator=generator
                )
                if iteration == num_warmup - 1:
                    kernel.warmup_finalize(adapt_state)
            else:
                index = iteration - num_warmup
                if (index + 1) % thin == 0:
                    draw_rec.record(index // thin, {"__position__": state.position, **stats})
            if progress:
                if iteration == num_warmup:  # the bar reports the sampling phase afresh
                    accept_sum, divergent_sum, count = zero, zero, 0
                accept_sum = accept_sum + info.accept_prob.mean()
                if "is_divergent" in stats:
                    divergent_sum = divergent_sum + info.is_divergent.sum()
                count += 1
                bar.update(1)
                if (iteration + 1) % refresh_every == 0 or iteration + 1 == total:
                    _refresh(bar, kernel, iteration < num_warmup, accept_sum / count, divergent_sum)
            if checkpoint_fn is not None and (iteration + 1) % checkpoint_every == 0:
                checkpoint_fn(
                    {
                        "iteration": iteration + 1,
                        "kernel": kernel.state_dict(),
                        "state": pytree.tree_flatten(state)[0],
                        "adapt_state": pytree.tree_flatten(adapt_state)[0],
                        "warmup_stats": warmup_rec.filled(min(iteration + 1, num_warmup)),
                        "draws": draw_rec.filled(max(iteration + 1 - num_warmup, 0) // thin),
                        "rng_state": _rng_state(generator),
                    }
                )
    finally:
        bar.close()
    draws = draw_rec.filled(num_draws)
    samples = draws.pop("__position__")
    return SampleResult(samples, draws, kernel, state, warmup_rec.filled(num_warmup))
