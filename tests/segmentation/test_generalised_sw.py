"""Generalised Swendsen–Wang: exactness by enumeration of all partitions of tiny grids.

Each statistical test draws one partition per independent replica (replicas run batched)
and compares the counts over all Bell(n) partitions with the exact posterior
``p(Pi | y) ∝ g(sizes) exp(beta sum 1[z_i = z_j]) prod_A p(y_A)`` (chi-square, declared
failure rate 1e-3). Invariance tests start the replicas at exact draws and run a few
sweeps; the convergence test starts every replica at the all-singletons partition.
Broken variants (EPPF ratio constant; off-bond Potts factor dropped under non-SW bonds)
fail the same tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayestorch.segmentation.conjugate import NormalInverseGamma, SegmentStats
from bayestorch.segmentation.generalised_sw import GeneralisedSwendsenWang, default_likelihood
from bayestorch.segmentation.partitions import canonical_labels, set_partitions
from bayestorch.testing.gof import assert_counts, chisquare_pvalue

FAILURE_RATE = 1e-3
GRID_2X3 = torch.tensor([[0.0, 0.1, 1.0], [0.2, 0.9, 1.1]])
GRID_1X5 = torch.tensor([[0.0, 0.15, 0.8, 1.0, 0.3]])
LIKELIHOOD = NormalInverseGamma(mean=0.5, kappa=0.5, shape=2.0, rate=0.05)


def _partition_index(labels: torch.Tensor, partitions: torch.Tensor) -> torch.Tensor:
    n = labels.shape[1]
    weights = n ** torch.arange(n)
    codes = (canonical_labels(labels.cpu()) * weights).sum(1)
    table = (partitions * weights).sum(1)
    order = table.argsort()
    return order[torch.searchsorted(table[order], codes)]


def _exact(kernel: GeneralisedSwendsenWang, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    partitions = set_partitions(n)
    probs = torch.softmax(kernel.log_joint(partitions.to(kernel.pixels.device)).cpu(), 0)
    return partitions, probs


def _run(kernel, labels, sweeps, generator):
    state = kernel.init(labels)
    for _ in range(sweeps):
        state, info = kernel.step(state, generator)
    return state, info


def _counts_after(kernel, n, replicas, sweeps, seed, start="exact", device="cpu"):
    partitions, probs = _exact(kernel, n)
    gen = torch.Generator(device=device).manual_seed(seed)
    if start == "exact":
        draws = torch.multinomial(
            probs, replicas, replacement=True, generator=torch.Generator().manual_seed(seed)
        )
        labels = partitions[draws]
    else:
        labels = torch.arange(n).expand(replicas, n)
    state, _ = _run(kernel, labels.to(device), sweeps, gen)
    counts = np.bincount(_partition_index(state.labels, partitions).numpy(), minlength=len(probs))
    return counts, probs.numpy(), state


def test_set_partitions_counts_bell_numbers():
    assert [set_partitions(n).shape[0] for n in range(1, 8)] == [1, 2, 5, 15, 52, 203, 877]
    assert torch.unique(set_partitions(6), dim=0).shape[0] == 203


@pytest.mark.statistical
def test_dp_converges_from_singletons_to_exact_posterior(device):
    kernel = GeneralisedSwendsenWang(
        GRID_2X3.to(device), "dp", beta=0.7, alpha=1.5, likelihood=LIKELIHOOD
    )
    counts, probs, _ = _counts_after(kernel, 6, 2500, 20, seed=1, start="singletons", device=device)
    assert_counts(counts, probs, FAILURE_RATE)


@pytest.mark.statistical
def test_pitman_yor_leaves_exact_posterior_invariant():
    kernel = GeneralisedSwendsenWang(
        GRID_2X3, "pitman_yor", beta=0.7, alpha=0.8, discount=0.4, likelihood=LIKELIHOOD
    )
    counts, probs, _ = _counts_after(kernel, 6, 8000, 3, seed=2)
    assert_counts(counts, probs, FAILURE_RATE)


@pytest.mark.statistical
def test_pitman_yor_with_negative_alpha_leaves_exact_posterior_invariant():
    # -d < alpha <= 0 is a valid Pitman-Yor prior; a strong beta bonds the whole line into
    # one component often, the case where the new-segment factor is V's empty product
    kernel = GeneralisedSwendsenWang(
        GRID_1X5, "pitman_yor", beta=2.5, alpha=-0.3, discount=0.5, likelihood=LIKELIHOOD
    )
    counts, probs, _ = _counts_after(kernel, 5, 6000, 3, seed=7)
    assert_counts(counts, probs, FAILURE_RATE)


@pytest.mark.statistical
@pytest.mark.parametrize("prior", ["finite_potts", "finite_dirichlet"])
def test_finite_prior_leaves_exact_posterior_invariant(prior):
    extra = {"dirichlet": 0.5} if prior == "finite_dirichlet" else {}
    kernel = GeneralisedSwendsenWang(
        GRID_1X5, "finite", beta=0.8, num_labels=3, likelihood=LIKELIHOOD, **extra
    )
    counts, probs, _ = _counts_after(kernel, 5, 6000, 3, seed=3)
    assert probs[(set_partitions(5).max(1).values >= 3).numpy()].sum() == 0  # > K segments
    assert_counts(counts, probs, FAILURE_RATE)


def _data_driven(cls=GeneralisedSwendsenWang):
    # edge-weighted beta and bond probabilities other than 1 - exp(-beta): the off-bond
    # Potts factor e^beta (1 - q) no longer cancels
    return cls(
        GRID_1X5, "dp", beta=1.2, alpha=1.0, contrast=0.5, bond_prob=0.6, likelihood=LIKELIHOOD
    )


@pytest.mark.statistical
def test_data_driven_bonds_keep_exact_posterior():
    counts, probs, state = _counts_after(_data_driven(), 5, 6000, 3, seed=4)
    assert_counts(counts, probs, FAILURE_RATE)


def test_bond_contrast_is_the_data_driven_bond_probability():
    image = torch.tensor([[0.0, 0.1, 0.5], [0.2, 0.9, 1.0]], dtype=torch.float64)
    kernel = GeneralisedSwendsenWang(image, "dp", beta=1.5, bond_contrast=0.3)
    y = image.flatten()
    diff2 = (y[kernel.edges[:, 0]] - y[kernel.edges[:, 1]]) ** 2
    expected = (1 - math.exp(-1.5)) * torch.exp(-diff2 / (2 * 0.3**2))
    torch.testing.assert_close(kernel.bond_prob, expected)
    torch.testing.assert_close(kernel.log_off, 1.5 + torch.log1p(-expected))


class _NoPottsFactor(GeneralisedSwendsenWang):
    """Broken: drops the e^beta (1 - q) factor over the component's off-bond pairs."""

    def log_potts_factor(self, nbr, rows, cid, cseg, slots):
        return torch.zeros(rows.shape[0], slots, dtype=torch.float64)


class _ConstantEPPF(GeneralisedSwendsenWang):
    """Broken: the EPPF ratio for joining an existing segment replaced by a constant."""

    def log_eppf_ratio(self, prior, count, c):
        return torch.zeros_like(count)


def test_dropping_the_off_bond_potts_factor_fails():
    counts, probs, _ = _counts_after(_data_driven(_NoPottsFactor), 5, 6000, 3, seed=4)
    assert chisquare_pvalue(counts, probs) < FAILURE_RATE


def test_constant_eppf_ratio_fails():
    kernel = _ConstantEPPF(GRID_2X3, "dp", beta=0.7, alpha=1.5, likelihood=LIKELIHOOD)
    counts, probs, _ = _counts_after(kernel, 6, 8000, 3, seed=2)
    assert chisquare_pvalue(counts, probs) < FAILURE_RATE


class _Flat(SegmentStats):
    """Data switched off: every segment has marginal likelihood 1."""

    def log_marginal(self, count, s1, s2):
        return torch.zeros_like(count)


@pytest.mark.statistical
@pytest.mark.parametrize(
    "prior, kwargs",
    [("dp", {"alpha": 1.5}), ("pitman_yor", {"alpha": 0.5, "discount": 0.5})],
)
def test_prior_partition_sizes_without_edges_or_data(prior, kwargs):
    n = 6
    image = torch.zeros(1, n)
    edges = torch.zeros(0, 2, dtype=torch.long)
    kernel = GeneralisedSwendsenWang(
        image, prior, beta=1.0, edges=edges, likelihood=_Flat(), **kwargs
    )
    state, _ = _run(
        kernel, torch.zeros(4000, n, dtype=torch.long), 6, torch.Generator().manual_seed(5)
    )
    # exact law of the number of segments from the EPPF: sum over partitions
    partitions = set_partitions(n)
    sizes = torch.zeros(len(partitions), n).scatter_add_(
        1, partitions, torch.ones(len(partitions), n)
    )
    log_g = kernel.prior.log_eppf(sizes)
    assert math.isclose(float(torch.logsumexp(log_g, 0)), 0.0, abs_tol=1e-10)
    k_of = partitions.max(1).values
    probs = torch.zeros(n, dtype=torch.float64).index_add_(0, k_of, log_g.exp())
    counts = np.bincount(state.num_segments.numpy() - 1, minlength=n)
    assert_counts(counts, probs.numpy(), FAILURE_RATE)


def test_state_and_info_shapes():
    kernel = GeneralisedSwendsenWang(torch.rand(8, 9), "dp", beta=1.0)
    state = kernel.init(replicas=3)
    state, info = kernel.step(state, torch.Generator().manual_seed(0))
    assert state.labels.shape == (3, 72) and state.log_joint.shape == (3,)
    assert info.num_components.shape == (3,)
    torch.testing.assert_close(state.log_joint, kernel.log_joint(state.labels))
    counts = torch.stack([torch.bincount(row, minlength=72) for row in state.labels])
    assert torch.equal((counts > 0).sum(1), state.num_segments)


def test_rgb_image_uses_normal_inverse_wishart():
    image = torch.rand(6, 7, 3, generator=torch.Generator().manual_seed(0))
    kernel = GeneralisedSwendsenWang(image, "pitman_yor", beta=1.0, discount=0.2)
    state = kernel.init(replicas=2)
    for _ in range(2):
        state, _ = kernel.step(state, torch.Generator().manual_seed(1))
    assert bool(torch.isfinite(state.log_joint).all())


def test_alpha_and_discount_are_sampled_within_support():
    kernel = GeneralisedSwendsenWang(
        torch.rand(6, 6), "pitman_yor", beta=0.5, discount=0.3, sample_alpha=True
    )
    state = kernel.init(replicas=4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        state, _ = kernel.step(state, gen)
    assert bool((state.alpha > 0).all()) and bool(
        ((state.discount > 0) & (state.discount < 1)).all()
    )
    assert not torch.equal(state.alpha, torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image": torch.zeros(2, 3, 4, 5)}, "rank"),
        ({"image": torch.tensor([[0.0, float("nan")]])}, "NaN"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"partition_prior": "pitman_yor", "discount": 1.0}, "discount"),
        ({"partition_prior": "pitman_yor", "discount": -0.1}, "discount"),
        ({"partition_prior": "finite"}, "num_labels"),
        ({"partition_prior": "crp"}, "partition_prior"),
        ({"beta": -1.0}, "beta"),
        ({"bond_prob": 1.0}, "bond_prob"),
        ({"bond_contrast": 0.0}, "bond_contrast"),
        ({"bond_contrast": 0.1, "bond_prob": 0.5}, "at most one"),
        ({"partition_prior": "pitman_yor", "alpha": -0.5, "discount": 0.5}, "-discount"),
        ({"partition_prior": "finite", "num_labels": 3, "alpha": -5.0}, "do not apply"),
        ({"partition_prior": "finite", "num_labels": 3, "discount": 0.2}, "do not apply"),
        ({"num_labels": 3}, "only to the 'finite'"),
        ({"partition_prior": "pitman_yor", "dirichlet": 1.0}, "only to the 'finite'"),
        (
            {"partition_prior": "pitman_yor", "alpha": -0.1, "discount": 0.5, "sample_alpha": 1},
            "sample_alpha",
        ),
        ({"likelihood": "conjugate"}, "likelihood"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"image": torch.zeros(2, 3), "partition_prior": "dp"} | kwargs
    with pytest.raises(ValueError, match=match):
        GeneralisedSwendsenWang(args.pop("image"), args.pop("partition_prior"), **args)


def test_the_empirical_likelihood_is_an_explicit_choice():
    image = torch.rand(5, 6, generator=torch.Generator().manual_seed(3))
    with pytest.raises(TypeError, match="likelihood must be 'empirical'"):
        GeneralisedSwendsenWang(image, "dp", likelihood=None)
    empirical = GeneralisedSwendsenWang(image, "dp", likelihood="empirical")
    assert GeneralisedSwendsenWang(image, "dp").likelihood.rate == empirical.likelihood.rate
    explicit = default_likelihood(empirical.pixels, empirical.edges)
    labels = torch.randint(3, (4, 30), generator=torch.Generator().manual_seed(4))
    by_name = empirical.log_joint(labels)
    by_object = GeneralisedSwendsenWang(image, "dp", likelihood=explicit).log_joint(labels)
    assert torch.equal(by_name, by_object)


def test_bad_types_and_labels_raise():
    with pytest.raises(TypeError, match="image"):
        GeneralisedSwendsenWang(np.zeros((2, 3)), "dp")
    with pytest.raises(TypeError, match="floating"):
        GeneralisedSwendsenWang(torch.zeros(2, 3, dtype=torch.long), "dp")
    kernel = GeneralisedSwendsenWang(torch.zeros(2, 3), "dp")
    with pytest.raises(ValueError, match="labels"):
        kernel.init(torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="num_labels"):
        GeneralisedSwendsenWang(torch.zeros(2, 3), "finite", num_labels=2).init(torch.arange(6))


@pytest.mark.statistical
def test_alpha_slice_step_is_exact_without_coupling():
    # beta = 0 (no Potts normaliser depending on alpha): the partition's marginal under
    # alpha ~ Gamma(2, 1) is p(Pi | y) ∝ prod_A p(y_A) int Gamma(alpha) g(Pi | alpha) dalpha,
    # and for the DP g depends on alpha through k only: alpha^k / (alpha)_n.
    from scipy import integrate

    n = 5
    kernel = GeneralisedSwendsenWang(
        GRID_1X5, "dp", beta=0.0, likelihood=LIKELIHOOD, sample_alpha=True, alpha_prior=(2.0, 1.0)
    )
    partitions = set_partitions(n)
    unit = kernel.log_joint(partitions, torch.ones(len(partitions), dtype=torch.float64))
    k = partitions.max(1).values + 1  # at alpha = 1: g = prod (n_j - 1)! / n!

    def log_mix(k):
        def f(a):
            return math.exp(math.log(a) * (k + 1) - a + math.lgamma(a) - math.lgamma(a + n))

        return math.log(integrate.quad(f, 0, 200, epsabs=0, epsrel=1e-12)[0])

    shift = torch.tensor([log_mix(int(j)) for j in k], dtype=torch.float64)
    # remove alpha = 1's factor 1 / (1)_n = 1 / n!
    probs = torch.softmax(unit + math.lgamma(n + 1) + shift, 0).numpy()
    labels = torch.arange(n).expand(3000, n)
    state, _ = _run(kernel, labels, 10, torch.Generator().manual_seed(6))
    counts = np.bincount(_partition_index(state.labels, partitions).numpy(), minlength=len(probs))
    assert_counts(counts, probs, FAILURE_RATE)
