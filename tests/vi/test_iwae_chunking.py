"""``iwae_bound`` in chunks (issue 21, section 3): the chunked bound is the unchunked
estimator on the same draws, its gradient too (chunks checkpointed and replayed with the
same draws), and peak memory grows with the chunk, not with ``K``.

Module under test: ``bayestorch.vi.elbo``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from bayestorch.vi import elbo, iwae_bound, log_importance_weights
from tests.memory import peak

F64 = torch.float64


def model(device, batch=3, latent=2, data=4):
    g = torch.Generator(device=device).manual_seed(0)
    W = torch.randn(data, latent, generator=g, device=device, dtype=F64)
    x = torch.randn(batch, data, generator=g, device=device, dtype=F64)
    loc = torch.randn(batch, latent, generator=g, device=device, dtype=F64).requires_grad_()
    raw = torch.zeros(batch, latent, device=device, dtype=F64).requires_grad_()

    def log_likelihood(z):  # (K, batch, latent) -> (K, batch)
        return Normal(torch.tanh(z @ W.T), 0.5).log_prob(x).sum(-1)

    def posterior():
        return Independent(Normal(loc, torch.nn.functional.softplus(raw)), 1)

    prior = Independent(Normal(torch.zeros(latent, dtype=F64, device=device), 1.0), 1)
    return log_likelihood, posterior, prior, (loc, raw)


@pytest.mark.parametrize("num_samples, chunk_size", [(10, 3), (12, 4), (7, 1), (5, 5)])
def test_chunked_bound_and_gradient_equal_the_unchunked_estimator(device, num_samples, chunk_size):
    log_likelihood, posterior, prior, params = model(device)
    g = torch.Generator(device=device).manual_seed(1)
    bound = iwae_bound(
        log_likelihood, posterior(), prior, num_samples, chunk_size=chunk_size, generator=g
    )
    grads = torch.autograd.grad(bound.sum(), params)
    # The unchunked estimator on the same draws: the generator drawn chunk by chunk.
    g_ref = torch.Generator(device=device).manual_seed(1)
    sizes = [min(chunk_size, num_samples - s) for s in range(0, num_samples, chunk_size)]
    log_w = torch.cat(
        [
            log_importance_weights(log_likelihood, posterior(), prior, n, generator=g_ref)
            for n in sizes
        ]
    )
    reference = torch.logsumexp(log_w, 0) - math.log(num_samples)
    torch.testing.assert_close(bound, reference)
    for got, want in zip(grads, torch.autograd.grad(reference.sum(), params)):
        torch.testing.assert_close(got, want)
    # Replaying the draws in backward leaves the generator where the draws left it.
    assert torch.equal(g.get_state(), g_ref.get_state())


def test_chunked_gradient_without_a_generator_replays_the_global_stream():
    log_likelihood, posterior, prior, params = model("cpu")
    torch.manual_seed(5)
    bound = iwae_bound(log_likelihood, posterior(), prior, 9, chunk_size=2)
    grads = torch.autograd.grad(bound.sum(), params)
    torch.manual_seed(5)
    log_w = torch.cat(
        [log_importance_weights(log_likelihood, posterior(), prior, n) for n in (2, 2, 2, 2, 1)]
    )
    reference = torch.logsumexp(log_w, 0) - math.log(9)
    torch.testing.assert_close(bound, reference)
    for got, want in zip(grads, torch.autograd.grad(reference.sum(), params)):
        torch.testing.assert_close(got, want)


def test_bad_chunk_size_and_num_samples_are_named():
    log_likelihood, posterior, prior, _ = model("cpu")
    with pytest.raises(ValueError, match="chunk_size"):
        iwae_bound(log_likelihood, posterior(), prior, 4, chunk_size=0)
    with pytest.raises(ValueError, match="num_samples"):
        iwae_bound(log_likelihood, posterior(), prior, 0)


def test_elbo_num_particles_is_a_deprecated_name_of_num_samples():
    log_likelihood, posterior, prior, _ = model("cpu")
    g = torch.Generator().manual_seed(2)
    new = elbo(log_likelihood, posterior(), prior, num_samples=3, generator=g)
    g = torch.Generator().manual_seed(2)
    with pytest.warns(DeprecationWarning, match="num_samples"):
        old = elbo(log_likelihood, posterior(), prior, num_particles=3, generator=g)
    torch.testing.assert_close(new, old)
    with pytest.raises(TypeError, match="num_samples= only"):
        elbo(log_likelihood, posterior(), prior, num_samples=3, num_particles=3)
    with pytest.raises(TypeError, match="unexpected"):
        elbo(log_likelihood, posterior(), prior, num_sample=3)


_SETUP = """
import torch
from torch.distributions import Independent, Normal
from bayestorch.vi import iwae_bound

B, LATENT, HIDDEN = 16, 4, 2048  # one draw's decoder activations: B * HIDDEN * 4 B = 128 KiB
g = torch.Generator().manual_seed(0)
W1 = torch.randn(HIDDEN, LATENT, generator=g) / 2
W2 = torch.randn(8, HIDDEN, generator=g) / 50
x = torch.randn(B, 8, generator=g)
loc = torch.zeros(B, LATENT, requires_grad=True)
prior = Independent(Normal(torch.zeros(LATENT), 1.0), 1)

def log_likelihood(z):
    return Normal(torch.tanh(z @ W1.T) @ W2.T, 1.0).log_prob(x).sum(-1)

def bound(K, chunk, grad):  # (peak_growth measures under no_grad; grad=True re-enables it)
    posterior = Independent(Normal(loc, 1.0), 1)
    with torch.set_grad_enabled(grad):
        value = iwae_bound(log_likelihood, posterior, prior, K, chunk_size=chunk, generator=g)
        if grad:
            value.sum().backward()
    return value.detach()

bound(64, 32, True)  # warm-up: autograd's and checkpoint's first-use allocations
bound(64, 32, False)
"""


@pytest.mark.skipif(not peak.supported(), reason="needs Linux /proc to measure peak memory")
def test_peak_memory_grows_with_the_chunk_not_with_the_number_of_draws():
    calls = {
        f"{mode}-{K}-{chunk}": f"bound({K}, {chunk}, {mode == 'grad'})"
        for mode in ("eval", "grad")
        for K, chunk in ((256, 32), (1024, 32), (1024, 128))
    }
    # (peak growth, bytes returned) per call; the returned bound is a few bytes.
    growth = {name: value[0] for name, value in peak.peak_growth(_SETUP, calls).items()}
    one_draw = 16 * 2048 * 4  # bytes of one draw's hidden activations
    for mode in ("eval", "grad"):
        small, many, wide = (
            growth[f"{mode}-{K}-{c}"] for K, c in ((256, 32), (1024, 32), (1024, 128))
        )
        # 4x the draws at the same chunk: the same peak (before chunking with gradients,
        # every chunk's activations stayed alive until backward: 4x).
        assert many < 1.5 * small + 64 * 1024, (mode, growth)
        # 4x the chunk: a peak about 4x larger, at least 2 chunks' worth more.
        assert wide > small + 2 * 32 * one_draw, (mode, growth)
        # Far below the K = 1024 draws' activations held at once.
        assert many < 0.25 * 1024 * one_draw, (mode, growth)
