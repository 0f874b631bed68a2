"""Kernel suite: every kernel in the registry runs the generic checks (shapes, symmetry,
positive semi-definiteness, diag, dtype/device, batching, gradients), plus known values
against scikit-learn's kernels and the constraint/bad-input errors."""

from __future__ import annotations

import math

import pytest
import torch

import bayestorch.gp as gp
from bayestorch.gp import (
    RBF,
    Kernel,
    Linear,
    Matern,
    NNGPKernel,
    NTKKernel,
    Periodic,
    Product,
    RationalQuadratic,
    Scale,
    Sum,
)
from bayestorch.testing.cases import (
    GPKernelTestCase,
    check_gp_kernel_batching,
    check_gp_kernel_gradients,
    check_gp_kernel_matrix,
)

# name -> factory; a kernel class missing here fails test_registry_is_complete.
EXAMPLES = {
    "RBF": lambda: RBF(lengthscale=0.7),
    "RBF-ard": lambda: RBF(lengthscale=torch.tensor([0.5, 1.0, 2.0])),
    "Matern12": lambda: Matern(0.5, lengthscale=0.8),
    "Matern32": lambda: Matern(1.5, lengthscale=0.8),
    "Matern52": lambda: Matern(2.5, lengthscale=torch.tensor([0.5, 1.0, 2.0])),
    "RationalQuadratic": lambda: RationalQuadratic(lengthscale=0.9, alpha=1.7),
    "Periodic": lambda: Periodic(lengthscale=1.2, period=1.5),
    "Linear": lambda: Linear(variance=0.6),
    "Sum": lambda: RBF(0.5) + Linear(0.3),
    "Product": lambda: Matern(1.5, 1.0) * Periodic(1.0, 2.0),
    "Scale": lambda: 2.5 * RBF(0.6),
    "NNGPKernel": lambda: NNGPKernel(2, "relu", weight_var=1.6, bias_var=0.2),
    "NNGPKernel-erf": lambda: NNGPKernel(2, "erf", weight_var=1.6, bias_var=0.2),
    "NTKKernel": lambda: NTKKernel(2, "relu", weight_var=1.6, bias_var=0.2),
}


def test_registry_is_complete():
    classes = {
        getattr(gp, name)
        for name in gp.__all__
        if isinstance(getattr(gp, name), type)
        and issubclass(getattr(gp, name), Kernel)
        and getattr(gp, name) is not Kernel
    }
    covered = {type(factory()) for factory in EXAMPLES.values()}
    assert classes <= covered, f"kernels missing from EXAMPLES: {classes - covered}"


def _inputs(generator, *shape):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", EXAMPLES)
def test_shapes_symmetry_psd_diag_and_dtype(name, generator, device):
    check_gp_kernel_matrix(EXAMPLES[name](), generator, device)


@pytest.mark.parametrize("name", EXAMPLES)
def test_batched_inputs_match_loop(name, generator):
    check_gp_kernel_batching(EXAMPLES[name](), generator)


@pytest.mark.parametrize("name", EXAMPLES)
def test_hyperparameter_gradients_gradcheck(name, generator):
    """gradcheck in float64 over the raw hyperparameters, diagonal included."""
    check_gp_kernel_gradients(EXAMPLES[name](), generator)


class TestUserKernelThroughTheMixin(GPKernelTestCase):
    """The shipped mixin, as a user would subclass it."""

    def make_kernel(self):
        return RBF(0.5) * Linear(0.3) + Matern(2.5, 0.7)


def test_values_match_sklearn(generator):
    sk = pytest.importorskip("sklearn.gaussian_process.kernels")
    x1 = _inputs(generator, 6, 1)
    x2 = _inputs(generator, 4, 1)
    a, b = x1.numpy(), x2.numpy()

    def t(value):  # float64 hyperparameters, so both sides use the same numbers
        return torch.tensor(value, dtype=torch.float64)

    pairs = [
        (RBF(t(0.7)), sk.RBF(0.7)),
        (Matern(0.5, t(0.8)), sk.Matern(0.8, nu=0.5)),
        (Matern(1.5, t(0.8)), sk.Matern(0.8, nu=1.5)),
        (Matern(2.5, t(0.8)), sk.Matern(0.8, nu=2.5)),
        (RationalQuadratic(t(0.9), t(1.7)), sk.RationalQuadratic(0.9, 1.7)),
        (Periodic(t(1.2), t(1.5)), sk.ExpSineSquared(1.2, 1.5)),
        (Linear(t(1.0)), sk.DotProduct(sigma_0=0.0)),
        (t(2.5) * RBF(t(0.6)) + Linear(t(1.0)), 2.5 * sk.RBF(0.6) + sk.DotProduct(0.0)),
        (RBF(t(0.6)) * Periodic(t(1.0), t(2.0)), sk.RBF(0.6) * sk.ExpSineSquared(1.0, 2.0)),
    ]
    for ours, theirs in pairs:
        expected = torch.from_numpy(theirs(a, b))
        torch.testing.assert_close(ours.double()(x1, x2), expected, atol=1e-12, rtol=1e-10)


def test_known_values_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)  # distance 5
    r = 5.0 / 2.0
    k = Matern(1.5, lengthscale=2.0).double()(x)
    assert k[0, 1].item() == pytest.approx((1 + math.sqrt(3) * r) * math.exp(-math.sqrt(3) * r))
    k = RBF(lengthscale=2.0).double()(x)
    assert k[0, 1].item() == pytest.approx(math.exp(-0.5 * r**2))
    assert k[0, 0].item() == 1.0


def test_operators_build_composites():
    a, b = RBF(), Linear()
    assert isinstance(a + b, Sum) and isinstance(a * b, Product)
    assert isinstance(3.0 * a, Scale) and isinstance(a * 3.0, Scale)
    assert (3.0 * a).variance.item() == pytest.approx(3.0)
    assert len(list((a + b).parameters())) == 2


def test_hyperparameters_stay_positive_under_optimisation(generator):
    kernel = RBF(0.5).double()
    x = _inputs(generator, 5, 2)
    opt = torch.optim.SGD(kernel.parameters(), lr=100.0)
    kernel(x).sum().backward()  # pushes the lengthscale up; a huge negative raw is fine too
    opt.step()
    assert kernel.lengthscale.item() > 0
    kernel.set_positive("lengthscale", 0.25)
    assert kernel.lengthscale.item() == pytest.approx(0.25)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RBF(lengthscale=0.0),
        lambda: Matern(1.5, lengthscale=-1.0),
        lambda: RationalQuadratic(alpha=0.0),
        lambda: Periodic(period=float("nan")),
        lambda: Linear(variance=-2.0),
        lambda: Scale(RBF(), variance=0.0),
        lambda: RBF(lengthscale=torch.tensor([1.0, -1.0])),
        lambda: NNGPKernel(2, weight_var=0.0),
        lambda: NTKKernel(2, bias_var=-0.1),
    ],
)
def test_non_positive_hyperparameters_raise(make):
    with pytest.raises(ValueError, match="must be positive"):
        make()


def test_set_positive_rejects_non_positive():
    with pytest.raises(ValueError, match="lengthscale must be positive"):
        RBF().set_positive("lengthscale", -1.0)


def test_bad_inputs_raise_clear_errors():
    kernel = RBF()
    with pytest.raises(ValueError, match=r"same last dim.*\(4, 3\) and \(2, 2\)"):
        kernel(torch.randn(4, 3), torch.randn(2, 2))
    x = torch.randn(4, 3)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x1 of shape \(4, 3\) holds NaN"):
        kernel(x)
    with pytest.raises(ValueError, match="x2 of shape .* holds NaN"):
        kernel(torch.randn(4, 3), x)
    with pytest.raises(ValueError, match="diag=True needs as many points"):
        kernel(torch.randn(4, 3), torch.randn(2, 3), diag=True)
    with pytest.raises(TypeError, match="floating-point"):
        kernel(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="lengthscale has shape"):
        RBF(lengthscale=torch.ones(2))(torch.randn(4, 3))
    with pytest.raises(ValueError, match="nu must be"):
        Matern(nu=2.0)


@pytest.fixture
def float32_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def _built_with_default(dtype, factory):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return factory()
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", EXAMPLES)
def test_python_number_hyperparameters_keep_float64_accuracy(name, generator):
    """Issue 21: built under a float32 default dtype, hyperparameters given as Python numbers
    were rounded to float32 (NNGP capped at ~3e-7 relative accuracy on float64 inputs)."""
    x1, x2 = _inputs(generator, 6, 3), _inputs(generator, 4, 3)
    k32 = _built_with_default(torch.float32, EXAMPLES[name])
    k64 = _built_with_default(torch.float64, EXAMPLES[name])
    out = k32(x1, x2)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, k64(x1, x2), rtol=1e-13, atol=1e-15)
    # float32 inputs still give float32 (the hyperparameters are cast where they are used)
    assert k32(x1.float(), x2.float()).dtype == torch.float32


def test_regression_noise_keeps_float64_accuracy(generator, float32_default):
    x = _inputs(generator, 8, 2)
    y = torch.sin(x.sum(-1))
    gp32 = gp.GPRegression(NNGPKernel(2, weight_var=1.3, bias_var=0.1), noise_var=0.1).fit(x, y)
    gp64 = _built_with_default(
        torch.float64,
        lambda: gp.GPRegression(NNGPKernel(2, weight_var=1.3, bias_var=0.1), noise_var=0.1),
    ).fit(x, y)
    xs = _inputs(generator, 3, 2)
    torch.testing.assert_close(gp32.predict(xs).mean, gp64.predict(xs).mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        gp32.log_marginal_likelihood(), gp64.log_marginal_likelihood(), rtol=1e-13, atol=0
    )


@pytest.mark.parametrize("cls", [NNGPKernel, NTKKernel])
def test_zero_bias_var_is_a_network_without_biases(cls, generator):
    """Issue 21: NNGPKernel(bias_var=0) was rejected although nngp_recursion defaults to 0."""
    kernel = cls(1, "relu", weight_var=2.0, bias_var=0)
    assert "raw_bias_var" not in dict(kernel.named_parameters())
    assert float(kernel.bias_var) == 0.0
    x = _inputs(generator, 5, 3)
    expected = gp.nngp_recursion(x, None, depth=1, weight_var=2.0, bias_var=0.0, ntk=cls._ntk)
    torch.testing.assert_close(kernel(x), expected[1] if cls._ntk else expected[0])
    if cls is NNGPKernel:  # K^1(x, x) = w E[relu(u)^2] = w (w |x|^2 / d) / 2, no bias term
        torch.testing.assert_close(kernel(x, diag=True), 2.0 * 2.0 * x.square().mean(-1) / 2)
    with pytest.raises(ValueError, match="bias_var must be positive .*or exactly 0"):
        cls(1, bias_var=-1e-3)
