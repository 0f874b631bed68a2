"""``torch.distributed`` collectives that degrade to identities in one process.

The inference core (e.g. ``bayestorch.mcmc.sample`` splitting chains over ranks) uses these;
process-group setup, DDP and samplers live in ``bayestorch.experiment.distributed``.
Without an initialised group of more than one process every function here is its
single-process meaning (rank 0 of 1; gathers return their input).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_cat",
    "all_reduce_sum",
    "broadcast_object",
    "gather_cat",
    "gather_objects",
    "is_distributed",
    "is_initialized",
    "rank",
    "world_size",
]


def is_initialized() -> bool:
    """A process group (of any size) is initialised."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """A process group with more than one process is initialised."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def _padded(tensor: Tensor, dim: int) -> tuple[Tensor, list[int]]:
    """``tensor`` padded along ``dim`` to the largest size over ranks, and every rank's size."""
    size = torch.tensor([tensor.shape[dim]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    pad = max(sizes) - tensor.shape[dim]
    if pad:
        shape = list(tensor.shape)
        shape[dim] = pad
        tensor = torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)
    return tensor.contiguous(), sizes


def all_gather_cat(tensor: Tensor, dim: int = 0) -> Tensor:
    """Every rank's ``tensor`` concatenated along ``dim`` in rank order, on every rank.

    Sizes along ``dim`` may differ between ranks (the others must agree).

    Shape:
        ``(..., n_r, ...)`` on rank ``r`` -> ``(..., sum_r n_r, ...)``.
    """
    if not is_distributed():
        return tensor
    padded, sizes = _padded(tensor, dim)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


def gather_cat(tensor: Tensor, dim: int = 0, dst: int = 0) -> Tensor | None:
    """Like :func:`all_gather_cat` but only rank ``dst`` receives the result (others get
    ``None``): half the traffic when only one rank needs everything."""
    if not is_distributed():
        return tensor
    padded, sizes = _padded(tensor, dim)
    parts = [torch.empty_like(padded) for _ in sizes] if rank() == dst else None
    dist.gather(padded, parts, dst=dst)
    if parts is None:
        return None
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over ranks, on every rank (``tensor`` itself without a group)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order, on every rank (``[obj]`` alone)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself without a group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
