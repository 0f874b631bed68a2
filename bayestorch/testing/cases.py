"""Conformance checks that users run on their own MCMC and GP kernels.

Two layers, so a test suite can take either:

* ``check_*`` functions: one property each, raising ``AssertionError`` with a message;
* pytest mixins :class:`KernelTestCase` and :class:`GPKernelTestCase`: subclass one as
  ``class TestMyKernel(KernelTestCase)``, implement ``make_kernel`` and pytest collects the
  generic suite (shapes, reproducibility, exact resume, invariance / PSD, gradients).

bayestorch's own kernels run the same checks (tests/mcmc/test_conformance.py,
tests/gp/test_gp_kernels.py), and their registries fail when a kernel is missing.

Example::

    class TestMyKernel(KernelTestCase):
        def make_kernel(self, log_prob_fn):
            return MyKernel(log_prob_fn, step_size=0.3)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bayestorch.mcmc.base import Kernel
from bayestorch.testing.gof import DEFAULT_FAILURE_RATE, _scipy_stats, assert_ks
from bayestorch.testing.kernels import run_kernel
from bayestorch.testing.targets import GaussianTarget

__all__ = [
    "GPKernelTestCase",
    "KernelTestCase",
    "check_gp_kernel_batching",
    "check_gp_kernel_gradients",
    "check_gp_kernel_matrix",
    "check_kernel_invariance",
    "check_kernel_reproducible",
    "check_kernel_resume",
    "check_kernel_shapes",
    "conformance_target",
]


# -- MCMC kernels ---------------------------------------------------------------------


def conformance_target(
    dim: int = 3, dtype: torch.dtype = torch.float64, device: Any = None
) -> GaussianTarget:
    """A correlated Gaussian with unequal scales (0.5 to 2) and a non-zero mean: a kernel
    that mishandles scale, correlation or location is caught by the invariance check."""
    scales = torch.logspace(math.log10(0.5), math.log10(2.0), dim, dtype=torch.float64)
    corr = 0.5 ** (torch.arange(dim)[:, None] - torch.arange(dim)[None, :]).abs().double()
    covariance = scales[:, None] * corr * scales[None, :]
    mean = torch.linspace(-1.0, 1.0, dim, dtype=torch.float64)
    return GaussianTarget(mean, covariance).to(dtype=dtype, device=device)


def _positions(state: Any) -> Tensor:
    return state.position if hasattr(state, "position") else state[0]


def check_kernel_shapes(kernel: Kernel, position: Tensor, num_steps: int = 3) -> None:
    """State and info follow the position: ``(chains, dim)`` state, info fields leading
    with ``chains``, same dtype and device; the chain stays finite."""
    state, info = run_kernel(kernel, position, num_steps, torch.Generator(position.device))
    chains = position.shape[0]
    out = _positions(state)
    assert out.shape == position.shape, f"state position {tuple(out.shape)} != {position.shape}"
    assert out.dtype == position.dtype, f"state dtype {out.dtype} != {position.dtype}"
    assert out.device == position.device, f"state device {out.device} != {position.device}"
    assert bool(torch.isfinite(out).all()), "non-finite position after a few steps"
    for name, value in info._asdict().items():
        assert isinstance(value, Tensor), f"info.{name} is not a tensor"
        # (chains,) diagnostics; per-chain vectors (e.g. ChEES's proposals) lead with chains
        assert value.shape[:1] == (chains,), f"info.{name} has shape {tuple(value.shape)}"
        assert value.device == position.device, f"info.{name} is on {value.device}"


def check_kernel_reproducible(
    make_kernel: Callable[[], Kernel], position: Tensor, num_steps: int = 5, seed: int = 0
) -> None:
    """Two kernels stepped with equally seeded generators give identical chains."""
    runs = []
    for _ in range(2):
        generator = torch.Generator(position.device).manual_seed(seed)
        state, _ = run_kernel(make_kernel(), position, num_steps, generator)
        runs.append(_positions(state))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def check_kernel_resume(
    make_kernel: Callable[[], Kernel], position: Tensor, num_steps: int = 6, seed: int = 0
) -> None:
    """Kernel ``state_dict`` + chain state + generator state resume the run exactly."""
    generator = torch.Generator(position.device).manual_seed(seed)
    kernel = make_kernel()
    half, _ = run_kernel(kernel, position, num_steps // 2, generator)
    saved = (copy.deepcopy(kernel.state_dict()), half, generator.get_state())
    full, _ = run_kernel(kernel, half, num_steps - num_steps // 2, generator)

    resumed_kernel = make_kernel()
    resumed_kernel.load_state_dict(saved[0])
    resumed_generator = torch.Generator(position.device)
    resumed_generator.set_state(saved[2])
    resumed, _ = run_kernel(resumed_kernel, saved[1], num_steps - num_steps // 2, resumed_generator)
    torch.testing.assert_close(_positions(resumed), _positions(full), rtol=0, atol=0)


def check_kernel_invariance(
    kernel: Kernel,
    target: GaussianTarget,
    num_chains: int = 2000,
    num_steps: int = 5,
    generator: torch.Generator | None = None,
    failure_rate: float = DEFAULT_FAILURE_RATE,
) -> None:
    """The kernel leaves ``target`` invariant: chains started at exact draws are still
    exact draws after ``num_steps`` steps (KS on every marginal and on the whitened sum,
    the failure rate split over them)."""
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"num_chains must be an int >= 2 (a KS test), got {num_chains!r}")
    start = target.sample(num_chains, generator=generator)
    state, _ = run_kernel(kernel, start, num_steps, generator)
    x = _positions(state).detach().double().cpu()
    mean, cov = target.mean.double().cpu(), target.covariance.double().cpu()
    stats = _scipy_stats()
    # marginals, then one direction mixing all coordinates (catches wrong correlations)
    direction = torch.linalg.solve_triangular(
        torch.linalg.cholesky(cov), torch.ones(target.dim, 1, dtype=torch.float64), upper=False
    ).squeeze(-1)
    projections = [(x[:, i], mean[i], cov[i, i].sqrt()) for i in range(target.dim)]
    projections.append((x @ direction, mean @ direction, (direction @ cov @ direction).sqrt()))
    rate = failure_rate / len(projections)
    for values, loc, scale in projections:
        assert_ks(values.numpy(), stats.norm(float(loc), float(scale)).cdf, failure_rate=rate)


class KernelTestCase:
    """Generic pytest suite for an MCMC kernel following ``bayestorch.mcmc.base.Kernel``.

    Implement ``make_kernel(self, log_prob_fn) -> Kernel``; override the class attributes
    to size the checks (``num_steps`` steps of ``num_chains`` chains for invariance).
    """

    dim: int = 3
    num_chains: int = 2000
    num_steps: int = 5
    failure_rate: float = DEFAULT_FAILURE_RATE
    seed: int = 0
    device: str = "cpu"

    def make_kernel(self, log_prob_fn: Callable[[Tensor], Tensor]) -> Kernel:
        raise NotImplementedError("implement make_kernel(self, log_prob_fn) -> Kernel")

    def _target(self, dtype: torch.dtype = torch.float64) -> GaussianTarget:
        return conformance_target(self.dim, dtype, self.device)

    def _start(self, dtype: torch.dtype, chains: int = 4) -> Tensor:
        generator = torch.Generator(self.device).manual_seed(self.seed)
        return self._target(dtype).sample(chains, generator=generator)

    def test_shapes_follow_the_position(self) -> None:
        for dtype in (torch.float32, torch.float64):
            target = self._target(dtype)
            check_kernel_shapes(self.make_kernel(target.log_prob), self._start(dtype))

    def test_same_generator_same_chain(self) -> None:
        target = self._target()
        check_kernel_reproducible(
            lambda: self.make_kernel(target.log_prob), self._start(torch.float64), seed=self.seed
        )

    def test_resume_continues_exactly(self) -> None:
        target = self._target()
        check_kernel_resume(
            lambda: self.make_kernel(target.log_prob), self._start(torch.float64), seed=self.seed
        )

    def test_leaves_the_target_invariant(self) -> None:
        target = self._target()
        generator = torch.Generator(self.device).manual_seed(self.seed)
        check_kernel_invariance(
            self.make_kernel(target.log_prob),
            target,
            self.num_chains,
            self.num_steps,
            generator,
            self.failure_rate,
        )


# -- GP kernels ------------------------------------------------------------------------


def _inputs(generator: torch.Generator, *shape: int, dtype: torch.dtype, device: Any) -> Tensor:
    if shape[-1] < 1:
        raise ValueError(f"dim (the input dimension) must be >= 1, got {shape[-1]}")
    return torch.randn(*shape, generator=generator, dtype=dtype).to(device)


def check_gp_kernel_matrix(
    kernel: torch.nn.Module, generator: torch.Generator, device: Any = "cpu", dim: int = 3
) -> None:
    """``(n1, n2)`` shapes, dtype and device follow the inputs; ``K(x, x)`` symmetric and
    PSD; ``diag=True`` equals the diagonal; ``K(x, x.clone())`` equals ``K(x)``."""
    kernel = kernel.double().to(device)
    device = torch.device(device)
    x1 = _inputs(generator, 7, dim, dtype=torch.float64, device=device)
    x2 = _inputs(generator, 5, dim, dtype=torch.float64, device=device)
    k12 = kernel(x1, x2)
    assert k12.shape == (7, 5), f"K(x1, x2) has shape {tuple(k12.shape)}, expected (7, 5)"
    assert k12.dtype == torch.float64 and k12.device.type == device.type
    k11 = kernel(x1)
    torch.testing.assert_close(k11, k11.mT)
    smallest = float(torch.linalg.eigvalsh(k11.detach()).min())
    assert smallest > -1e-10, f"K(x, x) is not PSD: smallest eigenvalue {smallest:.3g}"
    torch.testing.assert_close(kernel(x1, diag=True), k11.diagonal())
    x3 = _inputs(generator, 5, dim, dtype=torch.float64, device=device)
    torch.testing.assert_close(kernel(x2, x3, diag=True), kernel(x2, x3).diagonal())
    torch.testing.assert_close(kernel(x1, x1.clone()), k11, atol=1e-10, rtol=1e-8)
    x32 = x1.float()
    assert kernel.float()(x32).dtype == torch.float32, "float32 inputs must give float32"
    kernel.double()


def check_gp_kernel_batching(
    kernel: torch.nn.Module, generator: torch.Generator, dim: int = 3
) -> None:
    """Leading batch dims broadcast like matmul and equal a loop over the batch."""
    kernel = kernel.double()
    x1 = _inputs(generator, 2, 4, 6, dim, dtype=torch.float64, device="cpu")
    x2 = _inputs(generator, 4, 5, dim, dtype=torch.float64, device="cpu")
    batched = kernel(x1, x2)
    assert batched.shape == (2, 4, 6, 5), f"batched shape {tuple(batched.shape)}"
    for i in range(2):
        for j in range(4):
            torch.testing.assert_close(batched[i, j], kernel(x1[i, j], x2[j]))


def check_gp_kernel_gradients(
    kernel: torch.nn.Module, generator: torch.Generator, dim: int = 3
) -> None:
    """``gradcheck`` in float64 over every parameter, of ``K(x1)`` and ``K(x1, x2)``."""
    kernel = kernel.double()
    x1 = _inputs(generator, 4, dim, dtype=torch.float64, device="cpu")
    x2 = _inputs(generator, 3, dim, dtype=torch.float64, device="cpu")
    names = [n for n, _ in kernel.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for _, p in kernel.named_parameters())
    if not values:
        return

    def fn(*raw: Tensor) -> tuple[Tensor, Tensor]:
        params = dict(zip(names, raw))
        full = torch.func.functional_call(kernel, params, (x1,))
        cross = torch.func.functional_call(kernel, params, (x1, x2))
        return full, cross

    assert torch.autograd.gradcheck(fn, values, eps=1e-6, atol=1e-6)


class GPKernelTestCase:
    """Generic pytest suite for a GP kernel (``forward(x1, x2=None, diag=False)``).

    Implement ``make_kernel(self) -> nn.Module`` (inputs of ``dim`` features).
    """

    dim: int = 3
    seed: int = 0
    device: str = "cpu"

    def make_kernel(self) -> torch.nn.Module:
        raise NotImplementedError("implement make_kernel(self) -> kernel module")

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def test_matrix_is_symmetric_psd_with_matching_diag(self) -> None:
        check_gp_kernel_matrix(self.make_kernel(), self._generator(), self.device, self.dim)

    def test_batch_dims_broadcast(self) -> None:
        check_gp_kernel_batching(self.make_kernel(), self._generator(), self.dim)

    def test_gradients(self) -> None:
        check_gp_kernel_gradients(self.make_kernel(), self._generator(), self.dim)
