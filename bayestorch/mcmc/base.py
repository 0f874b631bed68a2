"""The kernel protocol every MCMC algorithm here follows (BlackJAX's shape, torch's shell).

A kernel is a thin ``nn.Module`` around pure step functions:

* ``state = kernel.init(position, generator=None)`` with ``position`` of shape
  ``(chains, dim)`` (the generator serves kernels that draw while initialising, e.g. a
  step-size search);
* ``state, info = kernel.step(state, generator=None)``, where ``state`` and ``info`` are
  ``NamedTuple``s of tensors whose leading dim is ``chains`` (every ``info`` field is
  ``(chains,)``);
* tuned values (step size, mass matrix, proposal scale) are **buffers**, so ``state_dict()``
  resumes a kernel; chain state never lives on ``self``;
* warm-up is optional and also functional: ``adapt_state = kernel.warmup_init(state,
  num_warmup)`` then ``adapt_state = kernel.warmup_update(adapt_state, state, info,
  iteration, generator=None)`` after each warm-up step (it writes the kernel's buffers; the
  generator is for adaptations that draw, e.g. a step-size search), and
  ``kernel.warmup_finalize(adapt_state)`` at the end. The default is no adaptation.

``log_prob_fn`` is kept as a plain attribute (never a registered submodule, even when it
is an ``nn.Module``), so ``state_dict()`` holds tuning values only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from bayestorch.utils.autograd import LogProbFn, check_log_prob_output, density_failure

__all__ = ["Kernel", "check_initial_log_prob", "check_position"]


def check_position(position: Tensor, name: str = "position") -> None:
    """Raise a clear error unless ``position`` is a floating ``(chains, dim)`` tensor."""
    if not isinstance(position, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(position).__name__}")
    if position.dim() != 2:
        raise ValueError(
            f"{name} must have shape (chains, dim), got shape {tuple(position.shape)}; "
            "for one chain use position[None]"
        )
    if not position.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {position.dtype}")
    if not bool(torch.isfinite(position).all()):
        raise ValueError(f"{name} holds NaN or inf")


def check_initial_log_prob(log_prob: Tensor, position: Tensor) -> None:
    """At ``init`` (where one host sync is affordable): shape and finiteness of log p.

    An exception the density raised at the initial position (caught by an active
    ``bayestorch.utils.autograd.DensityErrorLog``) is raised again here, with a note naming
    the chains: a run cannot start from a point where the density fails."""
    check_log_prob_output(log_prob, position)
    bad = ~torch.isfinite(log_prob)
    if bool(bad.any()):
        failure = density_failure(log_prob)
        if failure is not None:
            rows, error = failure
            note = f"log_prob_fn raised this at the initial position of chain(s) {rows[:10]}"
            if hasattr(error, "add_note"):  # Python >= 3.11; 3.10 re-raises it as it is
                error.add_note(note)
            raise error
        chains = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"log_prob_fn is not finite at the initial position of chain(s) {chains[:10]} "
            f"(values {log_prob[bad][:10].tolist()}); start inside the support"
        )


class Kernel(nn.Module):
    """Base class of MCMC kernels: ``init``/``step`` plus optional functional warm-up.

    Subclasses implement ``init`` and ``step``; adaptive kernels override the three
    ``warmup_*`` methods. Buffers may change shape during warm-up (e.g. a per-chain step
    size), so ``load_state_dict`` takes the saved shapes.
    """

    def __init__(self, log_prob_fn: LogProbFn) -> None:
        super().__init__()
        if not callable(log_prob_fn):
            raise TypeError(f"log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
        # A plain attribute, so a model passed as log_prob_fn is not saved with the kernel.
        self.__dict__["log_prob_fn"] = log_prob_fn

    def init(
        self, position: Tensor, generator: torch.Generator | None = None
    ) -> NamedTuple:  # pragma: no cover - interface
        raise NotImplementedError

    def step(
        self, state: Any, generator: torch.Generator | None = None
    ) -> tuple[Any, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    # -- warm-up protocol (no adaptation by default) -------------------------------------
    def warmup_init(self, state: Any, num_warmup: int) -> Any:
        """Adaptation state for a warm-up of ``num_warmup`` steps (``None``: nothing to adapt)."""
        return None

    def warmup_update(
        self,
        adapt_state: Any,
        state: Any,
        info: Any,
        iteration: int,
        generator: torch.Generator | None = None,
    ) -> Any:
        """Update the adaptation after warm-up step ``iteration`` (0-based); write buffers."""
        return adapt_state

    def warmup_finalize(self, adapt_state: Any) -> None:
        """Write the final tuned values into the buffers at the end of warm-up."""

    def tuning_summary(self) -> dict[str, Tensor]:
        """Tuned values worth showing on a progress bar or in a summary (e.g. step size)."""
        return {}

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ):
        # Buffers are tuned during warm-up and may have changed shape (pooled -> per chain):
        # adopt the saved shape instead of refusing the load.
        for name, buffer in self._buffers.items():
            key = prefix + name
            if key in state_dict and buffer is not None:
                saved = state_dict[key]
                if saved.shape != buffer.shape:
                    self._buffers[name] = torch.empty_like(saved, device=buffer.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
