"""Fuzz cases of bayestorch.gp."""

from __future__ import annotations

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

GP = bt.gp

exempt("namedtuple", "predictive mean and variance", "gp.GPPrediction")
exempt("protocol", "abstract base: compute() is the subclasses' (each fuzzed)", "gp.Kernel")

_STATIONARY = {
    "RBF": lambda f: GP.RBF(f.arg("lengthscale", 1.5)),
    "Matern": lambda f: GP.Matern(
        f.arg("nu", f.draw(st.sampled_from([0.5, 1.5, 2.5]))), f.arg("lengthscale", 0.7)
    ),
    "RationalQuadratic": lambda f: GP.RationalQuadratic(
        f.arg("lengthscale", 1.0), f.arg("alpha", 2.0)
    ),
    "Periodic": lambda f: GP.Periodic(f.arg("lengthscale", 1.0), f.arg("period", 2.0)),
    "Linear": lambda f: GP.Linear(f.arg("variance", 0.5)),
    "NNGPKernel": lambda f: GP.NNGPKernel(
        f.arg("depth", f.size(0, 2)),
        f.arg("activation", f.draw(st.sampled_from(["relu", "erf"]))),
        f.arg("weight_var", 1.5),
        f.arg("bias_var", 0.1),
    ),
    "NTKKernel": lambda f: GP.NTKKernel(
        f.arg("depth", f.size(0, 2)),
        f.arg("activation", f.draw(st.sampled_from(["relu", "erf"]))),
        f.arg("weight_var", 1.5),
        f.arg("bias_var", 0.1),
    ),
    "Sum": lambda f: GP.Sum(f.arg("kernels", GP.RBF(1.0)), GP.Linear(1.0)),
    "Product": lambda f: GP.Product(f.arg("kernels", GP.RBF(1.0)), GP.Periodic(1.0, 1.0)),
    "Scale": lambda f: GP.Scale(f.arg("kernel", GP.RBF(1.0)), f.arg("variance", 2.0)),
}


def _kernel_case(name):
    def run(f):
        kernel = _STATIONARY[name](f).to(dtype=f.dtype, device=f.device)
        batch = f.shape(max_dims=1, hi=2)
        n1, n2, d = f.size(0, 4), f.size(0, 4), f.size(1, 3)
        x1 = f.arg("x1", f.randn(*batch, n1, d))
        diag = f.draw(st.booleans())
        if diag:
            return f.expect(kernel(x1, diag=f.arg("diag", True)), (*batch, n1))
        x2 = f.arg("x2", f.randn(*batch, n2, d), shape_fuzz=("last",))
        return f.expect(kernel(x1, x2), (*batch, n1, n2))

    return run


for _name in _STATIONARY:
    case(f"gp.{_name}")(_kernel_case(_name))


def _data(f):
    n, d = f.size(0, 5), f.size(1, 2)
    x = f.randn(n, d)
    y = torch.sin(x.sum(-1))
    return n, d, x, y


@case("gp.GPRegression")
def _(f):
    n, d, x, y = _data(f)
    gp = GP.GPRegression(f.arg("kernel", GP.RBF(1.0)), f.arg("noise_var", 0.1)).to(
        dtype=f.dtype, device=f.device
    )
    gp.fit(f.arg("x", x), f.arg("y", y, shape_fuzz=True))
    m = f.size(0, 4)
    mean, var = gp.predict(f.arg("x_star", f.randn(m, d), shape_fuzz=("last",)))
    f.expect(mean, (m,))
    f.expect(var, (m,))
    return gp.log_marginal_likelihood(), mean, var


@case("gp.gp_posterior")
def _(f):
    n, d, x, y = _data(f)
    m = f.size(0, 4)
    full = f.draw(st.booleans())
    out = GP.gp_posterior(
        f.arg("kernel", GP.RBF(1.0).to(dtype=f.dtype)),
        f.arg("train_x", x),
        f.arg("train_y", y, shape_fuzz=True),
        f.arg("test_x", f.randn(m, d), shape_fuzz=("last",)),
        f.arg("noise_var", f.tensor(0.1)),
        full_cov=full,
    )
    f.expect(out.mean, (m,))
    return f.expect(out.var, (m, m) if full else (m,))


@case("gp.fit_hyperparameters", examples=0.3)
def _(f):
    n, d, x, y = _data(f)
    gp = GP.GPRegression(GP.Scale(GP.RBF(1.0)), 0.1).to(dtype=f.dtype).fit(x, y)
    optimizer = f.draw(st.sampled_from(["lbfgs", "adam"]))
    out = GP.fit_hyperparameters(
        f.arg("model", gp),
        optimizer=f.arg("optimizer", optimizer),
        num_steps=f.arg("num_steps", f.size(1, 5)),
        lr=f.arg("lr", 0.05, aliases=("learning rate",)),
    )
    return out, gp.log_marginal_likelihood()


@case("gp.NNGPNetwork")
def _(f):
    d, width, depth = f.size(1, 3), f.size(1, 4), f.size(0, 2)
    net = GP.NNGPNetwork(
        f.arg("in_features", d),
        f.arg("width", width),
        f.arg("depth", depth),
        f.arg("out_features", f.size(1, 2)),
        f.arg("activation", f.draw(st.sampled_from(["relu", "erf"]))),
        generator=f.generator(),
        dtype=f.dtype,
    )
    n = f.size(0, 4)
    return net(f.arg("x", f.randn(n, d), shape_fuzz=("last",)))


@case("gp.empirical_ntk")
def _(f):
    d = f.size(1, 3)
    net = torch.nn.Sequential(torch.nn.Linear(d, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    net = net.to(dtype=f.dtype)
    n1, n2 = f.size(0, 3), f.size(0, 3)
    out = GP.empirical_ntk(
        f.arg("network", net),
        f.arg("x1", f.randn(n1, d)),
        f.arg("x2", f.randn(n2, d), shape_fuzz=("last",)),
    )
    return f.expect(out, (n1, n2))


def _k(f):
    shape = f.shape(max_dims=2)
    k11 = f.rand(*shape, lo=0.5, hi=2.0)
    k22 = f.rand(*shape, lo=0.5, hi=2.0)
    k12 = (k11 * k22).sqrt() * f.rand(*shape, lo=-0.9, hi=0.9)
    return shape, k11, k22, k12


def _expectations(fn):
    def run(f):
        shape, k11, k22, k12 = _k(f)
        a, b = fn(
            f.arg("k11", k11, propagates=True),
            f.arg("k22", k22, propagates=True),
            f.arg("k12", k12, propagates=True),
        )
        f.expect(a, shape)
        return f.expect(b, shape)

    return run


case("gp.relu_expectations")(_expectations(GP.relu_expectations))
case("gp.erf_expectations")(_expectations(GP.erf_expectations))


@case("gp.gaussian_expectation")
def _(f):
    shape, k11, k22, k12 = _k(f)
    out = GP.gaussian_expectation(
        f.arg("fn", torch.tanh),
        f.arg("k11", k11, propagates=True),
        f.arg("k22", k22, propagates=True),
        f.arg("k12", k12, propagates=True),
        num_points=f.arg("num_points", 8),
    )
    return f.expect(out, shape)


@case("gp.gaussian_log_evidence")
def _(f):
    n, t = f.size(0, 4), f.size(1, 2)
    matrix = f.spd(n)
    chol = torch.linalg.cholesky(matrix)
    out = GP.gaussian_log_evidence(  # matrix is only used by the gradient
        f.arg("matrix", matrix, shape_fuzz=True, propagates=True),
        f.arg("targets", f.randn(n, t), shape_fuzz=True),
        f.arg("chol", chol, shape_fuzz=True),
    )
    return f.expect(out, ())


@case("gp.nngp_recursion")
def _(f):
    n1, n2, d = f.size(0, 3), f.size(0, 3), f.size(1, 3)
    ntk = f.draw(st.booleans())
    k, theta = GP.nngp_recursion(  # the functional core: NNGPKernel checks the inputs
        f.arg("x1", f.randn(n1, d), propagates=True),
        f.arg("x2", f.randn(n2, d), shape_fuzz=("last",), propagates=True),
        depth=f.arg("depth", f.size(0, 2)),
        activation=f.arg("activation", f.draw(st.sampled_from(["relu", "erf"]))),
        weight_var=f.arg("weight_var", 1.5, propagates=True),
        bias_var=f.arg("bias_var", 0.1, propagates=True),
        ntk=ntk,
    )
    f.expect(k, (n1, n2))
    return (k, f.expect(theta, (n1, n2))) if ntk else k
