"""NNGP and NTK kernels: closed forms against quadrature, hand-computed arc-cosine values,
finite gradients on the diagonal, and finite random networks converging to the kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayestorch.gp import (
    NNGPKernel,
    NNGPNetwork,
    NTKKernel,
    empirical_ntk,
    erf_expectations,
    gaussian_expectation,
    nngp_recursion,
    relu_expectations,
)
from bayestorch.testing import assert_z


def _points(generator, n=5, d=3):
    return torch.randn(n, d, generator=generator, dtype=torch.float64)


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("name, fn", [("relu", torch.relu), ("erf", torch.erf)])
def test_expectations_equal_quadrature(name, fn):
    k11 = torch.tensor([0.3, 1.0, 2.5, 4.0, 1.0], dtype=torch.float64)
    k22 = torch.tensor([0.7, 1.0, 0.4, 4.0, 2.0], dtype=torch.float64)
    k12 = torch.tensor([0.1, -0.9, 0.9, 4.0, 0.0], dtype=torch.float64)  # incl. rho = 1
    closed = relu_expectations if name == "relu" else erf_expectations
    value, derivative = closed(k11, k22, k12)
    torch.testing.assert_close(gaussian_expectation(fn, k11, k22, k12), value, atol=1e-8, rtol=0)
    step = (
        (lambda z: (z > 0).double())
        if name == "relu"
        else (lambda z: 2.0 / math.sqrt(math.pi) * torch.exp(-z.square()))
    )
    torch.testing.assert_close(
        gaussian_expectation(step, k11, k22, k12), derivative, atol=1e-8, rtol=0
    )


@pytest.mark.parametrize("name, fn", [("relu", torch.relu), ("erf", torch.erf)])
@pytest.mark.parametrize("kernel_class", [NNGPKernel, NTKKernel])
@pytest.mark.parametrize("depth", [1, 3])
def test_closed_form_kernels_equal_quadrature_to_1e6(name, fn, kernel_class, depth, generator):
    x1, x2 = _points(generator), _points(generator, n=4)
    closed = kernel_class(depth, name, weight_var=1.7, bias_var=0.2).double()
    quadrature = kernel_class(depth, fn, weight_var=1.7, bias_var=0.2).double()
    with torch.no_grad():
        for args in ((x1, x2), (x1,)):
            torch.testing.assert_close(quadrature(*args), closed(*args), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            quadrature(x1, diag=True), closed(x1, diag=True), atol=1e-6, rtol=0
        )


def test_arc_cosine_depth_one_by_hand():
    """ReLU, one hidden layer: K^1 = sb + sw/(2 pi) sqrt(k11 k22) (sin t + (pi - t) cos t)."""
    sw, sb = 2.0, 0.3
    x = torch.tensor([[1.0, 2.0], [-0.5, 1.5]], dtype=torch.float64)
    # input layer by hand: K0 = sb + sw * x.x' / 2
    k11 = sb + sw * (1 + 4) / 2  # 5.3
    k22 = sb + sw * (0.25 + 2.25) / 2  # 2.8
    k12 = sb + sw * (-0.5 + 3.0) / 2  # 2.8
    t = math.acos(k12 / math.sqrt(k11 * k22))
    expected_12 = sb + sw / (2 * math.pi) * math.sqrt(k11 * k22) * (
        math.sin(t) + (math.pi - t) * math.cos(t)
    )
    expected_11 = sb + sw * k11 / 2  # t = 0: E[relu(u)^2] = k11 / 2
    kernel = NNGPKernel(
        1,
        "relu",
        weight_var=torch.tensor(sw, dtype=torch.float64),
        bias_var=torch.tensor(sb, dtype=torch.float64),
    )
    with torch.no_grad():
        k = kernel(x)
    assert k[0, 1].item() == pytest.approx(expected_12, rel=1e-12)
    assert k[1, 0].item() == pytest.approx(expected_12, rel=1e-12)
    assert k[0, 0].item() == pytest.approx(expected_11, rel=1e-12)
    assert k[1, 1].item() == pytest.approx(sb + sw * k22 / 2, rel=1e-12)
    # NTK, one hidden layer: Theta^1 = K^1 + sw (pi - t) / (2 pi) K^0
    ntk = NTKKernel(
        1,
        "relu",
        weight_var=torch.tensor(sw, dtype=torch.float64),
        bias_var=torch.tensor(sb, dtype=torch.float64),
    )
    with torch.no_grad():
        theta = ntk(x)
    assert theta[0, 1].item() == pytest.approx(
        expected_12 + sw * (math.pi - t) / (2 * math.pi) * k12, rel=1e-12
    )
    assert theta[0, 0].item() == pytest.approx(expected_11 + sw * 0.5 * k11, rel=1e-12)


def test_depth_zero_is_the_input_layer(generator):
    x1, x2 = _points(generator), _points(generator, n=2)
    k = NNGPKernel(
        0,
        weight_var=torch.tensor(1.5, dtype=torch.float64),
        bias_var=torch.tensor(0.25, dtype=torch.float64),
    )
    torch.testing.assert_close(k(x1, x2), 0.25 + 1.5 * x1 @ x2.T / 3)


# -------------------------------------------------------------------- gradients


@pytest.mark.parametrize("activation", ["relu", "erf", torch.tanh])
@pytest.mark.parametrize("kernel_class", [NNGPKernel, NTKKernel])
def test_hyperparameter_gradients_finite_on_the_diagonal(activation, kernel_class, generator):
    x = _points(generator, n=3)
    x_dup = torch.cat([x, x[:1]])  # a duplicated point: theta = 0 off the diagonal too
    kernel = kernel_class(3, activation, weight_var=1.4, bias_var=0.1, num_points=16).double()
    for args in ((x_dup,), (x_dup, x_dup.clone()), (x_dup,)):
        k = kernel(*args)
        grads = torch.autograd.grad(k.sum(), list(kernel.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)
    grads = torch.autograd.grad(kernel(x_dup, diag=True).sum(), list(kernel.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_nngp_gradcheck_with_diagonal(activation, generator):
    x = _points(generator, n=3)
    x_dup = torch.cat([x, x[:1]])
    kernel = NTKKernel(2, activation, weight_var=1.4, bias_var=0.1).double()
    values = (
        kernel.raw_weight_var.detach().clone().requires_grad_(True),
        kernel.raw_bias_var.detach().clone().requires_grad_(True),
    )

    def fn(raw_w, raw_b):
        params = {"raw_weight_var": raw_w, "raw_bias_var": raw_b}
        return (
            torch.func.functional_call(kernel, params, (x_dup,)),
            torch.func.functional_call(kernel, params, (x_dup, x_dup.clone())),
        )

    assert torch.autograd.gradcheck(fn, values)


def test_quadrature_gradients_match_closed_form(generator):
    x = _points(generator, n=4)
    grads = []
    for activation in ("relu", torch.relu):
        kernel = NNGPKernel(2, activation, weight_var=1.4, bias_var=0.1).double()
        grads.append(torch.autograd.grad(kernel(x).sum(), list(kernel.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="depth must be a non-negative int"):
        NNGPKernel(-1)
    with pytest.raises(ValueError, match="activation must be"):
        NNGPKernel(2, activation="gelu")
    with pytest.raises(ValueError, match="weight_var must be positive"):
        NNGPKernel(2, weight_var=-1.0)
    with pytest.raises(ValueError, match="bias_var must be positive"):
        NTKKernel(2, bias_var=-0.5)
    with pytest.raises(ValueError, match="bias_var must be positive"):
        NTKKernel(2, bias_var=float("nan"))
    with pytest.raises(ValueError, match="same last dim"):
        NNGPKernel(2)(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="holds NaN"):
        NNGPKernel(2)(torch.full((3, 4), float("nan")))
    with pytest.raises(ValueError, match="parameterization must be"):
        NNGPNetwork(3, 8, 2, parameterization="mean-field")


# ----------------------------------------------------------- finite networks


def _net_points():
    g = torch.Generator().manual_seed(7)
    return torch.randn(4, 3, generator=g, dtype=torch.float64)


def _upper(matrix):
    i, j = torch.triu_indices(matrix.shape[-1], matrix.shape[-1])
    return matrix[..., i, j]


@pytest.mark.statistical
@pytest.mark.parametrize("activation, depth", [("relu", 2), ("erf", 3)])
def test_output_covariance_of_random_networks_matches_nngp(activation, depth):
    """z-test of the covariance of f(x_i) f(x_j) over 2000 independent random networks.

    At width 64 the finite-width bias, O(1/width), is below 0.5% of K (measured with 20000
    networks), a fifth of the test's standard error (3%).
    Rejects e.g. a kernel whose ReLU map drops the sin(theta) term, or K^0 without 1/d_in."""
    x = _net_points()
    g = torch.Generator().manual_seed(11)
    outputs = []
    with torch.no_grad():
        for _ in range(4):  # 4 ensembles of 500 networks, evaluated in batch
            net = NNGPNetwork(
                3,
                64,
                depth,
                1,
                activation,
                1.6,
                0.2,
                num_networks=500,
                generator=g,
                dtype=torch.float64,
            )
            outputs.append(net(x)[..., 0])
        outputs = torch.cat(outputs)
        num_networks = len(outputs)
    kernel = NNGPKernel(depth, activation, weight_var=1.6, bias_var=0.2).double()(x)
    products = _upper(outputs[:, :, None] * outputs[:, None, :])  # (networks, 10)
    assert_z(products.mean(0), _upper(kernel), products.std(0) / math.sqrt(num_networks))


def _log_slope(widths, errors):
    return np.polyfit(np.log(widths), np.log(errors), 1)[0]


def test_empirical_nngp_error_falls_as_inverse_sqrt_width():
    """The readout covariance of one network deviates from K by O(width^-1/2)."""
    x = _net_points()
    g = torch.Generator().manual_seed(12)
    kernel = NNGPKernel(3, "relu", weight_var=1.8, bias_var=0.1).double()
    with torch.no_grad():
        target = kernel(x)
        widths = [16, 64, 256, 1024]
        errors = []
        for width in widths:
            net = NNGPNetwork(
                3, width, 3, 1, "relu", 1.8, 0.1, num_networks=16, generator=g, dtype=torch.float64
            )
            errors.append((net.empirical_nngp(x) - target).square().mean().sqrt().item())
    slope = _log_slope(widths, errors)
    assert -0.65 < slope < -0.35, (errors, slope)
    assert errors[-1] < errors[0] / 4  # 64 times the width: about 8 times less error


@pytest.mark.statistical
def test_empirical_ntk_mean_matches_ntk_at_depth_one():
    """With one hidden layer, E[empirical NTK] equals the NTK exactly at any width: z-test
    over 150 networks of width 64 (NTK parameterisation). Rejects e.g. an NTK recursion
    without the weight_var factor on the derivative term."""
    x = _net_points()
    g = torch.Generator().manual_seed(13)
    samples = torch.stack(
        [
            _upper(
                empirical_ntk(
                    NNGPNetwork(
                        3,
                        64,
                        1,
                        1,
                        "relu",
                        1.6,
                        0.2,
                        parameterization="ntk",
                        generator=g,
                        dtype=torch.float64,
                    ),
                    x,
                )
            )
            for _ in range(150)
        ]
    )
    with torch.no_grad():
        target = _upper(NTKKernel(1, "relu", weight_var=1.6, bias_var=0.2).double()(x))
    assert_z(samples.mean(0), target, samples.std(0) / math.sqrt(len(samples)))


def test_empirical_ntk_error_falls_as_inverse_sqrt_width():
    x = _net_points()
    g = torch.Generator().manual_seed(14)
    with torch.no_grad():
        target = NTKKernel(2, "erf", weight_var=1.5, bias_var=0.1).double()(x)
    widths = [16, 64, 256, 1024]
    errors = []
    for width in widths:
        sq = [
            (
                empirical_ntk(
                    NNGPNetwork(
                        3,
                        width,
                        2,
                        1,
                        "erf",
                        1.5,
                        0.1,
                        parameterization="ntk",
                        generator=g,
                        dtype=torch.float64,
                    ),
                    x,
                )
                - target
            )
            .square()
            .mean()
            for _ in range(8)
        ]
        errors.append(torch.stack(sq).mean().sqrt().item())
    slope = _log_slope(widths, errors)
    assert -0.7 < slope < -0.3, (errors, slope)


def test_ensemble_equals_separate_networks():
    x = _net_points()
    ensemble = NNGPNetwork(3, 8, 2, 2, "erf", 1.6, 0.2, num_networks=3, dtype=torch.float64)
    assert ensemble(x).shape == (3, 4, 2)
    single = NNGPNetwork(3, 8, 2, 2, "erf", 1.6, 0.2, dtype=torch.float64)
    with torch.no_grad():
        for m in range(3):
            for p, q in zip(single.parameters(), ensemble.parameters()):
                p.copy_(q[m])
            torch.testing.assert_close(single(x), ensemble(x)[m])
            torch.testing.assert_close(single.empirical_nngp(x), ensemble.empirical_nngp(x)[m])


def test_parameterisations_agree_at_initialisation():
    """Same seed: the standard and the NTK parameterisation compute the same function."""
    x = _net_points()
    a = NNGPNetwork(
        3,
        32,
        2,
        2,
        "relu",
        1.6,
        0.2,
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    b = NNGPNetwork(
        3,
        32,
        2,
        2,
        "relu",
        1.6,
        0.2,
        parameterization="ntk",
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    assert a(x).shape == (4, 2)


def test_recursion_function_returns_both_kernels(generator):
    x = _points(generator)
    k, theta = nngp_recursion(x, None, depth=2, weight_var=1.5, bias_var=0.1, ntk=True)
    assert k.shape == theta.shape == (5, 5)
    assert nngp_recursion(x, None, depth=2, weight_var=1.5, bias_var=0.1)[1] is None
    assert (theta.diagonal() >= k.diagonal()).all()
