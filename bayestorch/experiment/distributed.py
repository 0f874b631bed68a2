"""Multi-process runs on ``torch.distributed``: torchrun detection, process group, DDP, gathers.

The same command runs with and without ``torchrun``::

    python -m experiments configs/vae_digits.yaml                                # 1 process
    torchrun --nproc_per_node=2 -m experiments configs/vae_digits.yaml           # 2 processes

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`setup` reads them, initialises the process group (``gloo`` on the
CPU, ``nccl`` on CUDA) with a timeout, and places the rank on ``cuda:LOCAL_RANK`` (or the
CPU). Without that environment, or with ``WORLD_SIZE=1``, nothing is initialised and every
helper here degrades to its single-process meaning (rank 0 of 1, ``wrap_model`` returns
the model, gathers return their input), so experiment code needs no branches.

Only ``torch.distributed`` collectives and ``DistributedDataParallel`` are used: no
sockets, RPC or process pools of our own.

References:
    Li et al. (2020). PyTorch Distributed: experiences on accelerating data parallel
    training. VLDB 13(12).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from bayestorch.utils.distributed import (
    all_gather_cat,
    all_reduce_sum,
    broadcast_object,
    gather_cat,
    gather_objects,
    is_distributed,
    is_initialized,
    rank,
    world_size,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "all_gather_cat",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "distributed_sampler",
    "gather_cat",
    "gather_objects",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "rank",
    "setup",
    "teardown",
    "world_size",
    "wrap_model",
]

DEFAULT_TIMEOUT_S = 600.0
"""Collective timeout (seconds) unless ``BAYESTORCH_DIST_TIMEOUT_S`` says otherwise: a rank
stuck waiting for a dead peer raises after this long instead of hanging forever."""

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are all set (torchrun's launch)."""
    return all(name in os.environ for name in _ENV)


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _timeout() -> float:
    raw = os.environ.get("BAYESTORCH_DIST_TIMEOUT_S")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"BAYESTORCH_DIST_TIMEOUT_S must be a positive number, got {raw!r}")
    return value


def is_main_process() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def setup(device: torch.device, timeout_s: float | None = None) -> torch.device:
    """Initialise the process group of a torchrun launch and pick this rank's device.

    Args:
        device: the device resolved from the config (``auto`` already resolved). A CUDA
            device becomes ``cuda:LOCAL_RANK`` (one GPU per process, ``nccl``); the CPU
            stays the CPU (``gloo``).
        timeout_s: collective timeout; default ``BAYESTORCH_DIST_TIMEOUT_S`` or
            :data:`DEFAULT_TIMEOUT_S`.

    Returns:
        The device this rank computes on (``device`` unchanged without torchrun or with
        ``WORLD_SIZE=1``, or when the group was initialised by the caller already).
    """
    if not launched_by_torchrun() or _env_int("WORLD_SIZE") <= 1:
        return device
    local_rank = _env_int("LOCAL_RANK")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                "exist: launch at most one process per GPU (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not is_initialized():
        timeout = timedelta(seconds=_timeout() if timeout_s is None else timeout_s)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    return device


def teardown() -> None:
    """Destroy the process group (if any): call once at the end of every rank's run."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        dist.barrier()


def wrap_model(
    model: nn.Module, device: torch.device | None = None, **ddp_kwargs: Any
) -> nn.Module:
    """``DistributedDataParallel(model)`` when several processes run, else ``model``.

    DDP broadcasts rank 0's parameters and buffers at construction (so restore a checkpoint
    *before* wrapping) and averages gradients over ranks in ``backward``. Call the wrapped
    module (its ``forward``) in the training step; read and save the plain ``model``.
    """
    if not is_distributed():
        return model
    if device is not None and device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [device.index])
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def distributed_sampler(
    dataset: Any, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False
) -> torch.utils.data.Sampler | None:
    """A ``DistributedSampler`` (each rank a disjoint share of every epoch) when several
    processes run, else ``None`` (let ``DataLoader`` shuffle as usual).

    Call ``sampler.set_epoch(epoch)`` at the start of each epoch, so the shuffle changes.
    """
    if not is_distributed():
        return None
    return torch.utils.data.DistributedSampler(
        dataset, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
