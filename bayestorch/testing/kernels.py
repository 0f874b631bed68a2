"""Driving an MCMC kernel in tests: a fixed number of plain steps, no warm-up."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bayestorch.mcmc.base import Kernel

__all__ = ["run_kernel"]


def run_kernel(
    kernel: Kernel,
    start: Tensor | Any,
    num_steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Any, Any]:
    """Take ``num_steps`` transitions from ``start`` (a position ``(chains, dim)``, which is
    passed to ``kernel.init``, or a kernel state) and return the last state and info.

    The invariance check of the testing contract is: start many chains at exact draws of
    the target, ``run_kernel`` a few steps, and test the marginals (``assert_ks``).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    state = kernel.init(start, generator=generator) if isinstance(start, Tensor) else start
    info = None
    for _ in range(num_steps):
        state, info = kernel.step(state, generator)
    return state, info
