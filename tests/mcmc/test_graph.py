"""Lattice edge lists and batched connected components against scipy's reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from bayestorch.mcmc.graph import check_edges, connected_components, lattice_edges


def _reference(edges: np.ndarray, active: np.ndarray, n: int) -> np.ndarray:
    e = edges[active]
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = scipy_components(graph, directed=False)
    # canonical: smallest node index of each component
    smallest = np.full(comp.max() + 1, n)
    np.minimum.at(smallest, comp, np.arange(n))
    return smallest[comp]


@pytest.mark.parametrize("density", [0.3, 0.5, 0.9])
def test_components_match_scipy_on_random_graphs(density, device):
    gen = torch.Generator().manual_seed(0)
    n, num_edges, replicas = 200, 400, 16
    edges = torch.randint(n, (num_edges, 2), generator=gen)
    edges = edges[edges[:, 0] != edges[:, 1]]
    active = torch.rand(replicas, edges.shape[0], generator=gen) < density
    labels = connected_components(edges.to(device), active.to(device), n).cpu().numpy()
    for r in range(replicas):
        expected = _reference(edges.numpy(), active[r].numpy(), n)
        np.testing.assert_array_equal(labels[r], expected)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_on_lattices(periodic, connectivity, device):
    gen = torch.Generator().manual_seed(1)
    h, w = 17, 23
    edges = lattice_edges(h, w, connectivity=connectivity, periodic=periodic)
    active = torch.rand(8, edges.shape[0], generator=gen) < 0.45  # near percolation
    labels = connected_components(edges.to(device), active.to(device), h * w).cpu().numpy()
    for r in range(8):
        np.testing.assert_array_equal(
            labels[r], _reference(edges.numpy(), active[r].numpy(), h * w)
        )


def test_long_path_is_one_component():
    n = 1000
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    edges = torch.stack([perm[:-1], perm[1:]], dim=1)
    labels = connected_components(edges, torch.ones(1, n - 1, dtype=torch.bool), n)
    assert bool((labels == 0).all())


def test_lattice_edge_counts():
    assert lattice_edges(3, 4).shape == (3 * 3 + 2 * 4, 2)
    assert lattice_edges(4, 5, periodic=True).shape == (2 * 20, 2)
    assert lattice_edges(4, 5, connectivity=8, periodic=True).shape == (4 * 20, 2)
    e = lattice_edges(5, 5, connectivity=8)
    assert e.shape == (2 * 20 + 2 * 16, 2)
    pairs = {tuple(sorted(p)) for p in e.tolist()}
    assert len(pairs) == e.shape[0]  # each undirected edge once


def test_bad_input():
    with pytest.raises(ValueError, match="connectivity"):
        lattice_edges(3, 3, connectivity=6)
    with pytest.raises(ValueError, match="periodic"):
        lattice_edges(2, 5, periodic=True)
    with pytest.raises(ValueError, match="outside"):
        check_edges(torch.tensor([[0, 5]]), 3)
    with pytest.raises(ValueError, match="self-loops"):
        check_edges(torch.tensor([[1, 1]]), 3)
    with pytest.raises(ValueError, match="replicas"):
        connected_components(torch.tensor([[0, 1]]), torch.ones(3, dtype=torch.bool), 2)
