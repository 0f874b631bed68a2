"""The handler stack (bayestorch.infer.runtime), the vmap-safe log-probs
(bayestorch.infer.vmap_rules) and the Gaussian guide (bayestorch.infer.variational)."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D

import bayestorch as bt
from bayestorch.infer.runtime import Handler, active_handlers, apply_stack
from bayestorch.infer.variational import GaussianGuide
from bayestorch.infer.vmap_rules import site_log_prob


class _Record(Handler):
    def __init__(self, log, name, value=None):
        self.log, self.name, self.value = log, name, value

    def process(self, msg):
        self.log.append(("in", self.name))
        if self.value is not None:
            msg["value"] = self.value

    def postprocess(self, msg):
        self.log.append(("out", self.name))


def test_messages_go_innermost_first_and_come_back_outermost_last():
    log = []
    with _Record(log, "outer"), _Record(log, "inner", torch.tensor(3.0)):
        assert [type(h) for h in active_handlers()] == [_Record, _Record]
        value = bt.sample("x", D.Normal(0.0, 1.0))
    assert value == 3.0  # the inner handler decided, the outer saw its choice
    assert log == [("in", "inner"), ("in", "outer"), ("out", "outer"), ("out", "inner")]
    assert active_handlers() == ()


def test_without_handlers_a_model_simulates_and_a_plate_yields_all_indices():
    msg = {"type": "plate", "name": "p", "args": (4, None), "value": None}
    torch.testing.assert_close(apply_stack(msg)["value"], torch.arange(4))
    assert bt.sample("x", D.Normal(torch.zeros(2), 1.0)).shape == (2,)


def test_a_handler_unwound_by_an_exception_leaves_the_stack_clean():
    with pytest.raises(RuntimeError), _Record([], "a"), _Record([], "b"):
        raise RuntimeError("model failed")
    assert active_handlers() == ()


@pytest.mark.parametrize(
    "fn, value",
    [
        (D.Multinomial(5, probs=torch.tensor([0.0, 0.3, 0.7])), torch.tensor([0.0, 2.0, 3.0])),
        (D.Multinomial(4, logits=torch.tensor([0.1, -0.4, 1.2])), torch.tensor([1.0, 0.0, 3.0])),
        (D.Geometric(probs=torch.tensor([0.3, 1.0])), torch.tensor([2.0, 0.0])),
        (D.Independent(D.Geometric(probs=torch.tensor([0.2, 0.6])), 1), torch.tensor([1.0, 4.0])),
    ],
)
def test_vmap_rules_equal_torch_log_prob(fn, value):
    torch.testing.assert_close(site_log_prob(fn, value), fn.log_prob(value))


@pytest.mark.parametrize(
    "family, value",
    [
        (lambda p: D.Multinomial(5, probs=p, validate_args=False), torch.tensor([0.0, 2.0, 3.0])),
        (lambda p: D.Geometric(probs=p, validate_args=False), torch.tensor([2.0, 0.0, 1.0])),
    ],
)
def test_vmap_rules_batch_where_torch_log_prob_cannot(family, value):
    probs = torch.tensor([[0.0, 0.3, 0.7], [0.2, 0.3, 0.5]])
    with pytest.raises(RuntimeError, match="vmap"):  # torch's own: a boolean-mask write
        torch.func.vmap(lambda p: family(p).log_prob(value))(probs)
    batched = torch.func.vmap(lambda p: site_log_prob(family(p), value))(probs)
    torch.testing.assert_close(batched, torch.stack([family(p).log_prob(value) for p in probs]))


@pytest.mark.parametrize("kind", ["meanfield", "fullrank"])
def test_gaussian_guide_starts_at_its_scale_and_matches_its_distribution(kind):
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    guide = GaussianGuide(loc, kind, init_scale=0.3)
    torch.testing.assert_close(guide.covariance(), 0.09 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(guide.distribution().mean, loc)
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(
                0.1
                * torch.randn(p.shape, generator=torch.Generator().manual_seed(0), dtype=p.dtype)
            )
    dist = guide.distribution()
    torch.testing.assert_close(
        dist.covariance_matrix if kind == "fullrank" else torch.diag(dist.variance),
        guide.covariance(),
    )


def test_gaussian_guide_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="kind"):
        GaussianGuide(torch.zeros(2), "diag")
    with pytest.raises(ValueError, match="loc"):
        GaussianGuide(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="init_scale"):
        GaussianGuide(torch.zeros(2), init_scale=0.0)
