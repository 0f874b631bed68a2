"""Bugs the fuzzing found and did not fix (in modules other engineers own, or upstream).

Each is a three-line reproducer marked ``xfail(strict=True)``: it fails today, and the day it
is fixed the strict xfail turns into a failure that asks for the mark (and the matching
restriction in the fuzz case) to be removed. The fuzz cases avoid these inputs and say so.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D

import bayestorch as bt


def _contract(fn, *names):
    """The fuzz contract for one call: returns, or raises ValueError/TypeError naming one of
    ``names``."""
    try:
        fn()
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in names), f"does not name {names}: {err}"


@pytest.mark.xfail(
    strict=True,
    reason="bug: torch's Independent.log_prob cannot reshape an "
    "empty batch, so elbo/iwae_bound/VAE of 0 data points raise RuntimeError",
)
def test_elbo_of_an_empty_batch():
    q = D.Independent(D.Normal(torch.zeros(0, 2), 1.0), 1)
    p = D.Independent(D.Normal(torch.zeros(0, 2), 1.0), 1)
    _contract(lambda: bt.vi.iwae_bound(lambda z: z.sum(-1), q, p, 2), "posterior")


@pytest.mark.xfail(
    strict=True,
    reason="bug: IndependentMetropolis with 0 chains raises torch's "
    "RuntimeError (Independent.log_prob of no rows)",
)
def test_independent_metropolis_with_no_chains():
    q = D.Independent(D.Normal(torch.zeros(2), 1.0), 1)
    kernel = bt.mcmc.IndependentMetropolis(lambda x: -(x**2).sum(-1), q)
    _contract(lambda: kernel.step(kernel.init(torch.zeros(0, 2))), "position")


@pytest.mark.xfail(
    strict=True,
    reason="bug: sample() with 0 chains blames chain_groups, an argument the user did not pass",
)
def test_sample_with_no_chains_names_the_position():
    _contract(
        lambda: bt.mcmc.sample(
            lambda x: -(x**2).sum(-1),
            torch.zeros(0, 2),
            "rwm",
            num_warmup=1,
            num_samples=1,
            progress=False,
        ),
        "initial_position",
    )


@pytest.mark.xfail(
    strict=True,
    reason="bug: ChEESHMC(trajectory_length=inf) is accepted, then its step raises "
    "OverflowError (NaN: an unnamed ValueError)",
)
def test_chees_infinite_trajectory_length():
    kernel = bt.mcmc.ChEESHMC(lambda x: -(x**2).sum(-1), trajectory_length=float("inf"))
    _contract(lambda: kernel.step(kernel.init(torch.zeros(2, 2))), "trajectory_length")


@pytest.mark.xfail(
    strict=True,
    reason="bug: gaussian_log_evidence checks no shapes (a matrix "
    "of the wrong width raises an expand RuntimeError)",
)
def test_gaussian_log_evidence_shapes():
    m = torch.eye(3, dtype=torch.float64)
    _contract(
        lambda: bt.gp.gaussian_log_evidence(m[:, :2], torch.ones(3, 1, dtype=torch.float64), m),
        "matrix",
    )


@pytest.mark.xfail(
    strict=True,
    reason="bug: VAE(data_dim=0) is accepted; x of width 3 then "
    "fails with 'x must have shape (..., 0)' (the bad value is data_dim)",
)
def test_vae_zero_data_dim():
    _contract(lambda: bt.vi.VAE(0, 2, (4,)), "data_dim")


@pytest.mark.xfail(
    strict=True,
    reason="bug: mlp(in_features=-1) raises torch's RuntimeError "
    "'Trying to create tensor with negative dimension'",
)
def test_mlp_negative_width():
    _contract(lambda: bt.vi.mlp(-1, (3,), 2), "in_features")


def test_gaussian_guide_kind_is_named():  # was a known bug, fixed
    _contract(lambda: bt.infer.GaussianGuide(torch.zeros(2), kind="x"), "kind")
