"""Fuzz cases of bayestorch.vi."""

from __future__ import annotations

import torch
import torch.distributions as D
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

V = bt.vi

exempt(
    "protocol", "the base class of VAE and CategoricalVAE (both fuzzed)", "vi.LatentVariableModel"
)


def _problem(f):
    # batch >= 1: an empty batch is test_known_bugs.py::test_elbo_of_an_empty_batch
    batch, d = f.size(1, 3), f.size(1, 3)
    x = f.randn(batch, d)
    loc, scale = f.randn(batch, d), f.rand(batch, d, lo=0.5, hi=1.5)
    posterior = D.Independent(D.Normal(loc, scale), 1)
    zeros = torch.zeros(batch, d, dtype=f.dtype, device=f.device)
    prior = D.Independent(D.Normal(zeros, torch.ones_like(zeros)), 1)

    def log_likelihood(z):
        return -0.5 * ((x - z) ** 2).sum(-1)

    return batch, log_likelihood, posterior, prior


@case("vi.elbo")
def _(f):
    batch, ll, q, p = _problem(f)
    out = V.elbo(
        f.arg("log_likelihood_fn", ll),
        f.arg("posterior", q),
        f.arg("prior", p),
        num_particles=f.arg("num_particles", f.size(1, 3), aliases=("num_samples",)),
        analytic_kl=f.arg("analytic_kl", f.draw(st.booleans())),
        generator=f.generator(),
    )
    return f.expect(out, (batch,))


@case("vi.iwae_bound")
def _(f):
    batch, ll, q, p = _problem(f)
    out = V.iwae_bound(
        f.arg("log_likelihood_fn", ll),
        f.arg("posterior", q),
        f.arg("prior", p),
        f.arg("num_samples", f.size(1, 4)),
        generator=f.generator(),
    )
    return f.expect(out, (batch,))


@case("vi.log_importance_weights")
def _(f):
    batch, ll, q, p = _problem(f)
    k = f.arg("num_samples", f.size(1, 4))
    out = V.log_importance_weights(
        f.arg("log_likelihood_fn", ll),
        f.arg("posterior", q),
        f.arg("prior", p),
        k,
        generator=f.generator(),
    )
    return f.expect(out, (k, batch))


@case("vi.mlp")
def _(f):
    d_in, d_out = f.size(1, 3), f.size(1, 3)
    hidden = tuple(f.size(1, 4) for _ in range(f.size(0, 2)))
    net = V.mlp(
        f.arg("in_features", d_in), f.arg("hidden_sizes", hidden), f.arg("out_features", d_out)
    )
    n = f.size(0, 3)
    return f.expect(net(torch.randn(n, d_in)), (n, d_out))


def _binary(f, batch, d):
    return (f.rand(batch, d) > 0.5).to(f.dtype)


@case("vi.VAE", examples=0.5)
def _(f):
    d, latent = f.size(1, 4), f.size(1, 3)
    likelihood = f.draw(st.sampled_from(["bernoulli", "gaussian"]))
    vae = V.VAE(
        f.arg("data_dim", d),
        f.arg("latent_dim", latent),
        f.arg("hidden_sizes", (f.size(1, 4),)),
        f.arg("likelihood", likelihood),
    ).to(dtype=f.dtype)
    batch = f.size(1, 3)  # an empty batch: test_known_bugs.py::test_elbo_of_an_empty_batch
    x = _binary(f, batch, d) if likelihood == "bernoulli" else f.randn(batch, d)
    x = f.arg("x", x, shape_fuzz=("last",))
    out = vae(x, generator=f.generator())
    iwae = vae.iwae_bound(x, f.arg("num_samples", f.size(1, 3)), generator=f.generator())
    return f.expect(out, (batch,)), iwae, vae.sample(2, generator=f.generator())


@case("vi.CategoricalVAE", examples=0.5)
def _(f):
    d = f.size(1, 4)
    vae = V.CategoricalVAE(
        f.arg("data_dim", d),
        f.arg("num_latents", f.size(1, 3)),
        f.arg("num_categories", f.size(2, 4)),
        f.arg("hidden_sizes", (f.size(1, 4),)),
        estimator=f.arg("estimator", f.draw(st.sampled_from(["relaxed", "straight_through"]))),
        tau=f.arg("tau", 1.0),
    ).to(dtype=f.dtype)
    batch = f.size(0, 3)
    x = f.arg("x", _binary(f, batch, d), shape_fuzz=("last",))
    out = vae(x, generator=f.generator())
    return f.expect(out, (batch,))
