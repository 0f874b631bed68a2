"""Graphs for cluster samplers: lattice edge lists and batched connected components.

A graph is an edge list ``edges`` of shape ``(num_edges, 2)`` (long, each undirected edge
once) over ``num_nodes`` nodes. Cluster algorithms (Swendsen–Wang and its generalisation)
switch edges on and off per replica: ``active`` of shape ``(replicas, num_edges)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_edges",
    "colour_classes",
    "connected_components",
    "lattice_colouring",
    "lattice_edges",
]


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

    Vectorised hook-and-compress (Shiloach–Vishkin style) over one flat graph of
    ``replicas * n`` nodes: every round, the root of the larger label on each pending edge
    is hooked onto the smaller label (``scatter_reduce`` with ``amin``), then pointer
    jumping flattens the trees. Edges whose ends already share a root are dropped for good.
    Each round at least halves the number of trees in every component, so O(log n) rounds,
    with no Python loop over nodes or edges. (Jumping only the roots hooked in the round,
    then one full pass, was tried: no faster on CPU.)
    """
    if active.dim() != 2 or active.shape[1] != edges.shape[0]:
        raise ValueError(
            f"active must have shape (replicas, num_edges={edges.shape[0]}), "
            f"got {tuple(active.shape)}"
        )
    replicas = active.shape[0]
    device = edges.device
    # One graph over replicas * n nodes: replica r's node i is r * n + i, so a single flat
    # label array serves every replica and edges of all replicas are compacted together.
    offsets = torch.arange(replicas, device=device) * num_nodes
    labels = torch.arange(replicas * num_nodes, device=device)
    if edges.shape[0] and replicas:
        replica, edge = active.to(torch.bool).nonzero(as_tuple=True)
        # index_select, not advanced indexing: ~10x faster on CPU.
        offset = offsets.index_select(0, replica)
        src = edges[:, 0].index_select(0, edge) + offset
        dst = edges[:, 1].index_select(0, edge) + offset
        while src.numel():
            ls, ld = labels.index_select(0, src), labels.index_select(0, dst)
            # An edge whose ends share a root stays resolved for good: drop it, so later
            # rounds touch only the edges still joining two trees.
            pending = (ls != ld).nonzero().squeeze(1)
            if not pending.numel():
                break
            src, dst = src.index_select(0, pending), dst.index_select(0, pending)
            ls, ld = ls.index_select(0, pending), ld.index_select(0, pending)
            # Roots only (labels are fully compressed): hook the larger root onto the
            # smallest label offered to it. Invariant labels[i] <= i.
            labels.scatter_reduce_(0, torch.maximum(ls, ld), torch.minimum(ls, ld), reduce="amin")
            while True:  # pointer jumping until every node points at a root
                jumped = labels.index_select(0, labels)
                if torch.equal(jumped, labels):
                    break
                labels = jumped
    return labels.view(replicas, num_nodes) - offsets.unsqueeze(1)


def lattice_colouring(
    height: int,
    width: int,
    *,
    connectivity: int = 4,
    periodic: bool = False,
    device: torch.device | str | None = None,
) -> Tensor | None:
    """Proper colouring of the :func:`lattice_edges` grid by parity, or ``None``.

    4-connectivity: the checkerboard ``(i + j) % 2`` (2 colours); 8-connectivity:
    ``2 * (i % 2) + j % 2`` (4 colours). On a periodic lattice the parity colouring is
    proper only when the wrapped axes have even length; otherwise ``None`` is returned
    and the caller falls back to :func:`colour_classes`.

    Shape:
        ``(height * width,)`` long, row-major.
    """
    if periodic and (height % 2 or width % 2):
        return None
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    if connectivity == 4:
        colours = (rows + cols) % 2
    elif connectivity == 8:
        colours = 2 * (rows % 2) + cols % 2
    else:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    return colours.expand(height, width).reshape(-1).long()


def colour_classes(edges: Tensor, num_nodes: int, *, seed: int = 0) -> Tensor:
    """A proper vertex colouring of any graph (no edge joins two nodes of one colour).

    Jones–Plassmann with fixed random priorities, vectorised: in round ``k`` every
    uncoloured node whose priority beats all its uncoloured neighbours takes colour
    ``k`` (those nodes form an independent set). Rounds run until every node is
    coloured; no Python loop over nodes. The colouring is deterministic (priorities from
    ``seed``) and uses at most a few more colours than a sequential greedy one.

    Shape:
        ``edges`` ``(E, 2)`` -> ``(num_nodes,)`` long colours ``0..C-1``.

    References:
        Jones, Plassmann (1993). A parallel graph coloring heuristic. SIAM J. Sci.
        Comput. 14(3).
    """
    device = edges.device
    priority = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    priority = priority.to(device)
    colours = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    src = torch.cat([edges[:, 0], edges[:, 1]])
    dst = torch.cat([edges[:, 1], edges[:, 0]])
    colour = 0
    while bool((colours < 0).any()):
        uncoloured = colours < 0
        # Largest priority among each node's uncoloured neighbours (-1 when none).
        neighbour_priority = torch.where(uncoloured[src], priority[src], -1)
        best = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        best = best.scatter_reduce(0, dst, neighbour_priority, reduce="amax")
        chosen = uncoloured & (priority > best)
        colours = torch.where(chosen, colour, colours)
        colour += 1
    return colours
