"""Graphs for cluster samplers: lattice edge lists and batched connected components.

A graph is an edge list ``edges`` of shape ``(num_edges, 2)`` (long, each undirected edge
once) over ``num_nodes`` nodes. Cluster algorithms (Swendsen–Wang and its generalisation)
switch edges on and off per replica: ``active`` of shape ``(replicas, num_edges)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_edges", "connected_components", "lattice_edges"]


def lattice_edges(
    height: int,
    width: int,
    *,
    connectivity: int = 4,
    periodic: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Edges of a ``height x width`` grid, pixels numbered row-major (``i * width + j``).

    ``connectivity`` 4 links horizontal and vertical neighbours, 8 adds both diagonals;
    ``periodic=True`` wraps both axes (a torus, as for the Ising model on a finite
    lattice; needs ``height, width >= 3`` so no edge is repeated). Returns ``(E, 2)``.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    if periodic and (height < 3 or width < 3):
        raise ValueError(f"a periodic lattice needs height, width >= 3, got {height} x {width}")
    rows = torch.arange(height, device=device).view(-1, 1).expand(height, width)
    cols = torch.arange(width, device=device).view(1, -1).expand(height, width)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    parts = []
    for di, dj in offsets:
        r2, c2 = rows + di, cols + dj
        if periodic:
            keep = torch.ones_like(rows, dtype=torch.bool)
            r2, c2 = r2 % height, c2 % width
        else:
            keep = (r2 < height) & (c2 >= 0) & (c2 < width)
        src = (rows * width + cols)[keep]
        dst = (r2 * width + c2)[keep]
        parts.append(torch.stack([src, dst], dim=-1))
    return torch.cat(parts).long()


def check_edges(edges: Tensor, num_nodes: int) -> None:
    """Raise a clear error unless ``edges`` is a valid ``(E, 2)`` edge list over the nodes."""
    if not isinstance(edges, Tensor):
        raise TypeError(f"edges must be a torch.Tensor, got {type(edges).__name__}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (num_edges, 2), got {tuple(edges.shape)}")
    if edges.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"edges must be an integer tensor, got {edges.dtype}")
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= num_nodes):
        raise ValueError(
            f"edges index nodes in [{int(edges.min())}, {int(edges.max())}], "
            f"outside [0, {num_nodes})"
        )
    if edges.numel() and bool((edges[:, 0] == edges[:, 1]).any()):
        raise ValueError("edges contain self-loops (i, i)")


def connected_components(edges: Tensor, active: Tensor, num_nodes: int) -> Tensor:
    """Component labels of the graphs ``(nodes, edges[active[r]])``, one per replica.

    Args:
        edges: ``(E, 2)`` long edge list.
        active: ``(replicas, E)`` bool, which edges are present in each replica.
        num_nodes: number of nodes ``n``.

    Returns:
        ``(replicas, n)`` long: each node's label is the smallest node index in its
        component (so labels are canonical and comparable across implementations).

    Vectorised hook-and-compress (Shiloach–Vishkin style): every round, the root of the
    larger label on each active edge is hooked onto the smaller label (``scatter_reduce``
    with ``amin``), then pointer jumping flattens the trees. Each round at least halves the
    number of trees in every component, so O(log n) rounds, with no Python loop over nodes
    or edges.
    """
    if active.dim() != 2 or active.shape[1] != edges.shape[0]:
        raise ValueError(
            f"active must have shape (replicas, num_edges={edges.shape[0]}), "
            f"got {tuple(active.shape)}"
        )
    replicas = active.shape[0]
    labels = torch.arange(num_nodes, device=edges.device).expand(replicas, num_nodes).clone()
    if edges.shape[0] == 0:
        return labels
    active = active.to(torch.bool)
    src = edges[:, 0].expand(replicas, -1)
    dst = edges[:, 1].expand(replicas, -1)
    while True:
        ls, ld = labels.gather(1, src), labels.gather(1, dst)
        pending = active & (ls != ld)
        if not bool(pending.any()):
            return labels
        lo, hi = torch.minimum(ls, ld), torch.maximum(ls, ld)
        # Invariant labels[i] <= i, so scattering hi onto index hi is a no-op: inactive
        # edges hook nothing.
        lo = torch.where(pending, lo, hi)
        labels = labels.scatter_reduce(1, hi, lo, reduce="amin")
        while True:  # pointer jumping until every node points at a root
            jumped = labels.gather(1, labels)
            if torch.equal(jumped, labels):
                break
            labels = jumped
