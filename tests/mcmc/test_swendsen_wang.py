"""Swendsen–Wang and heat-bath Gibbs for Potts models: exact enumeration, Onsager, clusters.

Statistical tests follow tests/conftest.py: fixed seeds, declared failure rates, and a
broken variant of each sampler shown to fail the same test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from bayestorch.mcmc.graph import colour_classes, lattice_colouring, lattice_edges
from bayestorch.mcmc.swendsen_wang import (
    PottsGibbs,
    SwendsenWang,
    _ColourClass,
    heat_bath_sweep,
    integrated_autocorrelation_time,
    ising_energy,
    ising_exact_energy,
    ising_exact_magnetisation,
    lattice_heat_bath_sweep,
    magnetisation,
    potts_energy,
    sample_bonds,
    swendsen_wang_step,
)
from bayestorch.testing import assert_counts, assert_mcmc_mean, assert_z
from bayestorch.testing.gof import categorical_counts

FAILURE_RATE = 1e-3
REPLICAS = 20_000  # independent chains; one final draw each -> i.i.d. under the target
SWEEPS = 20  # from uniform labels; mixing on a 3x3 graph with beta <= 1.2 is far faster


def _graph_3x3(q: int, seed: int):
    """3x3 open lattice, random couplings in [0.2, 1.2] and random unary log-potentials."""
    gen = torch.Generator().manual_seed(seed)
    edges = lattice_edges(3, 3)
    couplings = 0.2 + torch.rand(edges.shape[0], generator=gen, dtype=torch.float64)
    unary = torch.randn(9, q, generator=gen, dtype=torch.float64)
    return edges, couplings, unary


def _exact(edges, couplings, q, unary=None):
    """Exact Potts probabilities of all q^9 configurations (index = Σ z_i q^i)."""
    configs = torch.tensor(list(itertools.product(range(q), repeat=9)))
    configs = configs.flip(1)  # itertools varies the last node fastest; make node 0 fastest
    log_m = -potts_energy(configs, edges, couplings, unary)
    return torch.softmax(log_m.double(), 0).numpy()


def _config_index(labels: torch.Tensor, q: int) -> torch.Tensor:
    return (labels * q ** torch.arange(labels.shape[1], device=labels.device)).sum(1)


def _run_sw(edges, bond_probs, q, unary, device, seed=1):
    gen = torch.Generator(device=device).manual_seed(seed)
    labels = torch.randint(q, (REPLICAS, 9), generator=gen, device=device)
    for _ in range(SWEEPS):
        labels, _ = swendsen_wang_step(
            labels, edges.to(device), bond_probs.to(device), q, unary=unary, generator=gen
        )
    return labels


@pytest.mark.statistical
@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("with_unary", [False, True])
def test_swendsen_wang_matches_enumeration(q, with_unary, device):
    edges, couplings, unary = _graph_3x3(q, seed=q)
    unary = unary if with_unary else None
    probs = _exact(edges, couplings, q, unary)
    kernel = SwendsenWang(edges, couplings, q).to(device)
    unary_dev = None if unary is None else unary.to(device)
    labels = _run_sw(kernel.edges, kernel.bond_probs, q, unary_dev, device)
    counts = categorical_counts(_config_index(labels, q), q**9)
    assert_counts(counts, probs, failure_rate=FAILURE_RATE)


@pytest.mark.statistical
@pytest.mark.parametrize("q", [2, 3])
def test_swendsen_wang_with_wrong_bond_probability_fails(q):
    # Bonds with probability 1 - exp(-beta / 2) sample a Potts model at half the coupling.
    edges, couplings, _ = _graph_3x3(q, seed=q)
    probs = _exact(edges, couplings, q)
    labels = _run_sw(edges, -torch.expm1(-couplings / 2), q, None, "cpu")
    counts = categorical_counts(_config_index(labels, q), q**9)
    with pytest.raises(AssertionError, match="chi-square"):
        assert_counts(counts, probs, failure_rate=FAILURE_RATE)


@pytest.mark.statistical
def test_swendsen_wang_ignoring_the_data_fails():
    # Relabelling clusters uniformly (forgetting the unary terms) misses the posterior.
    q = 3
    edges, couplings, unary = _graph_3x3(q, seed=q)
    probs = _exact(edges, couplings, q, unary)
    labels = _run_sw(edges, -torch.expm1(-couplings), q, None, "cpu")
    counts = categorical_counts(_config_index(labels, q), q**9)
    with pytest.raises(AssertionError, match="chi-square"):
        assert_counts(counts, probs, failure_rate=FAILURE_RATE)


def _run_gibbs(classes, q, unary, device, seed=2):
    gen = torch.Generator(device=device).manual_seed(seed)
    labels = torch.randint(q, (REPLICAS, 9), generator=gen, device=device)
    for _ in range(SWEEPS):
        labels = heat_bath_sweep(labels, classes, q, unary=unary, generator=gen)
    return labels


@pytest.mark.statistical
@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("with_unary", [False, True])
def test_gibbs_matches_enumeration(q, with_unary, device):
    edges, couplings, unary = _graph_3x3(q, seed=10 + q)
    unary = unary if with_unary else None
    probs = _exact(edges, couplings, q, unary)
    kernel = PottsGibbs(edges, couplings, q).to(device)  # Jones–Plassmann colouring
    unary_dev = None if unary is None else unary.to(device)
    labels = _run_gibbs(kernel.classes, q, unary_dev, device)
    counts = categorical_counts(_config_index(labels, q), q**9)
    assert_counts(counts, probs, failure_rate=FAILURE_RATE)


@pytest.mark.statistical
@pytest.mark.parametrize("q", [2, 3])
def test_synchronous_gibbs_fails(q):
    # Updating every node at once from its neighbours' old labels is the classic bug: the
    # chain no longer leaves the Potts measure invariant.
    edges, couplings, _ = _graph_3x3(q, seed=10 + q)
    probs = _exact(edges, couplings, q)
    one_class = _ColourClass(
        nodes=torch.arange(9),
        targets=torch.cat([edges[:, 0], edges[:, 1]]),
        sources=torch.cat([edges[:, 1], edges[:, 0]]),
        weights=torch.cat([couplings, couplings]),
    )
    labels = _run_gibbs([one_class], q, None, "cpu")
    counts = categorical_counts(_config_index(labels, q), q**9)
    with pytest.raises(AssertionError, match="chi-square"):
        assert_counts(counts, probs, failure_rate=FAILURE_RATE)


@pytest.mark.statistical
def test_lattice_fast_path_matches_exact_energy_distribution():
    # 4x4 periodic Ising lattice (2^16 states): the distribution of the number of agreeing
    # edges under the roll-based checkerboard sweep against enumeration.
    beta, q = 0.6, 2
    edges = lattice_edges(4, 4, periodic=True)
    configs = torch.tensor(list(itertools.product(range(q), repeat=16)))
    agree = (-potts_energy(configs, edges)).long()
    weights = torch.softmax(beta * agree.double(), 0)
    probs = torch.zeros(edges.shape[0] + 1, dtype=torch.float64).index_add_(0, agree, weights)
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(q, (20_000, 16), generator=gen)
    for _ in range(30):
        labels = lattice_heat_bath_sweep(labels, 4, 4, beta, q, generator=gen)
    counts = categorical_counts((-potts_energy(labels, edges)).long(), edges.shape[0] + 1)
    assert_counts(counts, probs.numpy(), failure_rate=FAILURE_RATE)


def test_kernels_step_and_reproduce(device):
    for cls in (SwendsenWang, PottsGibbs):
        kernel = cls.lattice(8, 8, beta=0.8, num_states=3, periodic=True, device=device)
        runs = []
        for _ in range(2):
            gen = torch.Generator(device=device).manual_seed(5)
            state = kernel.init(kernel.uniform_labels(4, gen))
            for _ in range(3):
                state, info = kernel.step(state, gen)
            runs.append(state.labels)
        assert runs[0].shape == (4, 64) and runs[0].dtype == torch.long
        assert runs[0].device.type == torch.device(device).type
        assert torch.equal(runs[0], runs[1])
        assert all(field.shape == (4,) for field in info)


def test_clusters_match_scipy_and_carry_one_label():
    q, n = 3, 60
    gen = torch.Generator().manual_seed(7)
    edges = torch.randint(n, (150, 2), generator=gen)
    edges = edges[edges[:, 0] != edges[:, 1]]
    bond_probs = torch.rand(edges.shape[0], generator=gen)
    labels = torch.randint(q, (16, n), generator=gen)
    state = gen.get_state()
    new, clusters = swendsen_wang_step(labels, edges, bond_probs, q, generator=gen)
    gen.set_state(state)  # the step draws its bonds first: replay them
    bonds = sample_bonds(labels, edges, bond_probs, gen)
    for r in range(labels.shape[0]):
        e = edges[bonds[r]].numpy()
        graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
        _, comp = scipy_components(graph, directed=False)
        smallest = np.full(comp.max() + 1, n)
        np.minimum.at(smallest, comp, np.arange(n))
        np.testing.assert_array_equal(clusters[r].numpy(), smallest[comp])
    assert torch.equal(new, new.gather(1, clusters))  # one label per cluster


def test_colourings_are_proper():
    gen = torch.Generator().manual_seed(8)
    edges = torch.randint(300, (1200, 2), generator=gen)
    edges = edges[edges[:, 0] != edges[:, 1]]
    colours = colour_classes(edges, 300)
    assert not bool((colours[edges[:, 0]] == colours[edges[:, 1]]).any())
    for connectivity in (4, 8):
        e = lattice_edges(6, 8, connectivity=connectivity, periodic=True)
        c = lattice_colouring(6, 8, connectivity=connectivity, periodic=True)
        assert not bool((c[e[:, 0]] == c[e[:, 1]]).any())
    assert lattice_colouring(5, 8, periodic=True) is None


def _ising_run(temperature, ordered_start, sweeps, burn_in, seed):
    L, replicas = 32, 32
    kernel = SwendsenWang.lattice(L, L, beta=2.0 / temperature, num_states=2, periodic=True)
    gen = torch.Generator().manual_seed(seed)
    start = kernel.uniform_labels(replicas, gen)
    state = kernel.init(torch.zeros_like(start) if ordered_start else start)
    energy, mag = [], []
    for sweep in range(burn_in + sweeps):
        state, _ = kernel.step(state, gen)
        if sweep >= burn_in:
            energy.append(ising_energy(state.labels, kernel.edges) / L**2)
            mag.append(magnetisation(state.labels, 2))
    return torch.stack(energy, 1).double(), torch.stack(mag, 1).double()


@pytest.mark.statistical
@pytest.mark.parametrize("temperature", [1.5, 3.5])
def test_ising_matches_onsager(temperature):
    # Tolerance: the MCSE of the mean (assert_mcmc_mean, ~1e-3) plus the finite-size
    # correction. Away from T_c the correlation length is below ~1 site (xi(1.5) ~ 0.3,
    # xi(3.5) ~ 1), and on a periodic L = 32 torus corrections to local observables are
    # O(exp(-L / xi)) < 1e-13: negligible against the MCSE, so the z-test uses the MCSE.
    assert ising_exact_energy(1.5) == pytest.approx(-1.951117, abs=1e-6)
    assert ising_exact_energy(3.5) == pytest.approx(-0.660122, abs=1e-6)
    assert ising_exact_magnetisation(1.5) == pytest.approx(0.986500, abs=1e-6)
    energy, mag = _ising_run(temperature, temperature < 2, sweeps=120, burn_in=20, seed=11)
    assert_mcmc_mean(energy.unsqueeze(-1), ising_exact_energy(temperature), FAILURE_RATE)
    if temperature < 2:
        assert_mcmc_mean(mag.unsqueeze(-1), ising_exact_magnetisation(temperature), FAILURE_RATE)


@pytest.mark.statistical
def test_autocorrelation_time_of_ar1():
    # AR(1) with phi: tau_int = (1 + phi) / (2 (1 - phi)) = 4.5 for phi = 0.8. The
    # estimator's sd is ~ tau sqrt(2 (2 W + 1) / N) (Sokal 1997, eq. 3.19), W ~ 6 tau the
    # summation window: ~0.08 here, so se = 0.15 is a conservative bound.
    phi, chains, draws = 0.8, 64, 4000
    gen = torch.Generator().manual_seed(12)
    noise = torch.randn(chains, draws, generator=gen, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / (1 - phi**2) ** 0.5
    for t in range(1, draws):  # test data generation only
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    tau = integrated_autocorrelation_time(x.unsqueeze(-1))
    assert_z(tau, (1 + phi) / (2 * (1 - phi)), 0.15, FAILURE_RATE)


def test_bad_input():
    edges = lattice_edges(3, 3)
    with pytest.raises(ValueError, match="couplings must be >= 0"):
        SwendsenWang(edges, -0.5, 2)
    with pytest.raises(ValueError, match="num_edges"):
        SwendsenWang(edges, torch.ones(5), 2)
    with pytest.raises(ValueError, match="num_states"):
        SwendsenWang(edges, 1.0, 1)
    with pytest.raises(ValueError, match="outside"):
        SwendsenWang(edges, 1.0, 2, num_nodes=4)
    kernel = PottsGibbs(edges, 1.0, 3)
    with pytest.raises(ValueError, match="num_nodes=9"):
        kernel.init(torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="long"):
        kernel.init(torch.zeros(2, 9))
    with pytest.raises(ValueError, match="num_states=3"):
        kernel.init(torch.full((2, 9), 3))
    with pytest.raises(ValueError, match="proper colouring"):
        PottsGibbs(edges, 1.0, 3, colours=torch.zeros(9, dtype=torch.long))


def test_lattice_periodic_default_agrees_with_lattice_edges():
    # Before: SwendsenWang.lattice wrapped the axes by default while lattice_edges did not.
    with pytest.warns(FutureWarning, match="periodic=False"):
        kernel = SwendsenWang.lattice(4, 6, beta=0.5, num_states=2)
    assert torch.equal(kernel.edges, lattice_edges(4, 6))
    torus = PottsGibbs.lattice(4, 6, beta=0.5, num_states=2, periodic=True)
    assert torch.equal(torus.edges, lattice_edges(4, 6, periodic=True))
    assert torch.equal(
        SwendsenWang.lattice(4, 6, beta=0.5, num_states=2, periodic=False).edges,
        lattice_edges(4, 6, periodic=False),
    )
