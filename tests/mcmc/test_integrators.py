"""Leapfrog: second-order energy error, exact reversibility, one gradient per step."""

import pytest
import torch

from bayestorch.mcmc.hmc import HMC, hmc_init, hmc_step
from bayestorch.mcmc.integrators import IntegratorState, leapfrog_trajectory
from bayestorch.mcmc.metrics import kinetic_energy, momentum_factor
from bayestorch.mcmc.nuts import NUTS
from bayestorch.testing.targets import GaussianTarget
from bayestorch.utils.autograd import log_prob_and_grad


def _target(dtype=torch.float64):
    cov = torch.tensor([[1.0, 0.8, 0.1], [0.8, 2.0, 0.3], [0.1, 0.3, 0.5]], dtype=dtype)
    return GaussianTarget(torch.tensor([1.0, -1.0, 0.5], dtype=dtype), cov)


def _energy_error(target, step_size, length, imm, dense):
    g = torch.Generator().manual_seed(0)
    x = target.sample(64, g)
    p = torch.randn(x.shape, generator=g, dtype=x.dtype)
    lp, grad = log_prob_and_grad(target.log_prob, x)
    start = IntegratorState(x, p, lp, grad)
    steps = round(length / step_size)
    end, finite = leapfrog_trajectory(
        start, target.log_prob, torch.tensor(step_size, dtype=x.dtype), imm, dense, steps
    )
    assert finite.all()
    h0 = -lp + kinetic_energy(p, imm, dense)
    h1 = -end.log_prob + kinetic_energy(end.momentum, imm, dense)
    return (h1 - h0).abs().max()


def test_energy_error_is_second_order():
    target = _target()
    for imm, dense in [(torch.ones(3, dtype=torch.float64), False), (target.covariance, True)]:
        errors = [_energy_error(target, eps, 1.2, imm, dense) for eps in (0.1, 0.05, 0.025)]
        # Halving the step size divides the global energy error by ~4 (order 2): ratios in
        # [3.5, 4.5] for a second-order integrator, ~2 for a first-order one.
        for big, small in zip(errors, errors[1:]):
            assert 3.5 < float(big / small) < 4.5, errors


def test_leapfrog_is_exactly_reversible():
    target = _target()
    g = torch.Generator().manual_seed(1)
    x = target.sample(16, g)
    p = torch.randn(x.shape, generator=g, dtype=x.dtype)
    lp, grad = log_prob_and_grad(target.log_prob, x)
    imm = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    eps = torch.tensor(0.2, dtype=torch.float64)
    forward, _ = leapfrog_trajectory(
        IntegratorState(x, p, lp, grad), target.log_prob, eps, imm, False, 25
    )
    flipped = forward._replace(momentum=-forward.momentum)
    back, _ = leapfrog_trajectory(flipped, target.log_prob, eps, imm, False, 25)
    torch.testing.assert_close(back.position, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(-back.momentum, p, rtol=0, atol=1e-12)


class CountingLogProb:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x):
        self.calls += 1
        return self.fn(x)


def test_hmc_costs_one_gradient_per_leapfrog_step():
    target = _target()
    counted = CountingLogProb(target.log_prob)
    state = hmc_init(target.sample(8), counted)
    assert counted.calls == 1
    imm = torch.ones(3, dtype=torch.float64)
    for _ in range(3):
        state, info = hmc_step(
            state, counted, step_size=torch.tensor(0.1), inverse_mass_matrix=imm, num_steps=7
        )
    assert counted.calls == 1 + 3 * 7
    assert (info.num_steps == 7).all()


def test_nuts_costs_one_gradient_per_leapfrog_step(hmc_compile):
    if hmc_compile:
        # The count is of Python calls of log_prob_fn: a compiled trajectory traces the
        # density once into its graph and never calls it again (and dynamo would guard on,
        # then recompile for, the counter's value).
        pytest.skip("counts eager calls of log_prob_fn, which a compiled trajectory does not make")
    target = _target()
    counted = CountingLogProb(target.log_prob)
    kernel = NUTS(counted, step_size=0.3, compile=hmc_compile)
    g = torch.Generator().manual_seed(0)
    state = kernel.init(target.sample(1, g))
    total = 0
    for _ in range(20):
        before = counted.calls
        state, info = kernel.step(state, g)
        assert counted.calls - before == int(info.num_steps)  # one chain: exact count
        total += int(info.num_steps)
    assert total > 20


def test_dense_momentum_factor():
    cov = _target().covariance
    factor = momentum_factor(cov, dense=True)
    # p = F z has covariance F F^T = M = cov^{-1}
    torch.testing.assert_close(factor @ factor.T, torch.linalg.inv(cov))


def test_hmc_kernel_state_dict_holds_tuning_only(hmc_compile):
    model = torch.nn.Linear(3, 1)
    kernel = HMC(lambda x: model(x).squeeze(-1), step_size=0.1, compile=hmc_compile)
    assert set(kernel.state_dict()) == {"step_size", "inverse_mass_matrix", "momentum_factor"}
