"""Mode-coverage and clustering metrics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayestorch.gan.evaluation import (
    clustering_accuracy,
    grid_means,
    kl_from_uniform,
    match_clusters,
    mode_coverage,
    normalized_mutual_info,
    num_components_above,
    ring_means,
    sample_gaussian_mixture,
    total_variation,
)
from bayestorch.testing.gof import assert_counts, assert_z


def test_ring_has_eight_distinct_modes_on_the_unit_circle():
    means = ring_means(8)
    assert means.shape == (8, 2)
    torch.testing.assert_close(means.norm(dim=1), torch.ones(8))
    distance = torch.cdist(means, means) + 10 * torch.eye(8)
    # nearest neighbours are one step of 2 pi / 8 apart: the linspace(0, 2 pi, 8) trap
    # (first and last angle equal) would give a zero distance here
    torch.testing.assert_close(distance.min(), torch.tensor(2 * math.sin(math.pi / 8)))


def test_grid_is_the_product_of_the_coordinates():
    means = grid_means()
    assert means.shape == (25, 2)
    expected = {(a, b) for a in (-4.0, -2.0, 0.0, 2.0, 4.0) for b in (-4.0, -2.0, 0.0, 2.0, 4.0)}
    assert {tuple(row.tolist()) for row in means} == expected


def test_kl_from_uniform_known_values():
    assert kl_from_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0, abs=1e-12)
    assert kl_from_uniform(torch.tensor([0, 7, 0, 0])) == pytest.approx(math.log(4))
    assert kl_from_uniform(torch.tensor([1, 3])) == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    )
    assert kl_from_uniform(torch.zeros(8)) == pytest.approx(math.log(8))


def test_mode_coverage_on_a_constructed_sample():
    means = ring_means(8)
    std = 0.01
    direction = torch.tensor([0.6, 0.8])
    samples = torch.cat(
        [
            means[[0, 0, 0, 1, 2]],  # exactly on modes 0 (x3), 1, 2
            means[[3]] + 2.9 * std * direction,  # inside 3 sigma of mode 3
            means[[4]] + 3.1 * std * direction,  # just outside: low quality
            torch.zeros(3, 2),  # the centre: far from every mode
        ]
    )
    result = mode_coverage(samples, means, std)
    assert result.modes_captured == 4
    assert result.high_quality == pytest.approx(6 / 10)
    assert result.counts.tolist() == [3, 1, 1, 1, 0, 0, 0, 0]
    p = torch.tensor([3, 1, 1, 1]) / 6
    assert result.reverse_kl == pytest.approx(float((p * (8 * p).log()).sum()))


def test_mode_coverage_of_the_true_distribution():
    # Draws from the benchmark itself capture every mode; the high-quality fraction is
    # P(chi2_2 <= 9) = 1 - exp(-4.5) and the mode histogram is uniform.
    g = torch.Generator().manual_seed(0)
    means, std, n = grid_means(), 0.05, 20_000
    samples, _ = sample_gaussian_mixture(n, means, std, generator=g)
    result = mode_coverage(samples, means, std)
    assert result.modes_captured == 25
    p = 1 - math.exp(-4.5)
    assert_z(result.high_quality, p, math.sqrt(p * (1 - p) / n))
    assert_counts(result.counts.numpy(), np.full(25, 1 / 25))
    # E[reverse KL] of a multinomial histogram ~ (K - 1) / (2 m): small, not zero
    assert result.reverse_kl < 25 / result.counts.sum().item()


def test_mode_coverage_detects_a_collapsed_generator():
    # A deliberately collapsed generator (all mass on 2 of the 8 ring modes).
    g = torch.Generator().manual_seed(1)
    means, std = ring_means(8), 0.01
    samples, _ = sample_gaussian_mixture(2500, means[[2, 5]], std, generator=g)
    result = mode_coverage(samples, means, std)
    assert result.modes_captured == 2
    assert result.reverse_kl == pytest.approx(math.log(4), abs=0.01)


def test_sample_gaussian_mixture_weights():
    g = torch.Generator().manual_seed(2)
    weights = torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08])
    _, k = sample_gaussian_mixture(5000, torch.randn(5, 3, generator=g), 0.1, weights, generator=g)
    assert_counts(np.bincount(k.numpy(), minlength=5), weights.numpy())


def test_clustering_accuracy_and_nmi_are_permutation_invariant():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    permuted = np.array([2, 0, 1])[labels]
    assert clustering_accuracy(permuted, labels) == 1.0
    assert normalized_mutual_info(permuted, labels) == pytest.approx(1.0)
    assert match_clusters(permuted, labels).tolist() == [1, 2, 0]


def test_clustering_accuracy_known_value():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    predicted = np.array([1, 1, 1, 0, 0, 0, 0, 1])  # best match 1->0, 0->1: 6 of 8 right
    assert clustering_accuracy(predicted, labels) == pytest.approx(6 / 8)
    # a single cluster can match only one label
    assert clustering_accuracy(np.zeros(8, dtype=int), labels) == pytest.approx(0.5)
    # extra clusters are unmatched and count as errors
    assert clustering_accuracy(np.array([0, 0, 0, 2, 1, 1, 1, 1]), labels) == pytest.approx(7 / 8)
    assert match_clusters(np.array([0, 0, 0, 2, 1, 1, 1, 1]), labels).tolist() == [0, 1, -1]


def test_nmi_of_independent_labels_is_zero():
    labels = np.array([0, 0, 1, 1])
    assert normalized_mutual_info(np.array([0, 1, 0, 1]), labels) == pytest.approx(0.0, abs=1e-12)


def test_total_variation():
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)
    assert total_variation([0.2, 0.8], [0.8, 0.2]) == pytest.approx(0.6)
    assert total_variation([0.2, 0.8], [0.8, 0.2], sort=True) == pytest.approx(0.0)
    assert total_variation([0.5, 0.3, 0.2], [0.5, 0.5]) == pytest.approx(0.2)


def test_num_components_above():
    assert num_components_above(torch.tensor([0.5, 0.3, 0.19, 0.009, 0.001])) == 3
    assert num_components_above([0.6, 0.4], threshold=0.5) == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ring_means(0), "num_modes"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(4, 3), 0.1), "same d"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(4, 2), 0.0), "positive"),
        (lambda: clustering_accuracy(np.array([0, 1]), np.array([0])), "equal length"),
        (lambda: clustering_accuracy(np.array([0.5, 1.0]), np.array([0, 1])), "integer"),
        (lambda: total_variation([0.5, 0.6], [1.0]), "probability vector"),
        (lambda: kl_from_uniform(torch.tensor([-1, 2])), "non-negative"),
        (lambda: num_components_above([0.5, 0.5], threshold=1.0), "threshold"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
