"""Exceptions raised by the log density inside a run: rejected proposals, counted, warned.

Module under test: ``bayestorch.utils.autograd`` (the guard, ``DensityErrorLog``) as used by
``bayestorch.mcmc.sample`` and every kernel that calls a user density (issue 21, section 1).
"""

import contextlib
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from bayestorch.mcmc import NUTS, RandomWalkMetropolis, SliceSampler, sample
from bayestorch.testing.gof import assert_ks
from bayestorch.testing.mcse import assert_mcmc_mean
from bayestorch.utils.autograd import (
    DensityErrorLog,
    DensityErrorWarning,
    evaluate_log_prob,
    log_prob_and_grad,
)

F64 = torch.float64
SIGMA = 1.5


def scale_density(x):
    """The issue's reproducer: ``Normal(0, e^x)`` raises once ``e^x`` underflows to 0."""
    return (
        Normal(0.0, x[:, 0].exp()).log_prob(torch.tensor(1.0, dtype=x.dtype)) - 0.5 * x[:, 0] ** 2
    )


def gp_like(x):
    """A Cholesky-based density that raises ``LinAlgError`` for ``|x| >= 3``.

    ``K = [[1, x/3], [x/3, 1]]`` is positive definite only for ``|x| < 3``; the density is
    ``N(x; 0, SIGMA^2) * sqrt(det K)``, so the law sampled is ``N(0, SIGMA^2) sqrt(1 - x^2/9)``
    on ``(-3, 3)``: about 4.5% of the Gaussian's mass lies where the density raises, so
    every sampler meets the exception often.
    """
    r = x[:, 0] / 3.0
    one = torch.ones_like(r)
    K = torch.stack([torch.stack([one, r], -1), torch.stack([r, one], -1)], -2)
    L = torch.linalg.cholesky(K)  # raises for |x| >= 3
    return Normal(0.0, SIGMA).log_prob(x[:, 0]) + L.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def numerical_cdf(log_density, lo, hi, n=20001):
    """CDF of ``exp(log_density)`` on ``[lo, hi]`` by the trapezoidal rule (numpy, float64)."""
    grid = np.linspace(lo, hi, n)
    logp = np.array([log_density(v) for v in grid])
    p = np.exp(logp - logp.max())
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    cum /= cum[-1]
    return lambda v: np.interp(v, grid, cum)


def scale_log_density(v):
    return -v - 0.5 * np.exp(-2 * v) - 0.5 * v**2


def gp_log_density(v):
    return -(v**2) / (2 * SIGMA**2) + 0.5 * np.log(max(1 - v**2 / 9, 1e-300))


@pytest.mark.statistical
def test_issue_reproducer_nuts_runs_on_and_targets_the_right_law(hmc_compile):
    # Before the fix: torch.distributions' ValueError ended the run in the first steps.
    g = torch.Generator().manual_seed(1)
    kernel = NUTS(scale_density, step_size=1000.0, compile=hmc_compile)
    with _density_errors_expected(hmc_compile, match="raised an exception at"):
        result = sample(
            None,
            torch.zeros(128, 1, dtype=F64),
            kernel,
            num_warmup=150,
            num_samples=40,
            generator=g,
            progress=False,
        )
    if not hmc_compile:
        assert int(result.num_density_errors.sum()) > 0
    # Draws 20 transitions apart in each of 128 chains: nearly independent.
    assert_ks(result.samples[:, 19::20, 0], numerical_cdf(scale_log_density, -8.0, 5.0))


@contextlib.contextmanager
def _density_errors_expected(compiled: bool, match: str | None = None):
    """The eager path warns of density exceptions (``DensityErrorWarning``). A compiled
    trajectory is one graph: torch.distributions' argument checks are off there, and a
    failing op (Cholesky) gives NaN rather than raising, so the same points are rejected as
    divergent without an exception to count (the eager calls of warm-up may still warn)."""
    if not compiled:
        with pytest.warns(DensityErrorWarning, match=match):
            yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DensityErrorWarning)
        # torch 2.13's inductor cannot lower torch.linalg.cholesky inside a while_loop: with
        # BAYESTORCH_COMPILE_BACKEND=inductor the kernel says so and goes on eagerly.
        warnings.filterwarnings("ignore", "torch.compile failed", RuntimeWarning)
        yield


def _with_hmc_compile(cases):
    """``(kernel, options)`` cases -> ``(kernel, options, hmc_compile)``: the HMC family's
    eager and compiled, the other kernels (no compiled path) once."""
    params = []
    for kernel, options in cases:
        if kernel in ("nuts", "hmc", "chees"):
            for compile in (False, True):
                variant = "compiled" if compile else "eager"
                compiled_options = {**options, "compile": compile}
                marks = [pytest.mark.compiled] if compile else []
                params.append(
                    pytest.param(
                        kernel, compiled_options, compile, id=f"{kernel}-{variant}", marks=marks
                    )
                )
        else:
            params.append(pytest.param(kernel, options, False, id=kernel))
    return params


@pytest.mark.statistical
@pytest.mark.parametrize(
    "kernel, options, hmc_compile",
    _with_hmc_compile(
        [
            ("nuts", {}),
            ("hmc", {"num_steps": 5}),
            ("chees", {"max_num_steps": 8}),
            ("rwm", {}),
            ("slice", {"max_steps_out": 2}),
        ]
    ),
    indirect=["hmc_compile"],
)
def test_a_density_raising_far_out_is_zero_there_for_every_kernel(kernel, options, hmc_compile):
    # The draws follow the density restricted to where it does not raise: E[x^2] = 1.389
    # (a sampler that accepted such points would follow N(0, 1.5^2), E[x^2] = 2.25).
    g = torch.Generator().manual_seed(2)
    x0 = torch.zeros(16, 1, dtype=F64)
    with _density_errors_expected(hmc_compile):
        result = sample(
            gp_like,
            x0,
            kernel,
            num_warmup=60,
            num_samples=100,
            generator=g,
            progress=False,
            **options,
        )
    assert result.stats["num_density_errors"].shape == (16, 100)
    if not hmc_compile:
        assert int(result.num_density_errors.sum()) > 0
    if kernel in ("hmc", "chees") and not hmc_compile:
        # An error ends the trajectory as divergent (NUTS also evaluates chains whose
        # trajectory already ended, in lockstep: those count too).
        errors = result.stats["num_density_errors"] > 0
        assert bool(errors.any()) and bool(result.stats["is_divergent"][errors].all())
    assert bool((result.samples.abs() < 3).all())
    grid = np.linspace(-3.0, 3.0, 200001)
    density = np.exp([gp_log_density(v) for v in grid])
    second_moment = float((grid**2 * density).sum() / density.sum())
    assert_mcmc_mean(torch.cat([result.samples, result.samples**2], -1), [0.0, second_moment])


@pytest.mark.parametrize(
    "make, hmc_compile",
    [
        pytest.param(NUTS, False, id="NUTS-eager"),
        pytest.param(NUTS, True, id="NUTS-compiled", marks=pytest.mark.compiled),
        pytest.param(RandomWalkMetropolis, False, id="RandomWalkMetropolis"),
        pytest.param(SliceSampler, False, id="SliceSampler"),
    ],
    indirect=["hmc_compile"],
)
def test_an_exception_at_the_initial_point_stays_the_density_own_error(make, hmc_compile):
    x0 = torch.tensor([[0.0], [5.0]], dtype=F64)  # chain 1 starts where gp_like raises
    kernel = make(gp_like, compile=hmc_compile) if make is NUTS else make(gp_like)
    with pytest.raises(torch.linalg.LinAlgError) as info:
        sample(gp_like, x0, kernel, num_warmup=2, num_samples=2, progress=False)
    assert "initial position of chain(s) [1]" in "".join(getattr(info.value, "__notes__", []))


def test_a_bug_in_the_density_is_not_swallowed(hmc_compile):
    def buggy(x):
        if bool((x.abs() > 1).any()):
            raise TypeError("a bug, not a bad point")
        return -0.5 * (x**2).sum(-1)

    with pytest.raises(TypeError, match="a bug"):
        sample(
            buggy,
            torch.zeros(4, 1),
            "nuts",
            num_warmup=20,
            num_samples=5,
            progress=False,
            compile=hmc_compile,
        )


def test_an_error_no_single_chain_reproduces_propagates():
    def needs_two(x):  # every position is fine on its own
        if x.shape[0] > 1 and bool((x.abs() > 1).any()):
            raise ValueError("a batch with a point beyond 1")
        return -0.5 * (x**2).sum(-1)

    with DensityErrorLog(3), pytest.raises(ValueError, match="beyond 1"):
        log_prob_and_grad(needs_two, torch.tensor([[0.0], [2.0], [0.5]]))


def test_guard_marks_exactly_the_failing_chains():
    x = torch.tensor([[0.0], [4.0], [1.0], [-3.5]], dtype=F64)
    log = DensityErrorLog(2)  # a batch of 2 x 2 chains: rows r belong to chain r % 2
    with log:
        lp, grad = log_prob_and_grad(gp_like, x)
        lp_only = evaluate_log_prob(gp_like, x)
    ok = torch.tensor([True, False, True, False])
    expected, expected_grad = log_prob_and_grad(gp_like, x[ok])
    torch.testing.assert_close(lp[ok], expected)
    torch.testing.assert_close(grad[ok], expected_grad)
    torch.testing.assert_close(lp_only, lp)
    assert bool((lp[~ok] == -torch.inf).all()) and bool(grad[~ok].isnan().all())
    assert log.total == 4 and log.take().tolist() == [0, 4]
    assert log.take().tolist() == [0, 0]
    assert isinstance(log.first_error, torch.linalg.LinAlgError)


def test_outside_a_run_the_exception_propagates_unchanged():
    with pytest.raises(torch.linalg.LinAlgError):
        log_prob_and_grad(gp_like, torch.tensor([[4.0]]))
    with pytest.raises(torch.linalg.LinAlgError):
        evaluate_log_prob(gp_like, torch.tensor([[4.0]]))


def test_a_wrong_output_shape_is_never_taken_for_a_density_error():
    with DensityErrorLog(2), pytest.raises(ValueError, match="log densities of shape"):
        log_prob_and_grad(lambda x: x.sum(), torch.zeros(2, 1))


def test_independence_proposal_density_is_not_guarded():
    from bayestorch.mcmc import IndependentMetropolis

    def proposal_log_prob(x):
        raise ValueError("proposal broken")

    kernel = IndependentMetropolis(
        gp_like, (lambda n, g: torch.zeros(n, 1, dtype=F64), proposal_log_prob)
    )
    with pytest.raises(ValueError, match="proposal broken"):
        sample(
            None, torch.zeros(2, 1, dtype=F64), kernel, num_warmup=0, num_samples=2, progress=False
        )


def test_the_counter_survives_a_resume():
    g = torch.Generator().manual_seed(3)
    snaps = []
    kwargs = dict(num_warmup=30, num_samples=30, progress=False)
    with pytest.warns(DensityErrorWarning):
        full = sample(
            gp_like,
            torch.zeros(8, 1, dtype=F64),
            "rwm",
            generator=g,
            checkpoint_fn=snaps.append,
            checkpoint_every=20,
            **kwargs,
        )
    g = torch.Generator().manual_seed(3)
    with pytest.warns(DensityErrorWarning):
        resumed = sample(
            gp_like, torch.zeros(8, 1, dtype=F64), "rwm", generator=g, resume=snaps[1], **kwargs
        )
    assert torch.equal(full.num_density_errors, resumed.num_density_errors)
    assert int(full.num_density_errors.sum()) > 0
