"""Swendsen–Wang cluster sampling for Potts models, with a heat-bath Gibbs baseline.

The Potts measure on a graph with couplings ``beta_ij >= 0`` (ferromagnetic) and optional
unary log-potentials ``h_i(k)`` (an external field, or a data likelihood) is

    M(z) ∝ exp( Σ_{edges ij} beta_ij 1[z_i = z_j] + Σ_i h_i(z_i) ),  z_i in {0..q-1}.

One Swendsen–Wang sweep (Swendsen & Wang 1987; Edwards & Sokal 1988) draws a bond on each
edge whose ends agree with probability ``1 - exp(-beta_ij)``, finds the clusters of the
bond graph (:func:`bayestorch.mcmc.graph.connected_components`, vectorised
hook-and-compress), and gives every cluster ``A`` a fresh label drawn with probability
``∝ exp(Σ_{i in A} h_i(k))`` — uniform without a field. With ``h_i(k) = log p(y_i | k)`` this
is the data-driven cluster step of Bayesian image segmentation (Higdon 1998; Barbu & Zhu
2005 for the generalisation), which
:class:`bayestorch.segmentation.SwendsenWangSegmentation` alternates with conjugate Gibbs
updates of per-label Gaussian means and variances. Why it is exact: the
Edwards–Sokal joint of labels and bonds

    p(z, r) ∝ Π_i e^{h_i(z_i)} Π_ij [(1 - p_ij) 1[r_ij = 0] + p_ij 1[r_ij = 1] 1[z_i = z_j]],

``p_ij = 1 - e^{-beta_ij}``, has the Potts measure as its z-marginal (summing ``r_ij`` gives
``e^{-beta_ij} e^{beta_ij 1[z_i = z_j]}``); given z the bonds are independent
``Bernoulli(p_ij 1[z_i = z_j])``, and given r the labels are constant on each cluster and
otherwise free, weighted only by the cluster's unary terms. A sweep is the two exact
conditional draws.

:class:`PottsGibbs` is the single-site heat-bath baseline: nodes of one colour class of a
proper colouring (the checkerboard on a lattice) are conditionally independent, so each
class is updated at once.

Many replicas run at once: labels are a ``(replicas, n)`` long tensor. The 2-D Ising model
with ``J = 1`` at temperature ``T`` is ``q = 2``, ``beta = 2 / T`` on the periodic lattice
(``s_i s_j = 2·1[z_i = z_j] - 1``); :func:`ising_exact_energy` and
:func:`ising_exact_magnetisation` give Onsager's infinite-lattice values.

References:
    Swendsen, Wang (1987). Nonuniversal critical dynamics in Monte Carlo simulations.
    Phys. Rev. Lett. 58(2). Edwards, Sokal (1988). Generalization of the
    Fortuin-Kasteleyn-Swendsen-Wang representation and Monte Carlo algorithm. Phys. Rev. D
    38(6). Higdon (1998). Auxiliary variable methods for Markov chain Monte Carlo with
    applications. JASA 93(442). Barbu, Zhu (2005). Generalizing Swendsen-Wang to sampling
    arbitrary posterior probabilities. IEEE TPAMI 27(8). Onsager (1944). Phys. Rev. 65;
    Yang (1952). Phys. Rev. 85 (spontaneous magnetisation). Sokal (1997). Monte Carlo
    methods in statistical mechanics (integrated autocorrelation time).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bayestorch._deprecation import moved_attributes
from bayestorch.mcmc.diagnostics import effective_sample_size
from bayestorch.mcmc.graph import (
    check_edges,
    colour_classes,
    connected_components,
    lattice_colouring,
    lattice_edges,
)

__all__ = [
    "ISING_CRITICAL_TEMPERATURE",
    "PottsGibbs",
    "PottsGibbsInfo",
    "PottsState",
    "SwendsenWang",
    "SwendsenWangInfo",
    "cluster_statistics",
    "heat_bath_sweep",
    "lattice_heat_bath_sweep",
    "integrated_autocorrelation_time",
    "ising_energy",
    "ising_exact_energy",
    "ising_exact_magnetisation",
    "magnetisation",
    "potts_energy",
    "sample_bonds",
    "swendsen_wang_step",
]

ISING_CRITICAL_TEMPERATURE = 2.0 / math.log(1.0 + math.sqrt(2.0))
"""Onsager's critical temperature of the 2-D Ising model with ``J = 1``: ``2 / log(1 + sqrt 2)``
(about 2.269)."""


# -- states and infos ---------------------------------------------------------------------
class PottsState(NamedTuple):
    """Labels of every replica: ``(replicas, n)`` long in ``0..q-1``."""

    labels: Tensor


class SwendsenWangInfo(NamedTuple):
    """Per replica, after the sweep: ``energy`` = ``-Σ beta_ij 1[z_i = z_j] - Σ h_i(z_i)``;
    statistics of the sweep's bond clusters (see :func:`cluster_statistics`)."""

    energy: Tensor
    num_clusters: Tensor
    largest_cluster: Tensor
    mean_cluster_size: Tensor


class PottsGibbsInfo(NamedTuple):
    """Per replica, after the sweep: ``energy`` as in :class:`SwendsenWangInfo`."""

    energy: Tensor


# -- checks ----------------------------------------------------------------------------
def _check_num_states(num_states: int) -> int:
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 2:
        raise ValueError(f"num_states (q) must be an integer >= 2, got {num_states!r}")
    return num_states


def _as_couplings(couplings: Tensor | float, edges: Tensor) -> Tensor:
    """Couplings as a float ``(E,)`` tensor on the edges' device; ``>= 0`` and finite."""
    if isinstance(couplings, Tensor):
        beta = couplings.to(edges.device)
        if not beta.is_floating_point():
            beta = beta.to(torch.get_default_dtype())
        if beta.dim() == 0:
            beta = beta.expand(edges.shape[0])
        if beta.shape != (edges.shape[0],):
            raise ValueError(
                f"couplings must be a scalar or have shape (num_edges,) = ({edges.shape[0]},), "
                f"got {tuple(beta.shape)}"
            )
    else:
        beta = torch.full((edges.shape[0],), float(couplings), device=edges.device)
    if not bool(torch.isfinite(beta).all()):
        raise ValueError("couplings must be finite")
    if bool((beta < 0).any()):
        raise ValueError(
            f"couplings must be >= 0 (Swendsen–Wang needs ferromagnetic couplings), got "
            f"min {float(beta.min()):.4g}"
        )
    return beta.contiguous()


def _check_labels(labels: Tensor, num_nodes: int, num_states: int, name: str = "labels") -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype != torch.long:
        raise TypeError(f"{name} must be a long tensor, got {labels.dtype}")
    if labels.dim() != 2 or labels.shape[1] != num_nodes:
        raise ValueError(
            f"{name} must have shape (replicas, num_nodes={num_nodes}), got {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_states):
        raise ValueError(f"{name} must lie in [0, num_states={num_states})")


def _check_unary(unary: Tensor | None, labels: Tensor, num_states: int) -> None:
    if unary is None:
        return
    if unary.shape[-2:] != (labels.shape[1], num_states) or unary.dim() not in (2, 3):
        raise ValueError(
            f"unary must have shape (num_nodes, q) or (replicas, num_nodes, q) = "
            f"(..., {labels.shape[1]}, {num_states}), got {tuple(unary.shape)}"
        )


# -- observables -----------------------------------------------------------------------
def _agree(labels: Tensor, edges: Tensor) -> Tensor:
    # gather with an expanded index: several times faster than index_select on dim 1.
    index = edges.t().unsqueeze(1).expand(2, labels.shape[0], -1)
    return labels.gather(1, index[0]) == labels.gather(1, index[1])


def potts_energy(
    labels: Tensor,
    edges: Tensor,
    couplings: Tensor | float = 1.0,
    unary: Tensor | None = None,
) -> Tensor:
    """``-Σ_ij beta_ij 1[z_i = z_j] - Σ_i h_i(z_i)``, i.e. ``-log M(z)`` up to a constant.

    Shape:
        ``labels`` ``(R, n)``, ``edges`` ``(E, 2)``, ``couplings`` scalar or ``(E,)``,
        ``unary`` ``([R,] n, q)`` -> ``(R,)``.

    References:
        Wu (1982). The Potts model. Rev. Mod. Phys. 54(1).
    """
    if not bool(torch.isfinite(torch.as_tensor(couplings)).all()):
        raise ValueError("couplings must be finite")
    agree = _agree(labels, edges)
    if isinstance(couplings, Tensor) and couplings.dim() == 1:
        energy = -(agree.to(couplings.dtype) * couplings).sum(-1)
    else:
        energy = -float(couplings) * agree.sum(-1).to(torch.get_default_dtype())
    if unary is not None:
        unary = unary.expand(labels.shape[0], *unary.shape[-2:])
        energy = energy - unary.gather(2, labels.unsqueeze(-1)).squeeze(-1).sum(-1)
    return energy


def ising_energy(labels: Tensor, edges: Tensor) -> Tensor:
    """Ising energy ``-Σ_ij s_i s_j`` (J = 1, each edge once) of ``q = 2`` labels,
    ``s = 2 z - 1``; ``-2 n`` for an aligned periodic square lattice.

    Shape:
        ``(R, n)`` -> ``(R,)`` float.
    """
    agree = _agree(labels, edges).to(torch.get_default_dtype())
    return -(2.0 * agree - 1.0).sum(-1)


def magnetisation(labels: Tensor, num_states: int) -> Tensor:
    """Potts order parameter ``(q max_k n_k / n - 1) / (q - 1)`` in ``[0, 1]``; for
    ``q = 2`` it is the Ising ``|m| = |Σ s_i| / n``.

    Shape:
        ``(R, n)`` -> ``(R,)`` float.
    """
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 2:
        raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
    n = labels.shape[1]
    counts = torch.zeros(labels.shape[0], num_states, device=labels.device)
    counts = counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=counts.dtype))
    fraction = counts.amax(-1) / n
    return (num_states * fraction - 1.0) / (num_states - 1.0)


def cluster_statistics(clusters: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Number of clusters, size of the largest, and ``Σ_A |A|^2 / n`` (the mean size of
    the cluster holding a uniformly chosen node; for the Ising model its mean is the
    susceptibility's improved estimator ``<m^2> n``).

    Args:
        clusters: ``(R, n)`` canonical component labels (the smallest node of each
            cluster), as returned by :func:`connected_components`.

    Shape:
        ``(R, n)`` -> three ``(R,)`` tensors (long, long, float).

    References:
        Sokal (1997), section 5 (improved estimators of Swendsen–Wang).
    """
    sizes = torch.zeros_like(clusters).scatter_add_(1, clusters, torch.ones_like(clusters))
    num_clusters = (sizes > 0).sum(-1)
    largest = sizes.amax(-1)
    mean_size = sizes.to(torch.get_default_dtype()).square().sum(-1) / clusters.shape[1]
    return num_clusters, largest, mean_size


def integrated_autocorrelation_time(samples: Tensor) -> Tensor:
    """Integrated autocorrelation time ``tau_int = 1/2 + Σ_{t>=1} rho_t`` (Sokal's
    convention: the variance of a mean of ``N`` draws is ``2 tau_int var / N``).

    Estimated from several chains at once with Geyer's initial monotone sequence (the
    multi-chain ESS of :func:`bayestorch.mcmc.diagnostics.effective_sample_size`, not
    split): ``tau_int = N_total / (2 ESS)``. Reliable when every chain is much longer
    (say 50x) than ``tau_int`` and starts in equilibrium.

    Shape:
        ``(chains, draws, *event)`` -> ``(*event,)``.

    References:
        Sokal (1997), section 3; Geyer (1992). Statistical Science 7(4).
    """
    ess = effective_sample_size(samples, split=False)
    return samples.shape[0] * samples.shape[1] / (2.0 * ess)


def _elliptic_k(k: float) -> float:
    """Complete elliptic integral of the first kind ``K(k) = π / (2 AGM(1, sqrt(1 - k^2)))``."""
    a, b = 1.0, math.sqrt(max(1.0 - k * k, 0.0))
    for _ in range(64):
        a, b = (a + b) / 2.0, math.sqrt(a * b)
        if abs(a - b) < 1e-16 * a:
            break
    return math.pi / (2.0 * a)


def ising_exact_energy(temperature: float) -> float:
    """Onsager's energy per site of the infinite 2-D Ising model (J = 1, k_B = 1).

    ``u = -coth(2K) [1 + (2/π)(2 tanh^2(2K) - 1) K(κ)]``, ``K = 1/T``,
    ``κ = 2 sinh(2K) / cosh^2(2K)``; ``-√2`` at ``T_c``.

    References:
        Onsager (1944). Crystal statistics I. Phys. Rev. 65(3-4).
    """
    if not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    coupling = 1.0 / temperature
    kappa = 2.0 * math.sinh(2 * coupling) / math.cosh(2 * coupling) ** 2
    if abs(kappa - 1.0) < 1e-12:
        return -math.sqrt(2.0)
    bracket = 1.0 + (2.0 / math.pi) * (2.0 * math.tanh(2 * coupling) ** 2 - 1.0) * _elliptic_k(
        kappa
    )
    return -bracket / math.tanh(2 * coupling)


def ising_exact_magnetisation(temperature: float) -> float:
    """Spontaneous magnetisation per site ``(1 - sinh(2/T)^-4)^(1/8)`` below ``T_c``,
    0 above (Onsager 1949; Yang 1952)."""
    if not 0 < temperature <= math.inf:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if temperature >= ISING_CRITICAL_TEMPERATURE:
        return 0.0
    return (1.0 - math.sinh(2.0 / temperature) ** -4) ** 0.125


# -- functional core -------------------------------------------------------------------
def _categorical(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``softmax(logits)`` by inverse CDF (one uniform per row)."""
    # Unnormalised: torch.softmax over a short last dim (q = 2..10) is ~3x slower on CPU.
    cdf = (logits - logits.amax(-1, keepdim=True)).exp().cumsum(-1)
    u = torch.rand(logits.shape[:-1], generator=generator, device=logits.device)
    u = u.to(cdf.dtype).unsqueeze(-1) * cdf[..., -1:]
    return (u >= cdf[..., :-1]).sum(-1)


def sample_bonds(
    labels: Tensor, edges: Tensor, bond_probs: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Bonds ``r_ij ~ Bernoulli(p_ij)`` on edges whose ends agree, off elsewhere.

    Shape:
        ``labels`` ``(R, n)``, ``edges`` ``(E, 2)``, ``bond_probs`` ``(E,)`` -> ``(R, E)`` bool.
    """
    u = torch.rand(labels.shape[0], edges.shape[0], generator=generator, device=labels.device)
    return _agree(labels, edges) & (u < bond_probs)


def swendsen_wang_step(
    labels: Tensor,
    edges: Tensor,
    bond_probs: Tensor,
    num_states: int,
    *,
    unary: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One Swendsen–Wang sweep: bonds, clusters, a fresh label per cluster.

    Args:
        labels: ``(R, n)`` long labels.
        edges: ``(E, 2)`` edge list.
        bond_probs: ``(E,)`` bond probabilities; ``1 - exp(-beta_ij)`` (``-expm1(-beta)``)
            samples the Potts measure, any other value samples something else.
        num_states: ``q``.
        unary: optional ``([R,] n, q)`` log-potentials: a cluster ``A`` takes label ``k``
            with probability ``∝ exp(Σ_{i in A} h_i(k))``; uniform when ``None``.
        generator: the source of randomness.

    Returns:
        ``(new_labels, clusters)``: ``(R, n)`` labels, and the canonical cluster label of
        each node (:func:`connected_components` of the bond graph).

    Shape:
        ``(R, n) -> (R, n), (R, n)``.

    References:
        Swendsen, Wang (1987); Edwards, Sokal (1988); Higdon (1998).
    """
    replicas, num_nodes = labels.shape
    bonds = sample_bonds(labels, edges, bond_probs, generator)
    clusters = connected_components(edges, bonds, num_nodes)
    if unary is None:
        # One draw per node; only the draws at cluster roots are used.
        fresh = torch.randint(
            num_states, (replicas, num_nodes), generator=generator, device=labels.device
        )
    else:
        unary = unary.expand(replicas, num_nodes, num_states)
        cluster_logits = torch.zeros_like(unary).scatter_add_(
            1, clusters.unsqueeze(-1).expand_as(unary), unary
        )
        fresh = _categorical(cluster_logits, generator)
    return fresh.gather(1, clusters), clusters


class _ColourClass(NamedTuple):
    nodes: Tensor  # (k,) nodes of the class
    targets: Tensor  # (m,) position in `nodes` of each directed half-edge's target
    sources: Tensor  # (m,) the half-edge's other end
    weights: Tensor  # (m,) its coupling


def _colour_class_tables(edges: Tensor, couplings: Tensor, colours: Tensor) -> list[_ColourClass]:
    """Per colour class, the half-edges pointing into it (built once per kernel)."""
    num_nodes = colours.shape[0]
    tgt = torch.cat([edges[:, 0], edges[:, 1]])
    src = torch.cat([edges[:, 1], edges[:, 0]])
    weight = torch.cat([couplings, couplings])
    if bool((colours[tgt] == colours[src]).any()):
        raise ValueError("colours is not a proper colouring: an edge joins two nodes of one colour")
    tables = []
    for colour in range(int(colours.max()) + 1):
        nodes = torch.nonzero(colours == colour).flatten()
        if nodes.numel() == 0:
            continue
        position = torch.full((num_nodes,), -1, dtype=torch.long, device=colours.device)
        position[nodes] = torch.arange(nodes.numel(), device=colours.device)
        into = colours[tgt] == colour
        tables.append(_ColourClass(nodes, position[tgt[into]], src[into], weight[into]))
    return tables


def heat_bath_sweep(
    labels: Tensor,
    classes: list[_ColourClass],
    num_states: int,
    *,
    unary: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One single-site heat-bath sweep, one colour class at a time.

    Each node of a class draws ``z_i ~ softmax_k(Σ_j beta_ij 1[z_j = k] + h_i(k))`` given
    its neighbours; nodes of one class share no edge, so the class is drawn at once.

    Args:
        labels: ``(R, n)`` long labels.
        classes: the colour-class tables of :func:`_colour_class_tables` (a kernel builds
            them once). Passing a single class holding every node gives the (wrong)
            synchronous update.
        num_states: ``q``.
        unary: optional ``([R,] n, q)`` log-potentials.
        generator: the source of randomness.

    Shape:
        ``(R, n) -> (R, n)``.

    References:
        Geman, Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
        restoration of images. IEEE TPAMI 6(6).
    """
    replicas = labels.shape[0]
    for cls in classes:
        size = cls.nodes.numel()
        index = cls.targets * num_states + labels.gather(1, cls.sources.expand(replicas, -1))
        field = torch.zeros(
            replicas, size * num_states, dtype=cls.weights.dtype, device=labels.device
        )
        field = field.scatter_add_(1, index, cls.weights.expand(replicas, -1))
        field = field.view(replicas, size, num_states)
        if unary is not None:
            field = field + unary.expand(replicas, *unary.shape[-2:]).index_select(1, cls.nodes)
        labels = labels.index_copy(1, cls.nodes, _categorical(field, generator))
    return labels


def lattice_heat_bath_sweep(
    labels: Tensor,
    height: int,
    width: int,
    beta: float,
    num_states: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """:func:`heat_bath_sweep` on the periodic 4-neighbour lattice with one coupling ``beta``
    (even ``height`` and ``width``): neighbour counts by ``torch.roll``, checkerboard halves.

    The same transition as the general sweep with the checkerboard colouring, several times
    faster (no scatter). For ``q = 2`` the conditional is ``P(z_i = 1) =
    sigmoid(beta (2 n_i - 4))`` with ``n_i`` the neighbours labelled 1.

    Shape:
        ``(R, height * width) -> (R, height * width)``.
    """
    replicas = labels.shape[0]
    grid = labels.view(replicas, height, width)
    rows = torch.arange(height, device=labels.device).view(-1, 1)
    cols = torch.arange(width, device=labels.device).view(1, -1)
    black = (rows + cols) % 2 == 0
    for mask in (black, ~black):
        if num_states == 2:
            up = grid.to(torch.get_default_dtype())
            count = up.roll(1, 1) + up.roll(-1, 1) + up.roll(1, 2) + up.roll(-1, 2)
            u = torch.rand(grid.shape, generator=generator, device=labels.device)
            new = (u < torch.sigmoid(beta * (2.0 * count - 4.0))).long()
        else:
            one_hot = nn.functional.one_hot(grid, num_states).to(torch.get_default_dtype())
            count = (
                one_hot.roll(1, 1) + one_hot.roll(-1, 1) + one_hot.roll(1, 2) + one_hot.roll(-1, 2)
            )
            new = _categorical(beta * count, generator)
        grid = torch.where(mask, new, grid)
    return grid.reshape(replicas, height * width)


# -- kernels ---------------------------------------------------------------------------
class _PottsKernel(nn.Module):
    """Shared shell: the graph, couplings and colouring as buffers; ``init`` checks labels."""

    # buffers (registered in __init__; declared for type checkers)
    edges: Tensor
    couplings: Tensor
    bond_probs: Tensor
    colours: Tensor | None

    def __init__(
        self,
        edges: Tensor,
        couplings: Tensor | float,
        num_states: int,
        *,
        num_nodes: int | None = None,
        colours: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_states = _check_num_states(num_states)
        if not isinstance(edges, Tensor):
            raise TypeError(f"edges must be a torch.Tensor, got {type(edges).__name__}")
        if num_nodes is None:
            num_nodes = int(edges.max()) + 1 if edges.numel() else 0
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        check_edges(edges, num_nodes)
        self.num_nodes = int(num_nodes)
        edges = edges.long()
        beta = _as_couplings(couplings, edges)
        self.register_buffer("edges", edges)
        self.register_buffer("couplings", beta)
        self.register_buffer("bond_probs", -torch.expm1(-beta))
        if colours is None:
            colours = colour_classes(edges, self.num_nodes)
        elif colours.shape != (self.num_nodes,):
            raise ValueError(
                f"colours must have shape (num_nodes,) = ({self.num_nodes},), got "
                f"{tuple(colours.shape)}"
            )
        colours = colours.to(edges.device).long()
        if bool((colours[edges[:, 0]] == colours[edges[:, 1]]).any()):
            raise ValueError(
                "colours is not a proper colouring: an edge joins two nodes of one colour"
            )
        self.register_buffer("colours", colours)
        self._classes: list[_ColourClass] | None = None
        # Set by ``lattice`` when the roll-based Gibbs fast path applies.
        self.lattice_shape: tuple[int, int] | None = None

    @classmethod
    def lattice(
        cls,
        height: int,
        width: int,
        beta: float,
        num_states: int,
        *,
        connectivity: int = 4,
        periodic: bool | None = None,
        device: torch.device | str | None = None,
        **kwargs,
    ):
        """The model on a ``height x width`` lattice with uniform coupling ``beta``
        (the Ising model at temperature T: ``num_states=2, beta=2/T``); checkerboard
        colouring where it is proper.

        Args:
            height, width: the lattice, pixels numbered row-major.
            beta: the coupling of every edge (``>= 0``).
            num_states: the number of labels ``q >= 2`` (2: Ising).
            connectivity: 4 or 8 neighbours, as in
                :func:`~bayestorch.mcmc.graph.lattice_edges`.
            periodic: wrap both axes (a torus: the usual setting for the Ising model, and
                the one whose exact results ``ising_exact_*`` give). Defaults to ``False``
                like :func:`~bayestorch.mcmc.graph.lattice_edges`; until bayestorch 0.3
                leaving it out warns (``FutureWarning``), because it defaulted to ``True``.
            device: where the graph lives.
            **kwargs: the kernel's other arguments.
        """
        if periodic is None:
            warnings.warn(
                f"{cls.__name__}.lattice now defaults to periodic=False, like lattice_edges "
                "(it defaulted to True before); pass periodic=True for the torus or "
                "periodic=False to silence this warning",
                FutureWarning,
                stacklevel=2,
            )
            periodic = False
        edges = lattice_edges(
            height, width, connectivity=connectivity, periodic=periodic, device=device
        )
        colours = lattice_colouring(
            height, width, connectivity=connectivity, periodic=periodic, device=device
        )
        kernel = cls(edges, beta, num_states, num_nodes=height * width, colours=colours, **kwargs)
        if periodic and connectivity == 4 and colours is not None and not isinstance(beta, Tensor):
            kernel.lattice_shape = (height, width)
            kernel.lattice_beta = float(beta)
        return kernel

    def _apply(self, fn, recurse=True):  # .to(device) invalidates the class tables
        self._classes = None
        return super()._apply(fn, recurse)

    @property
    def classes(self) -> list[_ColourClass]:
        if self._classes is None:
            self._classes = _colour_class_tables(self.edges, self.couplings, self.colours)
        return self._classes

    def uniform_labels(self, num_replicas: int, generator: torch.Generator | None = None) -> Tensor:
        """Independent uniform labels ``(num_replicas, n)`` (the infinite-temperature start)."""
        return torch.randint(
            self.num_states,
            (num_replicas, self.num_nodes),
            generator=generator,
            device=self.edges.device,
        )

    def init(self, labels: Tensor, generator: torch.Generator | None = None) -> PottsState:
        """Check ``labels`` ``(replicas, n)`` (long in ``0..q-1``) and wrap them."""
        _check_labels(labels, self.num_nodes, self.num_states)
        if labels.device != self.edges.device:
            raise ValueError(
                f"labels are on {labels.device} but the kernel is on {self.edges.device}"
            )
        return PottsState(labels)

    def energy(self, labels: Tensor) -> Tensor:
        """``-Σ beta_ij 1[z_i = z_j]`` per replica (``-log M`` up to a constant)."""
        return potts_energy(labels, self.edges, self.couplings)


class SwendsenWang(_PottsKernel):
    """Swendsen–Wang sampler of the Potts model on any graph, many replicas at once.

    Args:
        edges: ``(E, 2)`` long edge list (each undirected edge once, no self-loops).
        couplings: ``beta_ij >= 0``, a scalar or ``(E,)``.
        num_states: ``q >= 2``.
        num_nodes: the number of nodes (default ``edges.max() + 1``).
        colours: a proper colouring, used only by the Gibbs baseline (ignored here).

    Shape:
        ``state.labels``: ``(replicas, n)``; every ``info`` field ``(replicas,)``.

    Example::

        >>> kernel = SwendsenWang.lattice(32, 32, beta=2 / 2.0, num_states=2, periodic=True)
        >>> g = torch.Generator().manual_seed(0)
        >>> state = kernel.init(kernel.uniform_labels(8, g))
        >>> state, info = kernel.step(state, g)
        >>> info.energy.shape
        torch.Size([8])

    References:
        Swendsen, Wang (1987). Phys. Rev. Lett. 58(2); Edwards, Sokal (1988).
    """

    def step(
        self, state: PottsState, generator: torch.Generator | None = None
    ) -> tuple[PottsState, SwendsenWangInfo]:
        labels, clusters = swendsen_wang_step(
            state.labels, self.edges, self.bond_probs, self.num_states, generator=generator
        )
        return PottsState(labels), SwendsenWangInfo(
            self.energy(labels), *cluster_statistics(clusters)
        )


class PottsGibbs(_PottsKernel):
    """Single-site heat-bath Gibbs sampler of the Potts model (the local baseline).

    Same arguments as :class:`SwendsenWang`; ``colours`` is a proper colouring (default:
    :func:`bayestorch.mcmc.graph.colour_classes`; the checkerboard via ``.lattice``).

    Shape:
        ``state.labels``: ``(replicas, n)``; ``info.energy``: ``(replicas,)``.

    References:
        Geman, Geman (1984). IEEE TPAMI 6(6).
    """

    def step(
        self, state: PottsState, generator: torch.Generator | None = None
    ) -> tuple[PottsState, PottsGibbsInfo]:
        if self.lattice_shape is not None:
            labels = lattice_heat_bath_sweep(
                state.labels,
                *self.lattice_shape,
                self.lattice_beta,
                self.num_states,
                generator=generator,
            )
        else:
            labels = heat_bath_sweep(
                state.labels, self.classes, self.num_states, generator=generator
            )
        return PottsState(labels), PottsGibbsInfo(self.energy(labels))


# The segmentation model moved to bayestorch.segmentation.potts; its old names here warn
# (DeprecationWarning) for one release.
__getattr__ = moved_attributes(
    __name__,
    dict.fromkeys(
        (
            "SegmentationInfo",
            "SegmentationState",
            "SwendsenWangSegmentation",
            "gaussian_label_log_likelihood",
            "sample_gaussian_parameters",
        ),
        "bayestorch.segmentation.potts",
    ),
)
