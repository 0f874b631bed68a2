"""Exact GP regression (bayestorch vs GPyTorch) and the NNGP kernel matrix (bayestorch vs a
plain-torch arc-cosine recursion, and neural-tangents when installed).

Rows of the exact-GP table, at each ``n`` (float64, ``d``-dimensional inputs, scaled RBF
kernel + Gaussian noise, the same hyperparameters everywhere):

    bayestorch                 GPRegression: -log_marginal_likelihood().backward(), then
                               predict(x_star) (mean and variance at ``m`` test points)
    gpytorch (Cholesky)        ExactGP + ExactMarginalLogLikelihood, max_cholesky_size raised
                               so it factorises exactly like bayestorch (like-for-like)
    gpytorch (default)         GPyTorch's defaults: above 800 points, conjugate gradients and
                               Lanczos (approximate log-determinant and variances)

"fit" is one marginal-likelihood evaluation with its gradient (one step of hyperparameter
fitting); "predict" conditions afresh (no cache) and returns mean and variance. Times are
medians over ``repeats``.

Usage::

    python benchmarks/gp.py [--sizes 1000,4000] [--test-points 1000] [--dim 3]
                            [--nngp-size 2000] [--nngp-depth 5] [--repeats 3]
                            [--gpytorch-default-max-n 1000]
                            [--threads N] [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from _common import setup_device

import bayestorch
from bayestorch.gp import RBF, GPRegression, NNGPKernel

try:
    import gpytorch
except ImportError:  # its rows are skipped
    gpytorch = None

LENGTHSCALE, OUTPUTSCALE, NOISE = 0.7, 1.5, 0.05


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Seconds per call, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def make_data(n: int, m: int, d: int, device: torch.device, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 4
    y = torch.sin(x).sum(-1) + math.sqrt(NOISE) * torch.randn(n, generator=g, dtype=torch.float64)
    xs = torch.rand(m, d, generator=g, dtype=torch.float64) * 4
    return x.to(device), y.to(device), xs.to(device)


# ------------------------------------------------------------------ exact GP


def bayestorch_gp(x, y, xs):
    f64 = partial(torch.tensor, dtype=torch.float64)
    model = GPRegression(f64(OUTPUTSCALE) * RBF(f64(LENGTHSCALE)), noise_var=f64(NOISE))
    model = model.to(x.device).fit(x, y)

    def fit():
        model.zero_grad(set_to_none=True)
        loss = -model.log_marginal_likelihood()
        loss.backward()
        return loss.detach()

    def predict():
        with torch.no_grad():
            return model.predict(xs)

    return fit, predict


def gpytorch_gp(x, y, xs, cholesky: bool):
    class Model(gpytorch.models.ExactGP):
        def __init__(self, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(inputs), self.covar_module(inputs)
            )

    likelihood = gpytorch.likelihoods.GaussianLikelihood().double().to(x.device)
    model = Model(likelihood).double().to(x.device)
    model.covar_module.base_kernel.lengthscale = LENGTHSCALE
    model.covar_module.outputscale = OUTPUTSCALE
    likelihood.noise = NOISE
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    size = 10**7 if cholesky else 800  # 800 is GPyTorch's default

    def fit():
        model.train()
        likelihood.train()
        model.zero_grad(set_to_none=True)
        with gpytorch.settings.max_cholesky_size(size):
            loss = -mll(model(x), y) * len(y)  # GPyTorch divides by n
            loss.backward()
        return loss.detach()

    def predict():
        model.train()  # drops the prediction cache: condition afresh, like bayestorch
        model.eval()
        likelihood.eval()
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(size):
            out = model(xs)
            return out.mean, out.variance

    return fit, predict


# --------------------------------------------------------------------- NNGP


def plain_arccos_nngp(x: torch.Tensor, depth: int, weight_var: float, bias_var: float):
    """The textbook ReLU recursion with arccos (Cho & Saul 2009), no gradient care."""
    k = bias_var + weight_var * x @ x.T / x.shape[1]
    for _ in range(depth):
        diag = k.diagonal()
        norms = torch.sqrt(diag[:, None] * diag[None, :])
        cos = (k / norms).clamp(-1.0, 1.0)
        theta = torch.arccos(cos)
        k = bias_var + weight_var / (2 * math.pi) * norms * (
            torch.sin(theta) + (math.pi - theta) * cos
        )
    return k


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1000,4000", help="training-set sizes n, comma-separated")
    p.add_argument("--test-points", type=int, default=1000)
    p.add_argument("--dim", type=int, default=3)
    p.add_argument("--nngp-size", type=int, default=2000)
    p.add_argument("--nngp-depth", type=int, default=5)
    p.add_argument("--nngp-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--gpytorch-default-max-n",
        type=int,
        default=1000,
        help="run the 'gpytorch (default)' row (CG + Lanczos, slow predictive variances on "
        "CPU) only up to this n",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    if min(args.size_list + [args.repeats, args.test_points, args.nngp_size]) < 1:
        p.error("sizes, --repeats, --test-points and --nngp-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    print(
        f"torch {torch.__version__}, bayestorch {bayestorch.__version__}, gpytorch "
        f"{gpytorch.__version__ if gpytorch is not None else 'not installed (rows skipped)'}, "
        f"python {platform.python_version()}, device {device}, torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    results: dict = {"exact_gp": [], "nngp": []}

    header = (
        f"{'n':>6}  {'method':<22}{'fit s':>9}{'predict s':>11}{'x bt fit':>10}{'x bt pred':>11}"
    )
    print(f"Exact GP, float64, d={args.dim}, m={args.test_points} test points")
    print(header)
    print("-" * len(header))
    for n in args.size_list:
        x, y, xs = make_data(n, args.test_points, args.dim, device, args.seed)
        methods = [("bayestorch", partial(bayestorch_gp, x, y, xs))]
        if gpytorch is not None:
            methods.append(("gpytorch (Cholesky)", partial(gpytorch_gp, x, y, xs, cholesky=True)))
            if n <= args.gpytorch_default_max_n:
                methods.append(
                    ("gpytorch (default)", partial(gpytorch_gp, x, y, xs, cholesky=False))
                )
        base = None
        for name, build in methods:
            fit, predict = build()
            fit_s = statistics.median(timed(fit, args.repeats, device))
            pred_s = statistics.median(timed(predict, args.repeats, device))
            nll = float(fit())
            base = base or (fit_s, pred_s)
            print(
                f"{n:>6}  {name:<22}{fit_s:>9.3f}{pred_s:>11.3f}{fit_s / base[0]:>10.2f}"
                f"{pred_s / base[1]:>11.2f}   -lml {nll:.3f}"
            )
            results["exact_gp"].append(
                {"n": n, "method": name, "fit_s": fit_s, "predict_s": pred_s, "neg_lml": nll}
            )
    if gpytorch is None:
        print("gpytorch is not installed: pip install 'bayestorch[bench]' for its rows")

    s, depth = args.nngp_size, args.nngp_depth
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(s, args.nngp_dim, generator=g, dtype=torch.float64).to(device)
    print(f"\nNNGP kernel matrix, ReLU, {s} x {s}, depth {depth}, d={args.nngp_dim}, float64")
    f64 = partial(torch.tensor, dtype=torch.float64)
    kernel = NNGPKernel(depth, "relu", weight_var=f64(2.0), bias_var=f64(0.1)).to(device)
    rows = [
        ("bayestorch NNGPKernel", lambda: kernel(x)),
        ("plain torch arccos", lambda: plain_arccos_nngp(x, depth, 2.0, 0.1)),
        (
            "bayestorch NNGP+grad",
            lambda: torch.autograd.grad(kernel(x).sum(), [kernel.raw_weight_var]),
        ),
    ]
    with torch.no_grad():
        diff = (kernel(x) - plain_arccos_nngp(x, depth, 2.0, 0.1)).abs().max().item()
    base = None
    for name, fn in rows:
        if name.endswith("grad"):
            secs = statistics.median(timed(fn, args.repeats, device))
        else:
            with torch.no_grad():
                secs = statistics.median(timed(fn, args.repeats, device))
        base = base or secs
        print(f"  {name:<24}{secs:>9.3f} s   x {secs / base:.2f}")
        results["nngp"].append({"method": name, "seconds": secs})
    print(f"  max |bayestorch - plain arccos| = {diff:.2e}")
    print("  neural-tangents: not compared (JAX library; not installed here)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
