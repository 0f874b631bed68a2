"""Fuzz cases of bayestorch.gan."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st
from torch import nn

import bayestorch as bt

G = bt.gan

exempt(
    "module",
    "the GAN benchmarks' metrics (a namespace; its functions are not the "
    "library's API surface and are tested in tests/gan_experiments)",
    "gan.evaluation",
)
exempt("protocol", "the base class of the latent priors (each subclass fuzzed)", "gan.LatentPrior")


def _prior(f, dim):
    kind = f.draw(st.sampled_from(["gaussian", "mixture", "dp"]))
    if kind == "gaussian":
        return G.GaussianPrior(f.arg("dim", dim), f.arg("learnable", f.draw(st.booleans())))
    if kind == "mixture":
        return G.GaussianMixturePrior(
            f.arg("num_components", f.size(1, 3)),
            f.arg("dim", dim),
            temperature=f.arg("temperature", 0.5),
        )
    return G.DirichletProcessPrior(
        f.arg("alpha", 1.0),
        f.arg("truncation", f.size(1, 4)),
        f.arg("dim", dim),
        temperature=f.arg("temperature", 0.5),
    )


@case("gan.GaussianPrior", "gan.GaussianMixturePrior", "gan.DirichletProcessPrior")
def _(f):
    dim = f.size(1, 3)
    prior = _prior(f, dim)
    shape = f.shape(max_dims=2)
    z = prior.rsample(f.arg("sample_shape", shape), generator=f.generator())
    f.expect(z, (*shape, dim))
    return f.expect(prior.log_prob(f.arg("z", z, shape_fuzz=("last",), propagates=True)), shape)


@case("gan.EnergyPrior", examples=0.3)
def _(f):
    dim = f.size(1, 3)
    energy = nn.Sequential(nn.Linear(dim, 4), nn.Tanh(), nn.Linear(4, 1))
    prior = G.EnergyPrior(
        f.arg("energy", energy),
        f.arg("dim", dim),
        step_size=f.arg("step_size", 0.2),
        num_leapfrog=f.arg("num_leapfrog", f.size(1, 3)),
        num_transitions=f.arg("num_transitions", 1),
        warmup_transitions=f.arg("warmup_transitions", 2),
    )
    n = f.size(1, 4)
    z = prior.rsample(f.arg("sample_shape", (n,)), generator=f.generator())
    return f.expect(z, (n, dim)), prior.log_prob(z)


@case("gan.ResponsibilityNet", "gan.responsibility_loss")
def _(f):
    d, k = f.size(1, 3), f.size(1, 4)
    net = G.ResponsibilityNet(
        f.arg("in_features", d), f.arg("num_components", k), f.arg("hidden", (f.size(1, 4),))
    ).to(f.dtype)
    n = f.size(1, 4)
    logits = net(f.arg("x", f.randn(n, d), shape_fuzz=("last",), propagates=True))
    f.expect(logits, (n, k))
    component = torch.randint(0, k, (n,), generator=f.generator())
    return f.expect(
        G.responsibility_loss(
            f.arg("logits", logits, propagates=True), f.arg("component", component)
        ),
        (),
    )


@case("gan.discriminator_loss", "gan.generator_loss")
def _(f):
    n = f.size(1, 4)
    loss = f.arg("loss", f.draw(st.sampled_from(["ns", "wgan-gp"])))
    real, fake = f.randn(n, 1), f.randn(n, 1)
    # elementwise losses: a NaN/inf logit gives a NaN/inf loss, as in torch's own losses
    d = G.discriminator_loss(
        f.arg("real_logits", real, propagates=True),
        f.arg("fake_logits", fake, propagates=True),
        loss,
    )
    g = G.generator_loss(f.arg("fake_logits", fake, propagates=True), loss)
    return f.expect(d, ()), f.expect(g, ())


@case("gan.gradient_penalty")
def _(f):
    n, d = f.size(1, 4), f.size(1, 3)
    critic = nn.Linear(d, 1).to(f.dtype)
    out = G.gradient_penalty(
        f.arg("discriminator", critic),
        f.arg("real", f.randn(n, d), shape_fuzz=("last",), propagates=True),
        f.arg("fake", f.randn(n, d), shape_fuzz=("last",), propagates=True),
        generator=f.generator(),
    )
    return f.expect(out, ())


def _nets(dim, data_dim):
    return (
        nn.Sequential(nn.Linear(dim, 4), nn.Tanh(), nn.Linear(4, data_dim)),
        nn.Sequential(nn.Linear(data_dim, 4), nn.Tanh(), nn.Linear(4, 1)),
    )


@case("gan.GAN", examples=0.3)
def _(f):
    dim, data_dim = f.size(1, 2), f.size(1, 2)
    gen, disc = _nets(dim, data_dim)
    gan = G.GAN(
        f.arg("generator", gen),
        f.arg("discriminator", disc),
        f.arg("prior", G.GaussianPrior(dim)),
        loss=f.arg("loss", f.draw(st.sampled_from(["ns", "wgan-gp"]))),
        lr=f.arg("lr", 1e-3),
    )
    n = f.size(1, 4)
    stats = gan.training_step(
        f.arg("real", torch.randn(n, data_dim), propagates=True),  # a NaN batch gives a NaN loss
        generator=f.generator(),
    )
    return stats, f.expect(gan.sample(n, generator=f.generator()), (n, data_dim))


@case("gan.BayesianGAN", examples=0.3)
def _(f):
    dim, data_dim = f.size(1, 2), f.size(1, 2)
    gen, disc = _nets(dim, data_dim)
    gan = G.BayesianGAN(
        f.arg("generator", gen),
        f.arg("discriminator", disc),
        f.arg("prior", G.GaussianPrior(dim)),
        num_generators=f.arg("num_generators", f.size(1, 2)),
        num_discriminators=f.arg("num_discriminators", f.size(1, 2)),
        num_data=f.arg("num_data", 16),
        lr=f.arg("lr", 1e-3),
    )
    n = f.size(1, 4)
    stats = gan.training_step(
        f.arg("real", torch.randn(n, data_dim), propagates=True),  # a NaN batch gives a NaN loss
        generator=f.generator(),
    )
    return stats, f.expect(gan.sample(n, generator=f.generator()), (n, data_dim))
