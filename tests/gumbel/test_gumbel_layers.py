"""bayestorch/gumbel/layers.py: the GumbelSoftmax layer and its temperature schedule."""

from __future__ import annotations

import math

import pytest
import torch

from bayestorch.gumbel import GumbelSoftmax, exponential_anneal, gumbel_softmax


def test_exponential_anneal_follows_jang_et_al():
    assert exponential_anneal(0, 1.0, 1e-3, 0.5) == 1.0
    assert exponential_anneal(100, 1.0, 1e-3, 0.5) == pytest.approx(math.exp(-0.1))
    assert exponential_anneal(10**6, 1.0, 1e-3, 0.5) == 0.5  # the floor
    # held constant within each block of `every` steps
    assert exponential_anneal(499, 1.0, 1e-3, 0.5, every=500) == 1.0
    assert exponential_anneal(500, 1.0, 1e-3, 0.5, every=500) == pytest.approx(math.exp(-0.5))


def test_layer_matches_functional_and_advances(device):
    layer = GumbelSoftmax(tau=1.0, anneal=0.01, min_tau=0.2).to(device)
    logits = torch.randn(4, 6, device=device)
    g1, g2 = (torch.Generator(device=device).manual_seed(0) for _ in range(2))
    torch.testing.assert_close(
        layer(logits, generator=g1), gumbel_softmax(logits, 1.0, generator=g2)
    )
    layer.advance(50)
    assert layer.tau == pytest.approx(math.exp(-0.5))
    assert int(layer.step) == 50
    layer.advance(10**4)
    assert layer.tau == 0.2


def test_constant_and_callable_schedules():
    assert GumbelSoftmax(tau=0.7).tau == 0.7
    layer = GumbelSoftmax(tau=1.0, anneal=lambda step: 1.0 / (1 + step))
    layer.advance(3)
    assert layer.tau == 0.25


def test_state_dict_resumes_the_schedule():
    layer = GumbelSoftmax(tau=2.0, anneal=1e-2, min_tau=0.5, hard=True)
    layer.advance(70)
    fresh = GumbelSoftmax(tau=2.0, anneal=1e-2, min_tau=0.5, hard=True)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.tau == layer.tau and fresh.tau < 2.0
    assert "step=70" in repr(fresh)


def test_hard_layer_outputs_one_hot():
    y = GumbelSoftmax(hard=True)(torch.randn(10, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(y.sum(-1), torch.ones(10)) and set(y.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 0.0}, "tau must be a finite temperature"),
        ({"tau": 1.0, "anneal": -1.0}, "anneal"),
        ({"tau": 1.0, "anneal": 0.1, "min_tau": 2.0}, "min_tau"),
        ({"tau": 1.0, "anneal_every": 0}, "anneal_every"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GumbelSoftmax(**kwargs)
