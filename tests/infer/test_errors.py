"""Bad models and bad inputs get an error that names the site."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D

import bayestorch as bt
from bayestorch.infer import ModelDensity, ModelError


def test_discrete_latent_site_says_marginalise_or_gibbs():
    def model():
        bt.sample("k", D.Poisson(3.0))

    with pytest.raises(ModelError, match=r"latent site 'k' is discrete.*marginalise.*Gibbs"):
        ModelDensity(model)


def test_duplicate_site_name():
    def model():
        bt.sample("a", D.Normal(0.0, 1.0))
        bt.sample("a", D.Normal(0.0, 1.0))

    with pytest.raises(ModelError, match="duplicate site name 'a'"):
        ModelDensity(model)


def test_observation_of_the_wrong_shape():
    def model(y):
        mu = bt.sample("mu", D.Normal(0.0, 1.0))
        with bt.plate("data", 5):
            bt.sample("y", D.Normal(mu, 1.0), obs=y)

    with pytest.raises(ModelError, match=r"observed site 'y': obs has shape \(5, 1\)"):
        ModelDensity(model, torch.zeros(5, 1))


def test_observation_that_would_broadcast_silently_is_refused():
    def model(y):
        mu = bt.sample("mu", D.Normal(torch.zeros(3), 1.0))
        bt.sample("y", D.Normal(mu, 1.0), obs=y)

    with pytest.raises(ModelError, match="observed site 'y'"):
        ModelDensity(model, torch.zeros(4, 1))


def test_observation_outside_the_support():
    def model(k):
        p = bt.sample("p", D.Beta(1.0, 1.0))
        bt.sample("k", D.Binomial(5, p), obs=k)

    with pytest.raises(ModelError, match=r"observed site 'k': obs lies outside the support"):
        ModelDensity(model, torch.tensor(7.0))


def test_log_density_not_finite_at_every_initial_point_names_the_site():
    def model():
        mu = bt.sample("mu", D.Normal(0.0, 1.0))
        bt.factor("broken", torch.where(mu > 100, 0.0, -torch.inf))

    density = ModelDensity(model)
    with pytest.raises(ModelError, match=r"site\(s\) \['broken'\]"):
        density.init(2, torch.Generator().manual_seed(0))


def test_model_whose_sites_change_between_calls():
    calls = []

    def model():
        calls.append(1)
        bt.sample("a", D.Normal(0.0, 1.0))
        if len(calls) > 1:
            bt.sample("b", D.Normal(0.0, 1.0))

    density = ModelDensity(model)
    with pytest.raises(ModelError, match="sites changed between calls"):
        density.log_prob(torch.zeros(1, 1))


def test_support_with_no_bijection():
    class Odd(D.Distribution):
        arg_constraints = {}
        support = D.constraints.positive_semidefinite

        def sample(self, sample_shape=()):
            return torch.eye(2)

        def log_prob(self, value):
            return torch.zeros(())

    def model():
        bt.sample("S", Odd(validate_args=False))

    with pytest.raises(ModelError, match=r"latent site 'S': its support .* has no bijection"):
        ModelDensity(model)


def test_plate_size_mismatch_names_site_and_plate():
    def model():
        with bt.plate("groups", 3):
            bt.sample("x", D.Normal(torch.zeros(4), 1.0))

    with pytest.raises(ValueError, match=r"sample site 'x'.*plate 'groups' has size 3"):
        ModelDensity(model)


def test_latent_site_in_a_subsampled_plate_is_refused():
    def model():
        with bt.plate("data", 10, subsample_size=2):
            bt.sample("local", D.Normal(0.0, 1.0))

    with pytest.raises(ModelError, match="latent site 'local' is inside the subsampled plate"):
        ModelDensity(model)


def test_site_fn_must_be_a_distribution():
    with pytest.raises(TypeError, match="sample site 'x': fn must be"):
        bt.sample("x", 3.0)


def test_non_vectorisable_model_says_why():
    def model():
        mu = bt.sample("mu", D.Normal(0.0, 1.0))
        if mu.item() > 0:  # branches on a value: cannot run for many chains at once
            bt.factor("f", torch.zeros(()))
        else:
            bt.factor("f", torch.ones(()))

    density = ModelDensity(model)
    with pytest.raises(ModelError, match="cannot run for many chains at once"):
        density.log_prob(torch.zeros(3, 1))


def test_z_of_the_wrong_shape():
    def model():
        bt.sample("mu", D.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"z must have shape \(chains, dim\) = \(chains, 1\)"):
        ModelDensity(model).log_prob(torch.zeros(3))


def test_unknown_kernel_and_init_names():
    def model():
        bt.sample("mu", D.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="unknown kernel 'nut'"):
        bt.infer.mcmc(model, kernel="nut", progress=False)
    with pytest.raises(ValueError, match="unknown init 'zeros'"):
        bt.infer.mcmc(model, init="zeros", progress=False)
