"""Fuzz cases of bayestorch.gumbel."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

G = bt.gumbel

exempt("namedtuple", "the result triple of stochastic_beam_search", "gumbel.StochasticBeamResult")


def _logits(f, min_dims=1):
    shape = f.shape(min_dims=min_dims)
    logits = f.randn(*shape, scale=2.0)
    dim = f.draw(st.integers(-len(shape), len(shape) - 1)) if shape else -1
    return shape, logits, dim


@case("gumbel.gumbel_max")
def _(f):
    shape, logits, dim = _logits(f)
    dim = f.arg("dim", dim)
    out = G.gumbel_max(f.arg("logits", logits, neg_inf_ok=True), dim=dim, generator=f.generator())
    expected = shape[: dim % len(shape)] + shape[dim % len(shape) + 1 :]
    return f.expect(out, expected, dtype=torch.int64)


@case("gumbel.gumbel_top_k")
def _(f):
    shape, logits, dim = _logits(f)
    k = f.draw(st.integers(1, max(1, shape[dim])))
    out = G.gumbel_top_k(
        f.arg("logits", logits, neg_inf_ok=True),
        f.arg("k", k),
        dim=f.arg("dim", dim),
        generator=f.generator(),
    )
    expected = list(shape)
    expected[dim] = k
    return f.expect(out, tuple(expected), dtype=torch.int64)


@case("gumbel.gumbel_softmax")
def _(f):
    shape, logits, dim = _logits(f)
    tau = f.draw(st.sampled_from([1.0, 0.5, 2.0]))
    out = G.gumbel_softmax(
        f.arg("logits", logits, neg_inf_ok=True, propagates=True),
        f.arg("tau", tau),
        f.arg("hard", f.draw(st.booleans())),
        dim=f.arg("dim", dim),
        generator=f.generator(),
    )
    return f.expect(out, shape)


@case("gumbel.GumbelSoftmax")
def _(f):
    shape, logits, dim = _logits(f)
    anneal = f.draw(st.sampled_from([None, 1e-2]))
    layer = G.GumbelSoftmax(
        f.arg("tau", 1.0),
        f.arg("hard", f.draw(st.booleans())),
        f.arg("anneal", anneal) if anneal is not None else None,
        min_tau=f.arg("min_tau", 0.5),
        anneal_every=f.arg("anneal_every", 1),
        dim=f.arg("dim", dim),
    ).to(f.device)
    layer.advance(f.arg("num_steps", f.draw(st.integers(0, 5))))
    out = layer(f.arg("logits", logits, neg_inf_ok=True, propagates=True), generator=f.generator())
    return f.expect(out, shape)


@case("gumbel.gumbel_noise")
def _(f):
    shape = f.shape()
    out = G.gumbel_noise(
        f.arg("shape", shape), generator=f.generator(), device=f.device, dtype=f.dtype
    )
    return f.expect(out, shape, dtype=f.dtype)


@case("gumbel.exponential_anneal")
def _(f):
    return G.exponential_anneal(
        f.arg("step", f.draw(st.integers(0, 100))),
        f.arg("initial", 1.0, propagates=True),  # scalar arithmetic, like math.exp
        f.arg("rate", 0.01, propagates=True),
        f.arg("minimum", 0.5, propagates=True),
        f.arg("every", f.draw(st.integers(1, 5))),
    )


@case("gumbel.log1mexp")
def _(f):
    shape = f.shape()
    x = -f.randn(*shape).abs()  # the domain x <= 0
    return f.expect(G.log1mexp(f.arg("x", x, propagates=True)), shape)


@case("gumbel.truncated_gumbel")
def _(f):
    shape = f.shape()
    location = f.randn(*shape)
    truncation = f.draw(st.sampled_from([0.0, 1.5]))
    out = G.truncated_gumbel(
        f.arg("location", location, neg_inf_ok=True, propagates=True),
        f.arg("truncation", truncation, propagates=True),
        generator=f.generator(),
    )
    f.allow_neg_inf()
    return f.expect(out, shape)


@case("gumbel.shift_gumbels_to_max")
def _(f):
    shape = f.shape(min_dims=1)
    gumbels = f.randn(*shape)
    target = f.randn(*shape[:-1], 1)
    out = G.shift_gumbels_to_max(
        f.arg("gumbels", gumbels, neg_inf_ok=True, propagates=True),
        f.arg("target_max", target, propagates=True),
        dim=f.arg("dim", -1),
    )
    f.allow_neg_inf()
    return f.expect(out, shape)


def _bits(vocab):
    def step(prefix):
        return torch.full((prefix.shape[0], vocab), -torch.log(torch.tensor(float(vocab))).item())

    return step


@case("gumbel.stochastic_beam_search", examples=0.5)
def _(f):
    vocab = f.size(1, 3)
    k = f.size(1, 4)
    max_len = f.size(1, 3)
    batched = f.draw(st.booleans())
    bos = torch.zeros(f.size(0, 2), dtype=torch.long) if batched else 0
    out = G.stochastic_beam_search(
        f.arg("step_log_probs_fn", _bits(vocab)),
        f.arg("bos", bos),
        f.arg("beam_size", k),
        f.arg("max_len", max_len),
        f.arg("eos", f.draw(st.sampled_from([None, vocab - 1]))),
    )
    batch = tuple(bos.shape) if batched else ()
    f.expect(out.sequences, (*batch, k, max_len + 1))
    f.expect(out.log_probs, (*batch, k))
    f.allow_neg_inf()  # empty beam slots when the space has fewer than k sequences
    return out


@case("gumbel.stochastic_beam_log_weights")
def _(f):
    batch = f.shape(max_dims=2)
    k1 = f.size(2, 5)
    log_probs = -f.randn(*batch, k1).abs()
    perturbed = (log_probs - f.randn(*batch, k1).abs().cumsum(-1)).sort(-1, descending=True)[0]
    out = G.stochastic_beam_log_weights(
        f.arg("log_probs", log_probs, neg_inf_ok=True, shape_fuzz=True, propagates=True),
        f.arg("perturbed_log_probs", perturbed, neg_inf_ok=True, shape_fuzz=True, propagates=True),
    )
    f.allow_neg_inf()
    return f.expect(out, (*batch, k1 - 1))
