"""The Rademacher distribution: a torch-compatible Distribution on {-1, +1}."""

from __future__ import annotations

import math

import pytest
import torch

from bayestorch.distributions import Rademacher, plus_minus_one
from bayestorch.testing import assert_counts, categorical_counts


@pytest.mark.statistical
def test_sample_frequencies(device):
    probs = torch.tensor([0.5, 0.1, 0.85], device=device)
    x = Rademacher(probs).sample((30000,), generator=torch.Generator(device=device).manual_seed(0))
    assert x.shape == (30000, 3) and x.device.type == device.type
    counts = torch.stack(
        [torch.as_tensor(categorical_counts(((c + 1) / 2).long(), 2)) for c in x.T]
    )
    assert_counts(counts, torch.stack([1 - probs, probs], -1).cpu().double())


def test_shapes_log_prob_and_moments():
    d = Rademacher(logits=torch.tensor([[0.0], [2.0]]))
    assert d.batch_shape == (2, 1) and d.event_shape == ()
    e = d.expand((2, 4))
    assert e.sample((3,)).shape == (3, 2, 4)
    p = torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(d.log_prob(torch.tensor(1.0))[1, 0], torch.log(p))
    torch.testing.assert_close(d.log_prob(torch.tensor(-1.0))[1, 0], torch.log1p(-p))
    torch.testing.assert_close(d.mean[1, 0], 2 * p - 1)
    torch.testing.assert_close(d.variance[1, 0], 4 * p * (1 - p))
    support = d.enumerate_support()
    assert support.shape == (2, 2, 1)
    total = d.log_prob(support).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(2, 1))
    entropy = -(d.log_prob(support).exp() * d.log_prob(support)).sum(0)
    torch.testing.assert_close(d.entropy(), entropy)
    assert d.mode.tolist() == [[1.0], [1.0]]


def test_validation_and_support():
    with pytest.raises(ValueError, match="exactly one of probs or logits"):
        Rademacher()
    with pytest.raises(ValueError, match="probs"):
        Rademacher(probs=torch.tensor(1.5), validate_args=True)
    d = Rademacher(probs=torch.tensor(0.3), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor(0.0))
    assert plus_minus_one.check(torch.tensor([-1.0, 1.0, 0.0])).tolist() == [True, True, False]
    assert Rademacher.support is plus_minus_one and not Rademacher.has_rsample


def test_log_prob_gradient_and_symmetric_case():
    logits = torch.tensor(0.0, requires_grad=True)
    Rademacher(logits=logits).log_prob(torch.tensor(1.0)).backward()
    assert math.isclose(float(logits.grad), 0.5)
    assert Rademacher(0.5).sample((10,), generator=torch.Generator()).abs().eq(1).all()


def test_generator_reproducible():
    a = Rademacher(0.4).sample((50,), generator=torch.Generator().manual_seed(1))
    b = Rademacher(0.4).sample((50,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
