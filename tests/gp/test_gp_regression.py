"""GPRegression: predictive distributions and the marginal likelihood against the Gaussian
formulas computed directly, gradients, hyperparameter fitting, jitter and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from bayestorch.gp import (
    RBF,
    GPRegression,
    Kernel,
    Linear,
    Matern,
    Periodic,
    fit_hyperparameters,
    gaussian_log_evidence,
)
from bayestorch.utils import NotPSDError


def _data(generator, n=12, d=2, batch=(), device="cpu"):
    x = torch.rand(*batch, n, d, generator=generator, dtype=torch.float64) * 4
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(
        *batch, n, generator=generator, dtype=torch.float64
    )
    return x.to(device), y.to(device)


def _kernel():
    return 1.3 * Matern(2.5, lengthscale=0.8) + 0.2 * Periodic(1.0, 2.0) + Linear(0.05)


def _direct(kernel, noise, x, y, xs):
    """Conditioning formulas with explicit inverses (float64)."""
    k = kernel(x) + noise * torch.eye(x.shape[-2], dtype=x.dtype, device=x.device)
    ks = kernel(x, xs)
    kinv = torch.linalg.inv(k)
    mean = ks.mT @ kinv @ y
    cov = kernel(xs) - ks.mT @ kinv @ ks
    return mean, cov


def test_predictive_equals_gaussian_conditioning(generator, device):
    x, y = _data(generator, device=device)
    xs = torch.rand(7, 2, generator=generator, dtype=torch.float64).to(device) * 5
    model = GPRegression(_kernel(), noise_var=0.05).double().to(device).fit(x, y)
    noise = model.noise_var.detach()
    with torch.no_grad():
        mean, cov = _direct(model.kernel, noise, x, y, xs)
        pred = model.predict(xs)
        noisy = model.predict(xs, include_noise=True)
        full = model.predict(xs, full_cov=True)
        full_noisy = model.predict(xs, full_cov=True, include_noise=True)
    torch.testing.assert_close(pred.mean, mean)
    torch.testing.assert_close(pred.var, cov.diagonal())
    torch.testing.assert_close(noisy.mean, mean)
    torch.testing.assert_close(noisy.var, cov.diagonal() + noise)
    torch.testing.assert_close(full.var, cov)
    eye = torch.eye(7, dtype=torch.float64, device=device)
    torch.testing.assert_close(full_noisy.var, cov + noise * eye)


def test_noiseless_predictive_interpolates_with_tiny_noise(generator):
    x, y = _data(generator, n=6)
    model = GPRegression(RBF(1.0), noise_var=1e-10, warn_jitter=False).double().fit(x, y)
    with torch.no_grad():
        pred = model.predict(x)
    torch.testing.assert_close(pred.mean, y, atol=1e-6, rtol=0)
    assert pred.var.max() < 1e-6


def test_log_marginal_likelihood_equals_mvn_log_prob(generator, device):
    x, y = _data(generator, device=device)
    model = GPRegression(_kernel(), noise_var=0.1).double().to(device).fit(x, y)
    with torch.no_grad():
        cov = model.kernel(x) + model.noise_var * torch.eye(12, dtype=x.dtype, device=device)
        expected = MultivariateNormal(torch.zeros_like(y), cov).log_prob(y)
        torch.testing.assert_close(model.log_marginal_likelihood(), expected)


def test_log_marginal_likelihood_gradcheck(generator):
    x, y = _data(generator, n=8)
    model = GPRegression(_kernel(), noise_var=0.1).double().fit(x, y)
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())

    class LML(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gp = model

        def forward(self):
            return self.gp.log_marginal_likelihood()

    wrapper = LML()

    def fn(*raw):
        return torch.func.functional_call(wrapper, {f"gp.{n}": r for n, r in zip(names, raw)}, ())

    assert len(values) == 7  # noise, 2 scales, 2 lengthscales, period, linear variance
    assert torch.autograd.gradcheck(fn, values, eps=1e-6, atol=1e-6)


def test_predict_gradcheck_in_test_inputs_and_hyperparameters(generator):
    x, y = _data(generator, n=6)
    model = GPRegression(RBF(0.9), noise_var=0.1).double().fit(x, y)
    xs = torch.rand(3, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    raw = model.kernel.raw_lengthscale.detach().clone().requires_grad_(True)

    def fn(xs, raw):
        out = torch.func.functional_call(model, {"kernel.raw_lengthscale": raw}, (xs,))
        return out.mean, out.var

    assert torch.autograd.gradcheck(fn, (xs, raw))


def test_batched_test_points_and_batched_training_sets(generator):
    x, y = _data(generator, batch=(3,))
    xs = torch.rand(3, 5, 2, generator=generator, dtype=torch.float64)
    model = GPRegression(RBF(0.8), noise_var=0.1).double().fit(x, y)
    with torch.no_grad():
        batched = model.predict(xs)
        lml = model.log_marginal_likelihood()
    assert batched.mean.shape == (3, 5) and lml.shape == (3,)
    for i in range(3):
        single = GPRegression(RBF(0.8), noise_var=0.1).double().fit(x[i], y[i])
        with torch.no_grad():
            torch.testing.assert_close(single.predict(xs[i]).mean, batched.mean[i])
            torch.testing.assert_close(single.predict(xs[i]).var, batched.var[i])
            torch.testing.assert_close(single.log_marginal_likelihood(), lml[i])
    # one training set, a batch of test sets
    single = GPRegression(RBF(0.8), noise_var=0.1).double().fit(x[0], y[0])
    with torch.no_grad():
        out = single.predict(xs)
        assert out.mean.shape == (3, 5)
        torch.testing.assert_close(out.mean[2], single.predict(xs[2]).mean)


def test_multiple_outputs_equal_separate_fits(generator):
    x, y = _data(generator)
    ys = torch.stack([y, y.flip(0), 2 * y], dim=-1)  # (n, 3)
    xs = torch.rand(5, 2, generator=generator, dtype=torch.float64)
    model = GPRegression(RBF(0.8), noise_var=0.1).double().fit(x, ys)
    with torch.no_grad():
        out = model.predict(xs)
        lml = model.log_marginal_likelihood()
        assert out.mean.shape == (5, 3) and out.var.shape == (5,)
        total = 0.0
        for j in range(3):
            single = model.fit(x, ys[:, j].contiguous())
            torch.testing.assert_close(single.predict(xs).mean, out.mean[:, j])
            torch.testing.assert_close(single.predict(xs).var, out.var)
            total = total + single.log_marginal_likelihood()
    torch.testing.assert_close(lml, total)


def test_float32_and_float64(generator):
    x, y = _data(generator)
    model = GPRegression(RBF(0.8), noise_var=0.1).fit(x.float(), y.float())
    assert model.predict(x[:3].float()).mean.dtype == torch.float32
    model = model.double().fit(x, y)
    assert model.predict(x[:3]).var.dtype == torch.float64
    assert model.log_marginal_likelihood().dtype == torch.float64


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_fit_hyperparameters_increases_marginal_likelihood(generator, optimizer):
    x, y = _data(generator, n=30, d=1)
    model = GPRegression(1.0 * RBF(0.1), noise_var=1.0).double().fit(x, y)
    with torch.no_grad():
        start = model.log_marginal_likelihood()
    steps = 50 if optimizer == "lbfgs" else 200
    history = fit_hyperparameters(model, optimizer=optimizer, num_steps=steps)
    with torch.no_grad():
        end = model.log_marginal_likelihood()
    assert end > start + 5.0
    assert history[-1] <= history[0]


def test_fit_hyperparameters_matches_sklearn_optimum(generator):
    skgp = pytest.importorskip("sklearn.gaussian_process")
    sk = pytest.importorskip("sklearn.gaussian_process.kernels")
    x, y = _data(generator, n=40, d=1)
    model = GPRegression(1.0 * RBF(1.0), noise_var=0.1).double().fit(x, y)
    fit_hyperparameters(model, optimizer="lbfgs", num_steps=200)
    theirs = skgp.GaussianProcessRegressor(
        sk.ConstantKernel(1.0, (1e-5, 1e5)) * sk.RBF(1.0, (1e-5, 1e5))
        + sk.WhiteKernel(0.1, (1e-8, 1e5))
    ).fit(x.numpy(), y.numpy())
    with torch.no_grad():
        ours = model.log_marginal_likelihood().item()
    assert ours == pytest.approx(theirs.log_marginal_likelihood_value_, abs=1e-4)
    assert model.kernel.kernel.lengthscale.item() == pytest.approx(
        theirs.kernel_.k1.k2.length_scale, rel=1e-2
    )


def test_jitter_is_escalated_and_reported():
    x = torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64)  # a duplicated point
    y = torch.tensor([0.1, 0.1, 0.5], dtype=torch.float64)
    model = GPRegression(RBF(1.0), noise_var=1e-30).double().fit(x, y)
    with pytest.warns(RuntimeWarning, match="kernel matrix K \\+ noise_var I.*jitter"):
        lml = model.log_marginal_likelihood()
    assert torch.isfinite(lml)


class _Indefinite(Kernel):
    def compute(self, x1, x2, diag):
        k = -torch.ones(*x1.shape[:-1], x2.shape[-2], dtype=x1.dtype)
        return k.diagonal(dim1=-2, dim2=-1) if diag else k


def test_non_psd_kernel_matrix_raises_naming_it():
    x = torch.randn(4, 1, dtype=torch.float64)
    model = GPRegression(_Indefinite(), noise_var=0.01).double().fit(x, x[:, 0])
    with pytest.raises(NotPSDError, match=r"kernel matrix K \+ noise_var I of shape \(4, 4\)"):
        model.log_marginal_likelihood()


def test_bad_inputs_raise_clear_errors():
    model = GPRegression(RBF(), noise_var=0.1)
    with pytest.raises(RuntimeError, match="call fit"):
        model.predict(torch.randn(3, 2))
    with pytest.raises(
        ValueError, match=r"y must have shape x.shape\[:-1\] = \(5,\) .* or \(5,\) \+ \(t,\)"
    ):
        model.fit(torch.randn(5, 2), torch.randn(4))
    x = torch.randn(5, 2)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x of shape .* holds NaN"):
        model.fit(x, torch.randn(5))
    y = torch.randn(5)
    y[2] = float("inf")
    with pytest.raises(ValueError, match="y of shape .* holds NaN or inf"):
        model.fit(torch.randn(5, 2), y)
    model.fit(torch.randn(5, 2), torch.randn(5))
    with pytest.raises(ValueError, match="x_star must have the training inputs' dimension 2"):
        model.predict(torch.randn(3, 3))
    with pytest.raises(ValueError, match="noise_var must be positive"):
        GPRegression(RBF(), noise_var=0.0)
    with pytest.raises(ValueError, match="noise_var must be positive"):
        GPRegression(RBF(), noise_var=-1.0)
    with pytest.raises(TypeError, match="kernel must be"):
        GPRegression(lambda a, b: a @ b.T)
    with pytest.raises(ValueError, match="optimizer must be"):
        fit_hyperparameters(model, optimizer="sgd")


def test_state_dict_round_trip(generator):
    x, y = _data(generator)
    model = GPRegression(_kernel(), noise_var=0.2).double().fit(x, y)
    fresh = GPRegression(_kernel(), noise_var=1.0).double()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_marginal_likelihood(), model.log_marginal_likelihood())
    assert math.isclose(fresh.noise_var.item(), 0.2, rel_tol=1e-6)


def test_gaussian_log_evidence_value_and_gradcheck(generator):
    b = torch.randn(2, 5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64, requires_grad=True)

    def fn(b, y):
        matrix = b @ b.mT + torch.eye(5, dtype=torch.float64)
        return gaussian_log_evidence(matrix, y, torch.linalg.cholesky(matrix.detach()))

    with torch.no_grad():
        matrix = b @ b.mT + torch.eye(5, dtype=torch.float64)
        mvn = MultivariateNormal(torch.zeros(2, 1, 5, dtype=torch.float64), matrix[:, None])
        torch.testing.assert_close(fn(b, y), mvn.log_prob(y.mT).sum(-1))
    assert torch.autograd.gradcheck(fn, (b, y))


@pytest.mark.parametrize(
    ("batch", "outputs", "one_d"),
    [((), None, False), ((3,), None, False), ((), 2, False), ((), None, True)],
)
def test_chunked_prediction_equals_unchunked(generator, batch, outputs, one_d):
    """Issue 21 (bounded memory): predicting in chunks of test points gives the same answer."""
    x, y = _data(generator, n=15, d=1 if one_d else 2, batch=batch)
    if outputs is not None:
        y = torch.stack([y, y.cos()], -1)
    if one_d:
        x = x.squeeze(-1)
    model = GPRegression(_kernel(), noise_var=0.05).double().fit(x, y)
    shape = (23,) if one_d else (*batch, 23, 2)
    xs = torch.rand(*shape, generator=generator, dtype=torch.float64) * 5
    whole = model.predict(xs, include_noise=True)
    for chunk in (1, 4, 22):
        part = model.predict(xs, include_noise=True, chunk_size=chunk)
        torch.testing.assert_close(part.mean, whole.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(part.var, whole.var, rtol=1e-12, atol=1e-12)
    full = model.predict(xs, full_cov=True, chunk_size=4)
    torch.testing.assert_close(full.var.diagonal(dim1=-2, dim2=-1), model.predict(xs).var)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        model.predict(xs, chunk_size=0)


def test_chunked_prediction_gradients_equal_unchunked(generator):
    """Chunks are recomputed in the backward pass (checkpointing): same gradients."""
    x, y = _data(generator, n=10)
    xs = torch.rand(9, 2, generator=generator, dtype=torch.float64) * 5
    grads = []
    for chunk in (None, 2):
        model = GPRegression(_kernel(), noise_var=0.05).double().fit(x, y)
        out = model.predict(xs, chunk_size=chunk)
        (out.mean.square().sum() + out.var.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)
