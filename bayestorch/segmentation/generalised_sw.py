r"""Generalised Swendsen–Wang for Bayesian nonparametric image segmentation.

The model (Xu, Caron & Doucet 2016). Pixels ``i = 1..n`` on a graph with edges ``i ~ j``
(a 4- or 8-neighbour lattice), data ``y_i`` (``c`` channels). A partition ``Pi`` of the
pixels into segments ``A_1..A_k`` has prior

    p(Pi) ∝ g(|A_1|, ..., |A_k|) * exp( sum_{i~j} beta_ij 1[z_i = z_j] ),

with ``g`` a Gibbs-type EPPF (Dirichlet process, Pitman–Yor, or finite
Dirichlet–multinomial, whose uniform-label limit is the ``K``-label Potts model; see
:mod:`bayestorch.segmentation.partitions`), and each segment's data integrate their Gaussian
parameters out under a conjugate prior, ``p(y | Pi) = prod_A p(y_A)``
(:mod:`bayestorch.segmentation.conjugate`).

Derivation of the component conditional. Augment with bonds ``r_ij in {0, 1}`` on the
edges, drawn given the partition as ``r_ij ~ Bernoulli(q_ij)`` on equal-label edges and
``r_ij = 0`` on the others. The joint is

    p(Pi, r) ∝ g(sizes) prod_A p(y_A)
               prod_{i~j, z_i = z_j} e^{beta_ij} q_ij^{r_ij} (1 - q_ij)^{1 - r_ij}
               prod_{i~j, z_i != z_j} 1[r_ij = 0],

whose ``r``-marginal is ``p(Pi | y)`` (each equal-label edge's bond factors sum to
``e^{beta_ij}``). Given ``r``, the connected components ``C_1..C_L`` of the bond graph
each lie inside one segment. Take one component ``C`` with the other components' labels
fixed; let ``Pi_{-C}`` be the partition of the other pixels, with blocks ``A_j`` of sizes
``m_j`` (``k_-`` of them). The bonds inside ``C`` and all factors not touching ``C`` are
the same for every choice, and every edge from ``C`` to the outside has ``r = 0`` (else it
would belong to ``C``). So, for ``C`` joining ``A_j`` or a new segment,

    p(C -> A_j | ...) ∝ g(.., m_j + |C|, ..) / g(.., m_j, ..)
                        * p(y_{A_j ∪ C}) / p(y_{A_j})
                        * prod_{i in C, l in A_j, i~l} e^{beta_il} (1 - q_il),
    p(C -> new | ...) ∝ g(.., m, |C|) / g(.., m) * p(y_C),

the last factor being the Potts term over the component's off-bond neighbour pairs that
land in ``A_j``. With the Swendsen–Wang choice ``q_ij = 1 - e^{-beta_ij}`` each such factor
is ``e^{beta}(1 - q) = 1``: the Potts term cancels and only the EPPF and marginal-likelihood
ratios remain. Any other ``q`` in ``(0, 1)`` (e.g. data-driven bonds, as in Barbu & Zhu's
SW-cuts) is also exact, with the factor kept. For Gibbs-type ``g``, the ratios are
``W(m + c) / W(m)`` and ``(alpha + k_- d) W(c)`` with ``W(m) = (1 - d)_{m - 1}``.

One sweep: draw bonds; label the components (:func:`~bayestorch.mcmc.graph.connected_components`);
visit the components in a uniformly random order, reassigning each from the conditional
above (a Gibbs update on the joint, so each leaves ``p(Pi, r | y)`` invariant). The loop
over components is sequential, but each visit is ``O(#segments)`` tensor work, vectorised
over replicas (all replicas visit their ``t``-th component together). Segment statistics
(counts, sums, sums of squares) and their log marginal likelihoods are updated in place
for the two touched segments only.

Hyper-parameters: ``alpha`` (and Pitman–Yor ``d``) by a slice step
(:func:`~bayestorch.mcmc.slice.slice_step`) on ``log alpha`` (and ``logit d``) targeting
``p(alpha, d) g(Pi | alpha, d)``. That is the exact conditional when ``beta = 0``; for
``beta > 0`` the tilted prior's normaliser ``Z(alpha, d, beta)`` also depends on ``alpha, d``
and is intractable, so the step is then a pseudo-conditional (documented approximation;
keep ``sample_alpha=False`` for an exact sampler). ``beta`` is fixed: its conditional
involves the same intractable ``Z``; an exchange step would need perfect draws from the
EPPF-Potts prior, and pseudo-likelihood is biased towards ``beta`` too small/large in a
way that depends on the data, so ``beta`` is a user choice (optionally edge-weighted,
``beta_ij = beta exp(-|y_i - y_j|^2 / (2 contrast^2))``).

References:
    Xu, Caron & Doucet (2016). Bayesian nonparametric image segmentation using a
    generalized Swendsen-Wang algorithm. arXiv:1602.03048.
    Swendsen & Wang (1987). Phys. Rev. Lett. 58(2). Edwards & Sokal (1988). Phys. Rev. D 38.
    Barbu & Zhu (2005). Generalizing Swendsen-Wang to sampling arbitrary posterior
    probabilities. IEEE TPAMI 27(8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as nn_f
from torch import Tensor

from bayestorch.mcmc.base import Kernel
from bayestorch.mcmc.graph import check_edges, connected_components, lattice_edges
from bayestorch.mcmc.slice import SliceState, slice_step
from bayestorch.segmentation.conjugate import NormalInverseGamma, NormalInverseWishart, SegmentStats
from bayestorch.segmentation.partitions import GibbsPartitionPrior
from bayestorch.utils.random import rand_open01

__all__ = ["GSWInfo", "GSWState", "GeneralisedSwendsenWang", "default_likelihood"]

# Slots are added this many at a time; each visit opens at most one segment, so checking
# for free slots every BLOCK visits suffices.
BLOCK = 64


class GSWState(NamedTuple):
    """Shape: ``labels`` ``(replicas, n)`` long (segment ids; only the partition matters);
    ``alpha``, ``discount``, ``log_joint`` ``(replicas,)`` float64; ``num_segments``
    ``(replicas,)`` long."""

    labels: Tensor
    alpha: Tensor
    discount: Tensor
    num_segments: Tensor
    log_joint: Tensor


class GSWInfo(NamedTuple):
    """Per-sweep diagnostics, ``(replicas,)``: the number of bond components visited."""

    num_components: Tensor


def default_likelihood(pixels: Tensor, edges: Tensor) -> SegmentStats:
    """A weakly informative conjugate prior scaled to the data.

    Mean ``m0`` = the data mean, ``kappa0 = 0.01``; the noise level ``s`` is estimated
    robustly from neighbour differences (``MAD / (0.6745 sqrt 2)``, channel by channel), and
    the variance prior has mean ``s^2`` (NIG: ``a0 = 2, b0 = s^2``; NIW: ``nu0 = c + 2``,
    ``Psi0 = s^2 I``). One channel: NIG, several: NIW.

    Shape:
        ``pixels``: ``(n, c)``; ``edges``: ``(E, 2)``.
    """
    y = pixels.double()
    diffs = (y[edges[:, 0]] - y[edges[:, 1]]).abs() if edges.numel() else y - y.mean(0)
    spread = y.std() if y.numel() > 1 else y.new_zeros(())  # one pixel: no spread (not NaN)
    noise = (diffs.median(0).values / (0.6745 * math.sqrt(2))).clamp(min=1e-3 * spread + 1e-12)
    if y.shape[1] == 1:
        return NormalInverseGamma(mean=y.mean(0), kappa=0.01, shape=2.0, rate=noise**2)
    return NormalInverseWishart(
        y.shape[1], mean=y.mean(0), kappa=0.01, scale=torch.diag(noise**2).cpu()
    )


def _check_image(image: Tensor) -> Tensor:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (2, 3):
        raise ValueError(
            f"image must have shape (height, width) or (height, width, channels), "
            f"got rank {image.dim()} shape {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise TypeError(f"image must be a floating tensor, got {image.dtype}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image holds NaN or inf pixels")
    return image if image.dim() == 3 else image[..., None]


class GeneralisedSwendsenWang(Kernel):
    """Generalised Swendsen–Wang sampler of image partitions (see the module docstring).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` floating tensor.
        partition_prior: ``"dp"``, ``"pitman_yor"`` or ``"finite"``.
        beta: Potts coupling ``>= 0`` (float or ``(E,)`` per edge).
        alpha, discount: EPPF parameters of ``"dp"`` and ``"pitman_yor"`` (initial values
            when sampled); defaults 1 and 0. Pitman–Yor takes ``alpha > -discount``.
        num_labels, dirichlet: the ``"finite"`` prior's ``K`` and ``gamma`` (default
            ``inf``: Potts). Passing a parameter the chosen prior does not have is an error.
        likelihood: the conjugate prior of each segment's Gaussian parameters: a
            :class:`~bayestorch.segmentation.conjugate.NormalInverseGamma` (one channel) or
            ``NormalInverseWishart``, or ``"empirical"`` (the default) for the
            empirical-Bayes prior of :func:`default_likelihood`, whose centre and noise
            scale are estimated from this image.
        connectivity: 4 or 8 (ignored when ``edges`` is given).
        edges: optional ``(E, 2)`` edge list over the ``H W`` pixels (row-major).
        contrast: if set, ``beta_ij = beta exp(-|y_i - y_j|^2 / (2 contrast^2))``.
        bond_prob: ``None`` for the Swendsen–Wang bonds ``1 - exp(-beta_ij)``, or a float /
            ``(E,)`` tensor of bond probabilities in ``(0, 1)`` (the off-bond Potts factor
            ``e^beta (1 - q)`` then enters the conditional).
        bond_contrast: if set (instead of ``bond_prob``), data-driven bonds (SW-cuts)
            ``q_ij = (1 - e^{-beta_ij}) exp(-|y_i - y_j|^2 / (2 bond_contrast^2))``, clamped
            to ``[1e-6, 1 - 1e-6]``: same posterior, bonds cut across likely boundaries.
        sample_alpha: slice-sample ``alpha`` (and ``d`` for Pitman–Yor) each sweep, with
            priors ``alpha ~ Gamma(alpha_prior)`` (shape, rate) and ``d ~ Uniform(0, 1)``;
            the initial ``alpha`` must then lie in the Gamma prior's support, ``alpha > 0``.

    Shape:
        state ``labels`` ``(replicas, H W)``.

    References:
        Xu, Caron & Doucet (2016), arXiv:1602.03048.
    """

    # buffers (registered in __init__; declared for type checkers)
    edges: Tensor
    pixels: Tensor
    beta: Tensor
    bond_prob: Tensor
    log_off: Tensor | None
    stat1: Tensor
    stat2: Tensor

    def __init__(
        self,
        image: Tensor,
        partition_prior: str = "dp",
        *,
        beta: Tensor | float = 1.0,
        alpha: float | None = None,
        discount: float | None = None,
        num_labels: int | None = None,
        dirichlet: float | None = None,
        likelihood: SegmentStats | str = "empirical",
        connectivity: int = 4,
        edges: Tensor | None = None,
        contrast: float | None = None,
        bond_prob: Tensor | float | None = None,
        bond_contrast: float | None = None,
        sample_alpha: bool = False,
        alpha_prior: tuple[float, float] = (1.0, 1.0),
        sample_discount: bool | None = None,
    ) -> None:
        super().__init__(self.log_joint)
        image = _check_image(image)
        height, width, channels = image.shape
        self.shape = (height, width)
        self.num_pixels = n = height * width
        device = image.device
        if edges is None:
            edges = lattice_edges(height, width, connectivity=connectivity, device=device)
        check_edges(edges, n)
        self.prior = GibbsPartitionPrior(
            partition_prior,
            alpha=alpha,
            discount=discount,
            num_labels=num_labels,
            dirichlet=dirichlet,
        )
        pixels = image.reshape(n, channels).double()
        if isinstance(likelihood, str):
            if likelihood != "empirical":
                raise ValueError(
                    "likelihood must be 'empirical', a NormalInverseGamma or a "
                    f"NormalInverseWishart, got {likelihood!r}"
                )
            likelihood = default_likelihood(pixels, edges)
        if not isinstance(likelihood, SegmentStats) or likelihood.outer != isinstance(
            likelihood, NormalInverseWishart
        ):
            raise TypeError(
                "likelihood must be 'empirical', a NormalInverseGamma or a "
                f"NormalInverseWishart, got {type(likelihood).__name__}"
            )
        self.likelihood = likelihood
        if isinstance(self.likelihood, NormalInverseWishart) and self.likelihood.dim != channels:
            raise ValueError(
                f"likelihood has dim {self.likelihood.dim} but the image has {channels} channels"
            )
        beta = torch.as_tensor(beta, dtype=torch.float64, device=device)
        if not bool(torch.isfinite(beta).all()) or bool((beta < 0).any()):
            raise ValueError(f"beta must be finite and >= 0, got {beta.flatten()[:5].tolist()}")
        beta = beta.expand(edges.shape[0]).clone()
        if contrast is not None:
            if not contrast > 0:
                raise ValueError(f"contrast must be > 0, got {contrast}")
            diff2 = (pixels[edges[:, 0]] - pixels[edges[:, 1]]).pow(2).sum(-1)
            beta = beta * torch.exp(-diff2 / (2 * contrast**2))
        if bond_contrast is not None:
            if bond_prob is not None:
                raise ValueError("pass at most one of bond_prob and bond_contrast")
            if not bond_contrast > 0:
                raise ValueError(f"bond_contrast must be > 0, got {bond_contrast}")
            diff2 = (pixels[edges[:, 0]] - pixels[edges[:, 1]]).pow(2).sum(-1)
            bond_prob = (-torch.expm1(-beta) * torch.exp(-diff2 / (2 * bond_contrast**2))).clamp(
                1e-6, 1 - 1e-6
            )
        if bond_prob is None:
            q = -torch.expm1(-beta)
            off = None
        else:
            q = torch.as_tensor(bond_prob, dtype=torch.float64, device=device)
            q = q.expand(edges.shape[0]).clone()
            if bool(((q <= 0) | (q >= 1)).any()):
                raise ValueError("bond_prob must lie in the open interval (0, 1)")
            off = beta + torch.log1p(-q)  # log e^beta (1 - q), per off-bond same-label pair
        if sample_discount is None:
            sample_discount = sample_alpha and partition_prior == "pitman_yor"
        if (sample_alpha or sample_discount) and partition_prior == "finite":
            raise ValueError("sample_alpha applies to the 'dp' and 'pitman_yor' priors")
        if sample_discount and not sample_alpha:
            raise ValueError("sample_discount needs sample_alpha=True")
        if sample_discount and partition_prior != "pitman_yor":
            raise ValueError("sample_discount needs partition_prior='pitman_yor'")
        if sample_alpha and bool((self.prior.alpha <= 0).any()):
            raise ValueError(
                "sample_alpha puts a Gamma prior on alpha, so the initial alpha must be > 0, "
                f"got alpha={alpha}"
            )
        if not (alpha_prior[0] > 0 and alpha_prior[1] > 0):
            raise ValueError(f"alpha_prior (shape, rate) must be > 0, got {alpha_prior}")
        self.sample_alpha, self.sample_discount = bool(sample_alpha), bool(sample_discount)
        self.alpha_prior = (float(alpha_prior[0]), float(alpha_prior[1]))
        self.register_buffer("edges", edges)
        self.register_buffer("pixels", pixels)
        self.register_buffer("beta", beta)
        self.register_buffer("bond_prob", q)
        self.register_buffer("log_off", off)
        s1, s2 = self.likelihood.pixel_stats(pixels)
        self.register_buffer("stat1", s1)
        self.register_buffer("stat2", s2)

    # -- model --------------------------------------------------------------------------
    def _segment_stats(self, labels: Tensor, slots: int) -> tuple[Tensor, Tensor, Tensor]:
        """Counts, sums and second moments per segment slot: ``(R, S)``, ``(R, S, c)``..."""
        replicas, n = labels.shape
        flat = (labels + slots * torch.arange(replicas, device=labels.device)[:, None]).flatten()
        count = torch.zeros(replicas * slots, dtype=torch.float64, device=labels.device)
        count.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
        out = [count.view(replicas, slots)]
        for stat in (self.stat1, self.stat2):
            total = stat.new_zeros((replicas * slots,) + stat.shape[1:])
            total.index_add_(0, flat, stat.expand((replicas,) + stat.shape).flatten(0, 1))
            out.append(total.view((replicas, slots) + stat.shape[1:]))
        return out[0], out[1], out[2]

    def log_joint(
        self, labels: Tensor, alpha: Tensor | None = None, discount: Tensor | None = None
    ) -> Tensor:
        """``log g(sizes) + sum_{i~j} beta_ij 1[z_i = z_j] + sum_A log p(y_A)``.

        Shape:
            ``labels`` ``(replicas, n)`` -> ``(replicas,)``.
        """
        prior = self._prior(alpha, discount)
        slots = int(labels.max()) + 1
        count, s1, s2 = self._segment_stats(labels, slots)
        lml = torch.where(count > 0, self.likelihood.log_marginal(count, s1, s2), 0.0).sum(-1)
        same = labels[:, self.edges[:, 0]] == labels[:, self.edges[:, 1]]
        return prior.log_eppf(count) + (same * self.beta).sum(-1) + lml

    def _prior(self, alpha: Tensor | None, discount: Tensor | None) -> GibbsPartitionPrior:
        if alpha is None:
            return self.prior
        return self.prior.with_params(alpha, discount)

    # -- kernel -------------------------------------------------------------------------
    def init(  # type: ignore[override]  # labels and a replica count, not (chains, dim)
        self,
        labels: Tensor | None = None,
        replicas: int = 1,
        generator: torch.Generator | None = None,
        init_segments: int = 8,
    ) -> GSWState:
        """Initial state from ``labels`` (``(n,)``, ``(H, W)`` or ``(replicas, n)`` integer),
        or, when ``None``, the pixels' mean intensity cut into ``init_segments`` quantile
        bins (a cheap data-driven start; any start is valid)."""
        n, device = self.num_pixels, self.pixels.device
        if labels is None:
            grey = self.pixels.mean(-1)
            # no more bins than pixels (labels are < n) or than a finite prior's labels
            bins = min(init_segments, n, getattr(self.prior, "num_labels", n))
            cuts = torch.quantile(
                grey, torch.linspace(0, 1, bins + 1, device=device)[1:-1].double()
            )
            labels = torch.bucketize(grey, cuts)
        if not isinstance(labels, Tensor) or labels.is_floating_point():
            raise TypeError("labels must be an integer tensor")
        labels = labels.to(device).long()
        if labels.dim() == 2 and labels.shape == self.shape and labels.shape[1] != n:
            labels = labels.reshape(1, n)
        if labels.dim() == 1:
            labels = labels[None]
        if labels.dim() != 2 or labels.shape[1] != n:
            raise ValueError(
                f"labels must have n={n} pixels per replica, got {tuple(labels.shape)}"
            )
        if bool((labels < 0).any()) or bool((labels >= n).any()):
            raise ValueError(f"labels must lie in [0, {n})")
        labels = labels.expand(replicas, n).clone() if labels.shape[0] == 1 else labels
        replicas = labels.shape[0]
        alpha = self.prior.alpha.to(device).expand(replicas).clone()
        discount = self.prior.discount.to(device).expand(replicas).clone()
        segs = torch.zeros(replicas, n, dtype=torch.bool, device=device).scatter_(1, labels, True)
        if self.prior.kind == "finite" and int(segs.sum(1).max()) > self.prior.num_labels:
            raise ValueError(
                f"the initial labels use more than num_labels={self.prior.num_labels} segments"
            )
        return GSWState(
            labels, alpha, discount, segs.sum(1), self.log_joint(labels, alpha, discount)
        )

    def step(
        self, state: GSWState, generator: torch.Generator | None = None
    ) -> tuple[GSWState, GSWInfo]:
        """One sweep: bonds, components, sequential reassignment, then hyper-parameters."""
        labels, num_components = self._sweep(state, generator)
        alpha, discount = state.alpha, state.discount
        if self.sample_alpha or self.sample_discount:
            alpha, discount = self._hyper_step(labels, alpha, discount, generator)
        count = torch.zeros_like(labels).scatter_add_(1, labels, torch.ones_like(labels))
        new = GSWState(
            labels, alpha, discount, (count > 0).sum(1), self.log_joint(labels, alpha, discount)
        )
        return new, GSWInfo(num_components)

    # -- the sweep ----------------------------------------------------------------------
    def _sweep(self, state: GSWState, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        labels = state.labels
        replicas, n = labels.shape
        device = labels.device
        rows = torch.arange(replicas, device=device)
        e0, e1 = self.edges[:, 0], self.edges[:, 1]
        # 1. bonds on equal-label edges, 2. their connected components
        u = torch.rand(
            (replicas, e0.shape[0]), generator=generator, device=device, dtype=torch.float64
        )
        active = (labels[:, e0] == labels[:, e1]) & (u < self.bond_prob)
        comp = connected_components(self.edges, active, n)
        is_root = comp == torch.arange(n, device=device)
        dense = (torch.cumsum(is_root, 1) - 1).gather(1, comp)  # components 0..K_r-1
        num_comp = is_root.sum(1)
        kmax = int(num_comp.max())
        ccount, cs1, cs2 = self._segment_stats(dense, kmax)
        # each component's current segment, segments compacted to 0..S_r-1
        cseg = torch.zeros(replicas, kmax, dtype=torch.long, device=device).scatter_(
            1, dense, labels
        )
        used = torch.zeros(replicas, n, dtype=torch.long, device=device).scatter_(1, labels, 1)
        cseg = (torch.cumsum(used, 1) - 1).gather(1, cseg).clamp(min=0)  # padding -> 0
        slots = int(used.sum(1).max()) + min(BLOCK, kmax) + 1
        seg = self._segment_stats_from(cseg, ccount, cs1, cs2, slots)
        nbr = self._boundaries(dense, kmax) if self.log_off is not None else None
        # random visiting order per replica (invalid positions sorted last)
        keys = torch.rand((replicas, kmax), generator=generator, device=device)
        keys = torch.where(torch.arange(kmax, device=device) < num_comp[:, None], keys, 2.0)
        order = keys.argsort(1)
        uniforms = rand_open01((kmax, replicas), generator=generator, device=device).double()
        for t in range(kmax):
            if t and t % BLOCK == 0:
                seg = _ensure_free(seg, min(BLOCK, kmax - t) + 1)
            cid = order[:, t]
            valid = t < num_comp
            stats = (
                ccount[rows, cid] * valid,
                cs1[rows, cid] * _bcast(valid, cs1),
                cs2[rows, cid] * _bcast(valid, cs2),
            )
            cur = cseg[rows, cid]
            seg = self._remove(seg, rows, cur, stats)
            scores, joined = self.component_log_scores(seg, stats, state, rows, cid, cseg, nbr)
            # inverse-CDF draw from softmax(scores): the first slot whose cumulative weight
            # reaches u * total (slots of weight 0, incl. trailing -inf, are never chosen)
            weights = torch.exp(scores - scores.max(1, keepdim=True).values).cumsum(1)
            choice = (weights < uniforms[t, :, None] * weights[:, -1:]).sum(1)
            choice = torch.where(valid, choice, cur)
            count, s1, s2, lml = seg
            count[rows, choice] += stats[0]
            s1[rows, choice] += stats[1]
            s2[rows, choice] += stats[2]
            lml[rows, choice] = joined[rows, choice]
            cseg[rows, cid] = choice
        return cseg.gather(1, dense), num_comp

    def _segment_stats_from(self, cseg, ccount, cs1, cs2, slots):
        replicas = cseg.shape[0]
        flat = (cseg + slots * torch.arange(replicas, device=cseg.device)[:, None]).flatten()
        out = []
        for stat in (ccount, cs1, cs2):
            total = stat.new_zeros((replicas * slots,) + stat.shape[2:])
            total.index_add_(0, flat, stat.flatten(0, 1))
            out.append(total.view((replicas, slots) + stat.shape[2:]))
        count, s1, s2 = out
        lml = torch.where(count > 0, self.likelihood.log_marginal(count, s1, s2), 0.0)
        return [count, s1, s2, lml]

    def _remove(self, seg, rows, slot, stats):
        """Take a component's statistics out of one slot per replica and refresh that
        slot's log marginal likelihood (exact zeros when it empties)."""
        count, s1, s2, lml = seg
        new_c = count[rows, slot] - stats[0]
        empty = new_c <= 0
        new_1 = torch.where(_bcast(empty, s1), 0.0, s1[rows, slot] - stats[1])
        new_2 = torch.where(_bcast(empty, s2), 0.0, s2[rows, slot] - stats[2])
        new_c = new_c.clamp(min=0)
        count[rows, slot], s1[rows, slot], s2[rows, slot] = new_c, new_1, new_2
        lml[rows, slot] = torch.where(empty, 0.0, self.likelihood.log_marginal(new_c, new_1, new_2))
        return seg

    def component_log_scores(
        self, seg, stats, state, rows, cid, cseg, nbr
    ) -> tuple[Tensor, Tensor]:
        """Unnormalised log conditional of the visited component joining each slot:
        occupied slots (existing segments), the first empty slot (a new segment), and
        ``-inf`` elsewhere; and each slot's log marginal likelihood with the component
        added. Shape: ``(R, S)`` both."""
        count, s1, s2, lml = seg
        c0, c1, c2 = stats
        occupied = count > 0
        new_slot = (~occupied).long().argmax(1)
        joined = self.likelihood.log_marginal(
            count + c0[:, None], s1 + c1[:, None], s2 + c2[:, None]
        )
        prior = self._prior(state.alpha, state.discount)
        scores = self.log_eppf_ratio(prior, count, c0) + joined - lml
        if nbr is not None:
            scores = scores + self.log_potts_factor(nbr, rows, cid, cseg, count.shape[1])
        scores = torch.where(occupied, scores, -torch.inf)
        k_rest = occupied.sum(1)
        scores[rows, new_slot] = prior.log_new(c0, k_rest) + joined[rows, new_slot]
        return scores, joined

    def log_eppf_ratio(self, prior: GibbsPartitionPrior, count: Tensor, c: Tensor) -> Tensor:
        """``log g(.., m_j + |C|, ..) / g(.., m_j, ..)`` for every slot. Shape ``(R, S)``."""
        return prior.log_add(count.clamp(min=1), c[:, None])

    def log_potts_factor(self, nbr, rows, cid, cseg, slots) -> Tensor:
        """``sum log e^beta (1 - q)`` over the component's boundary edges into each slot."""
        other, weight = nbr
        nb, w = other[rows, cid], weight[rows, cid]  # (R, D)
        where = cseg.gather(1, nb.clamp(min=0))
        return torch.zeros(
            rows.shape[0], slots, dtype=torch.float64, device=rows.device
        ).scatter_add_(1, where, torch.where(nb >= 0, w, 0.0))

    def _boundaries(self, dense: Tensor, kmax: int) -> tuple[Tensor, Tensor]:
        """Per component, its boundary edges as padded ``(R, K, D)`` tensors of the
        neighbouring component (``-1``: padding) and the edge's ``log e^beta (1 - q)``."""
        replicas = dense.shape[0]
        device = dense.device
        a, b = dense[:, self.edges[:, 0]], dense[:, self.edges[:, 1]]
        base = kmax * torch.arange(replicas, device=device)[:, None]
        boundary = torch.cat([a != b, a != b], 1)
        key = torch.cat([a, b], 1) + base
        other = torch.cat([b, a], 1)
        assert self.log_off is not None  # only called with non-Swendsen-Wang bonds
        weight = self.log_off.repeat(2).expand(replicas, -1)
        key, other, weight = key[boundary], other[boundary], weight[boundary]
        key, perm = key.sort(stable=True)
        other, weight = other[perm], weight[perm]
        counts = torch.bincount(key, minlength=replicas * kmax)
        depth = max(int(counts.max()) if key.numel() else 0, 1)
        start = torch.cumsum(counts, 0) - counts
        pos = torch.arange(key.shape[0], device=device) - start[key]
        nb = torch.full((replicas * kmax, depth), -1, dtype=torch.long, device=device)
        w = torch.zeros((replicas * kmax, depth), dtype=torch.float64, device=device)
        nb[key, pos], w[key, pos] = other, weight
        return nb.view(replicas, kmax, depth), w.view(replicas, kmax, depth)

    # -- hyper-parameters ---------------------------------------------------------------
    def _hyper_step(self, labels, alpha, discount, generator):
        count = torch.zeros_like(labels, dtype=torch.float64).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=torch.float64)
        )
        shape, rate = self.alpha_prior

        def unpack(x: Tensor) -> tuple[Tensor, Tensor]:
            # the slice sampler may evaluate stacked copies of the chains, (j R, dim)
            d = (
                torch.sigmoid(x[:, 1])
                if self.sample_discount
                else discount.repeat(x.shape[0] // len(discount))
            )
            return x[:, 0].exp(), d

        def log_prob(x: Tensor) -> Tensor:
            a, d = unpack(x)
            lp = (shape - 1) * x[:, 0] - rate * a + x[:, 0]  # Gamma prior and log-Jacobian
            if self.sample_discount:  # Uniform(0, 1) prior, Jacobian d (1 - d)
                lp = lp + nn_f.logsigmoid(x[:, 1]) + nn_f.logsigmoid(-x[:, 1])
            sizes = count.repeat(x.shape[0] // count.shape[0], 1)
            return lp + self.prior.with_params(a, d).log_eppf(sizes)

        cols = [alpha.log()] + (
            [torch.logit(discount.clamp(1e-6, 1 - 1e-6))] if self.sample_discount else []
        )
        x = torch.stack(cols, 1)
        state = SliceState(x, log_prob(x))
        state, _ = slice_step(state, log_prob, width=torch.tensor(1.0), generator=generator)
        return unpack(state.position)


def _bcast(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(mask.shape + (1,) * (like.dim() - 2))


def _ensure_free(seg, need: int):
    """Pad every per-slot tensor so each replica keeps ``need`` empty slots."""
    count = seg[0]
    free = int((count <= 0).sum(1).min())
    if free >= need:
        return seg
    return [torch.cat([s, s.new_zeros((s.shape[0], need) + s.shape[2:])], 1) for s in seg]
