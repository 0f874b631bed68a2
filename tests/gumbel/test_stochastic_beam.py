"""Stochastic beam search (Kool, van Hoof & Welling 2019) on a fully enumerable sequence model.

The model: vocabulary {0, 1, 2} with eos = 2, next-token log-probs a fixed function of the
prefix, max_len = 3, so 15 sequences. Checked by hand once: a search that perturbs every
prefix independently (no truncated Gumbel: ``child_g = child_lp + noise``) fails the enumeration,
root-identity, max-is-Gumbel and estimator tests; one that fixes the root's perturbed value at 0
(instead of drawing it) fails the estimator's unbiasedness test (z = -6).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bayestorch.gumbel import stochastic_beam_log_weights, stochastic_beam_search
from bayestorch.testing import assert_counts, assert_ks, assert_z, categorical_counts

VOCAB, EOS, BOS, MAX_LEN = 3, 2, 0, 3


def _logits_of(prefix: tuple[int, ...]) -> list[float]:
    # A fixed, prefix-dependent table; the first step ends at once with probability ~0.4.
    h = sum((t + 1) * 7**i for i, t in enumerate(prefix)) + 3 * len(prefix)
    return [math.sin(h) * 1.5, math.cos(1.7 * h), 0.8 if len(prefix) == 1 else -0.5 + math.sin(h)]


def _table():
    table = {}
    for length in range(1, MAX_LEN + 1):
        for rest in itertools.product(range(VOCAB), repeat=length - 1):
            prefix = (BOS, *rest)
            table[prefix] = torch.log_softmax(
                torch.tensor(_logits_of(prefix), dtype=torch.float64), -1
            )
    return table


TABLE = _table()


def step_log_probs(prefixes: torch.Tensor) -> torch.Tensor:
    rows = [TABLE.get(tuple(p), torch.zeros(VOCAB, dtype=torch.float64)) for p in prefixes.tolist()]
    return torch.stack(rows).to(prefixes.device)


def _make_vectorised_step():
    # The same model as a lookup: prefix -> row index (so big batches are cheap).
    keys = list(TABLE)
    rows = torch.stack([TABLE[k] for k in keys])
    index = {k: i for i, k in enumerate(keys)}

    def step(prefixes):
        t = prefixes.shape[1]
        codes = (prefixes * (VOCAB ** torch.arange(t, device=prefixes.device))).sum(-1)
        lookup = torch.full((VOCAB**t,), 0, dtype=torch.long)
        for k, i in index.items():
            if len(k) == t:
                lookup[sum(v * VOCAB**j for j, v in enumerate(k))] = i
        return rows.to(prefixes.device)[lookup.to(prefixes.device)[codes]]

    return step


def _enumerate_sequences():
    """All complete sequences (padded with eos) and their exact log-probabilities."""
    out = {}

    def grow(prefix, lp):
        if (len(prefix) > 1 and prefix[-1] == EOS) or len(prefix) == MAX_LEN + 1:
            padded = prefix + (EOS,) * (MAX_LEN + 1 - len(prefix))
            out[padded] = lp
            return
        row = TABLE[prefix]
        for token in range(VOCAB):
            grow(prefix + (token,), lp + float(row[token]))

    grow((BOS,), 0.0)
    return out


SEQUENCES = _enumerate_sequences()


def test_enumeration_is_a_distribution():
    assert len(SEQUENCES) == 15
    assert math.isclose(sum(math.exp(v) for v in SEQUENCES.values()), 1.0, rel_tol=1e-12)


def test_log_probs_are_exact_and_sequences_distinct(device):
    out = stochastic_beam_search(
        _make_vectorised_step(),
        torch.zeros(200, dtype=torch.long, device=device),
        6,
        MAX_LEN,
        EOS,
        generator=torch.Generator(device=device).manual_seed(0),
    )
    assert out.sequences.shape == (200, 6, MAX_LEN + 1)
    for seqs, lps in zip(out.sequences.tolist(), out.log_probs.tolist()):
        assert len({tuple(s) for s in seqs}) == 6
        for s, lp in zip(seqs, lps):
            assert math.isclose(lp, SEQUENCES[tuple(s)], rel_tol=1e-9, abs_tol=1e-9)
    assert (out.perturbed_log_probs.diff(dim=-1) <= 0).all()


def test_root_value_is_preserved_down_the_tree(device):
    # The truncated Gumbel identity: a parent's perturbed value is the max of its children's,
    # so the largest perturbed value at the end is the root's draw (the generator's first),
    # exactly, however deep the search goes.
    tops = []
    for max_len in (1, 2, 3):
        out = stochastic_beam_search(
            _make_vectorised_step(),
            torch.zeros(300, dtype=torch.long, device=device),
            4,
            max_len,
            EOS,
            generator=torch.Generator(device=device).manual_seed(11),
        )
        tops.append(out.perturbed_log_probs[:, 0])
    assert torch.equal(tops[0], tops[1]) and torch.equal(tops[0], tops[2])


@pytest.mark.statistical
def test_largest_perturbed_value_is_a_standard_gumbel(device):
    # max over all sequences of Gumbel(log p(y)) ~ Gumbel(log sum p) = Gumbel(0).
    out = stochastic_beam_search(
        _make_vectorised_step(),
        torch.zeros(5000, dtype=torch.long, device=device),
        2,
        MAX_LEN,
        EOS,
        generator=torch.Generator(device=device).manual_seed(12),
    )
    assert_ks(out.perturbed_log_probs[:, 0], lambda v: np.exp(-np.exp(-v)))


def _ordered_pair_probs():
    seqs = list(SEQUENCES)
    p = np.exp(np.array([SEQUENCES[s] for s in seqs]))
    pairs, probs = [], []
    for i, j in itertools.permutations(range(len(seqs)), 2):
        pairs.append((seqs[i], seqs[j]))
        probs.append(p[i] * p[j] / (1 - p[i]))
    probs = np.array(probs)
    return pairs, probs / probs.sum()


@pytest.mark.statistical
def test_samples_are_exact_without_replacement(device):
    n = 30000
    out = stochastic_beam_search(
        _make_vectorised_step(),
        torch.zeros(n, dtype=torch.long, device=device),
        2,
        MAX_LEN,
        EOS,
        generator=torch.Generator(device=device).manual_seed(1),
    )
    pairs, probs = _ordered_pair_probs()
    code = {pair: i for i, pair in enumerate(pairs)}
    labels = [code[(tuple(a), tuple(b))] for a, b in out.sequences.tolist()]
    assert_counts(categorical_counts(np.array(labels), len(pairs)), probs)


def test_runs_max_len_steps_even_when_all_finished():
    calls = []

    def always_eos(prefixes):
        calls.append(prefixes.shape)
        return torch.log(torch.tensor([[1e-9, 1e-9, 1.0 - 2e-9]]).expand(prefixes.shape[0], 3))

    out = stochastic_beam_search(
        always_eos, BOS, 2, 5, EOS, generator=torch.Generator().manual_seed(0)
    )
    assert len(calls) == 5 and calls[-1] == (2, 5)
    assert out.sequences[0].tolist() == [BOS, EOS, EOS, EOS, EOS, EOS]


def test_small_space_fills_with_empty_slots_and_exact_weights():
    # Two bits, no eos: 4 sequences; a beam of 6 returns all 4, then 2 empty (-inf) slots.
    def bits(prefixes):
        return torch.full((prefixes.shape[0], 2), math.log(0.5), dtype=torch.float64)

    out = stochastic_beam_search(bits, 0, 6, 2, generator=torch.Generator().manual_seed(0))
    assert out.sequences.shape == (6, 3)
    assert {tuple(s) for s in out.sequences[:4].tolist()} == {
        (0, a, b) for a in range(2) for b in range(2)
    }
    assert torch.isneginf(out.perturbed_log_probs[4:]).all()
    log_w = stochastic_beam_log_weights(out.log_probs[:5], out.perturbed_log_probs[:5])
    torch.testing.assert_close(log_w, out.log_probs[:4])  # kappa = -inf: q = 1, w = p


@pytest.mark.statistical
def test_importance_weighted_estimator_is_unbiased(device):
    # E[sum_i w_i f(y_i)] = E_p[f]: f = number of tokens before eos, k = 3 (beam of 4).
    n, k = 4000, 3
    out = stochastic_beam_search(
        _make_vectorised_step(),
        torch.zeros(n, dtype=torch.long, device=device),
        k + 1,
        MAX_LEN,
        EOS,
        generator=torch.Generator(device=device).manual_seed(2),
    )
    w = stochastic_beam_log_weights(out.log_probs, out.perturbed_log_probs).exp()
    f = (out.sequences[:, :k, 1:] != EOS).sum(-1).double()
    estimates = (w * f).sum(-1)
    truth = sum(math.exp(lp) * sum(t != EOS for t in s[1:]) for s, lp in SEQUENCES.items())
    assert_z(estimates.mean(), truth, estimates.std() / math.sqrt(n))


def test_batched_and_single_agree_in_shape_and_validation():
    out = stochastic_beam_search(step_log_probs, BOS, 3, MAX_LEN, EOS)
    assert out.sequences.shape == (3, MAX_LEN + 1) and out.log_probs.shape == (3,)
    with pytest.raises(ValueError, match="beam_size"):
        stochastic_beam_search(step_log_probs, BOS, 0, MAX_LEN, EOS)
    with pytest.raises(ValueError, match="max_len"):
        stochastic_beam_search(step_log_probs, BOS, 2, 0, EOS)
    with pytest.raises(ValueError, match="step_log_probs_fn must map"):
        stochastic_beam_search(lambda p: torch.zeros(3), BOS, 2, 2, EOS)
    with pytest.raises(ValueError, match="same shape"):
        stochastic_beam_log_weights(torch.zeros(3), torch.zeros(4))


def test_generator_reproducible():
    a = stochastic_beam_search(
        step_log_probs, BOS, 3, MAX_LEN, EOS, generator=torch.Generator().manual_seed(5)
    )
    b = stochastic_beam_search(
        step_log_probs, BOS, 3, MAX_LEN, EOS, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(a.sequences, b.sequences) and torch.equal(
        a.perturbed_log_probs, b.perturbed_log_probs
    )


@pytest.mark.statistical
def test_chunked_searches_are_exact_without_replacement():
    """Issue 21 (bounded memory): searches run in chunks (the generator runs on from chunk to
    chunk) still draw exact ordered pairs without replacement."""
    n = 12000
    out = stochastic_beam_search(
        _make_vectorised_step(),
        torch.zeros(n, dtype=torch.long),
        2,
        MAX_LEN,
        EOS,
        generator=torch.Generator().manual_seed(3),
        chunk_size=1700,
    )
    assert out.sequences.shape == (n, 2, MAX_LEN + 1)
    pairs, probs = _ordered_pair_probs()
    code = {pair: i for i, pair in enumerate(pairs)}
    labels = [code[(tuple(a), tuple(b))] for a, b in out.sequences.tolist()]
    assert_counts(categorical_counts(np.array(labels), len(pairs)), probs)


def test_default_chunks_are_sized_from_the_vocabulary(monkeypatch):
    import bayestorch.utils.chunking as chunking

    calls = []

    def step(prefixes):
        calls.append(prefixes.shape[0])
        return step_log_probs(prefixes)

    k, num = 3, 5
    per_search = 8 * 8 * k * (VOCAB + MAX_LEN + 1)
    monkeypatch.setattr(chunking, "DEFAULT_MAX_MEMORY", 2 * per_search)
    bos = torch.zeros(num, dtype=torch.long)
    out = stochastic_beam_search(step, bos, k, MAX_LEN, EOS, generator=torch.Generator())
    # the first search alone (it shows the vocabulary), then chunks of two searches
    assert calls == [k] * MAX_LEN + [2 * k] * MAX_LEN + [2 * k] * MAX_LEN
    assert out.sequences.shape == (num, k, MAX_LEN + 1)
    calls.clear()
    one = stochastic_beam_search(step, bos, k, MAX_LEN, EOS, chunk_size=num)
    assert calls == [num * k] * MAX_LEN and one.log_probs.shape == (num, k)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        stochastic_beam_search(step, bos, k, MAX_LEN, EOS, chunk_size=0)
