"""Particle filter: evidence and filtered means against the Kalman filter on a linear model."""

from __future__ import annotations

import math

import pytest
import torch

from bayestorch.mc.resampling import RESAMPLING_SCHEMES
from bayestorch.ssm import ParticleFilter, kalman_filter, particle_filter
from bayestorch.testing import assert_z

# x_0 ~ N(0, P0); x_t = a x_{t-1} + b + w, w ~ N(0, q); y_t = x_t + v, v ~ N(0, r)
A, B, Q, R, P0, M0 = 0.9, 0.2, 0.5, 1.0, 1.0, 0.3
STEPS = 20


def linear_model_fns():
    def init(shape, generator):
        return M0 + math.sqrt(P0) * torch.randn(*shape, 1, generator=generator, dtype=torch.float64)

    def transition(x, t, generator):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return A * x + B + math.sqrt(Q) * noise

    def log_prob(y_t, x, t):
        return -0.5 * ((y_t[:, None, :] - x) ** 2 / R + math.log(2 * math.pi * R)).sum(-1)

    return init, transition, log_prob


def observations():
    g = torch.Generator().manual_seed(11)
    x = M0 + math.sqrt(P0) * torch.randn(1, generator=g, dtype=torch.float64)
    ys = []
    for _ in range(STEPS):
        x = A * x + B + math.sqrt(Q) * torch.randn(1, generator=g, dtype=torch.float64)
        ys.append(x + math.sqrt(R) * torch.randn(1, generator=g, dtype=torch.float64))
    return torch.stack(ys).view(1, STEPS, 1)


def kalman_reference(y):
    eye = torch.eye(1, dtype=torch.float64)
    return kalman_filter(
        y,
        A * eye,
        eye,
        Q * eye,
        R * eye,
        torch.full((1,), M0, dtype=torch.float64),
        P0 * eye,
        torch.full((1,), B, dtype=torch.float64),
    )


@pytest.mark.statistical
@pytest.mark.parametrize("resampling", sorted(RESAMPLING_SCHEMES))
def test_evidence_is_unbiased_and_means_match_kalman(resampling, generator):
    """exp(log-evidence) is unbiased for the Kalman likelihood; means agree within MC error."""
    y = observations()
    ref = kalman_reference(y)
    runs, num_particles = 200, 500
    out = particle_filter(
        y.expand(runs, -1, -1),
        *linear_model_fns(),
        num_particles,
        resampling=resampling,
        ess_threshold=0.5,
        generator=generator,
    )
    ratio = torch.exp(out.log_evidence - ref.log_likelihood)
    assert_z(ratio.mean(), 1.0, ratio.std() / runs**0.5)
    means = out.means[..., 0]
    assert_z(means.mean(0), ref.means[0, :, 0], means.std(0) / runs**0.5)
    assert out.resampled.any() and not out.resampled.all()  # adaptive: some steps only


@pytest.mark.statistical
def test_evidence_error_shrinks_as_particles_grow(generator):
    """F-test: the log-evidence spread at N = 500 is below that at N = 20 (p < 1e-3)."""
    from scipy import stats

    y = observations()
    ref = kalman_reference(y).log_likelihood
    runs = 100
    errors = {}
    for num in (20, 500):
        out = particle_filter(y.expand(runs, -1, -1), *linear_model_fns(), num, generator=generator)
        errors[num] = out.log_evidence - ref
    ratio = float(errors[20].var() / errors[500].var())
    pvalue = stats.f.sf(ratio, runs - 1, runs - 1)
    assert pvalue < 1e-3, f"variance ratio {ratio:.3g}, p-value {pvalue:.3g}"
    # and at N = 500 the estimate is within its Monte Carlo error of the exact value
    ratio_z = torch.exp(errors[500])
    assert_z(ratio_z.mean(), 1.0, ratio_z.std() / runs**0.5)


def test_shapes_reproducibility_and_options(device):
    init, transition, log_prob = linear_model_fns()

    def init_on(shape, generator):
        return M0 + torch.randn(*shape, 1, generator=generator, dtype=torch.float64, device=device)

    y = observations().to(device).expand(3, -1, -1).clone()
    y[1, 4] = float("nan")
    pf = ParticleFilter(init_on, transition, log_prob, 64, resampling="residual")
    out1 = pf(y, generator=torch.Generator(device=device).manual_seed(0))
    out2 = pf.filter(y, generator=torch.Generator(device=device).manual_seed(0))
    assert out1.means.shape == (3, STEPS, 1) and out1.covs.shape == (3, STEPS, 1, 1)
    assert out1.log_evidence.shape == (3,) and out1.particles.shape == (3, 64, 1)
    assert out1.means.device.type == device.type
    for a, b in zip(out1, out2, strict=True):
        assert torch.equal(a, b)
    never = particle_filter(y, init_on, transition, log_prob, 64, ess_threshold=0.0)
    always = particle_filter(y, init_on, transition, log_prob, 64, ess_threshold=1.0)
    assert not never.resampled.any() and always.resampled.all()
    assert torch.allclose(always.log_weights, torch.tensor(-math.log(64), dtype=torch.float64))


def test_bad_input():
    init, transition, log_prob = linear_model_fns()
    y = observations()
    with pytest.raises(ValueError, match="resampling must be one of"):
        ParticleFilter(init, transition, log_prob, 10, resampling="roulette")
    with pytest.raises(ValueError, match=r"y must have shape \(batch, T, obs_dim\)"):
        particle_filter(y[0], init, transition, log_prob, 10)
    with pytest.raises(ValueError, match="observation_log_prob_fn must return shape"):
        particle_filter(y, init, transition, lambda y_t, x, t: x[..., 0, 0], 10)
    with pytest.raises(ValueError, match="init_sample_fn must return particles"):
        particle_filter(y, lambda shape, g: torch.zeros(shape), transition, log_prob, 10)


@pytest.mark.statistical
def test_chunked_filter_is_the_same_law(generator):
    """Issue 21 (bounded memory): sequences filtered in chunks (the generator runs on from chunk
    to chunk) give the same law: unbiased evidence and Kalman means, as unchunked."""
    y = observations()
    ref = kalman_reference(y)
    runs = 200
    out = particle_filter(
        y.expand(runs, -1, -1), *linear_model_fns(), 300, generator=generator, chunk_size=7
    )
    assert out.log_evidence.shape == (runs,) and out.particles.shape == (runs, 300, 1)
    ratio = torch.exp(out.log_evidence - ref.log_likelihood)
    assert_z(ratio.mean(), 1.0, ratio.std() / runs**0.5)
    means = out.means[..., 0]
    assert_z(means.mean(0), ref.means[0, :, 0], means.std(0) / runs**0.5)


def test_one_chunk_holding_every_sequence_is_the_unchunked_filter():
    y = observations().expand(5, -1, -1)
    runs = [
        particle_filter(
            y, *linear_model_fns(), 50, generator=torch.Generator().manual_seed(1), chunk_size=c
        )
        for c in (None, 5, 64)
    ]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        particle_filter(y, *linear_model_fns(), 50, chunk_size=0)
