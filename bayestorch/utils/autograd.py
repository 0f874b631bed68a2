"""Autograd helpers: a batched log density and its gradient in one call."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["CompiledLogProb", "LogProbFn", "log_prob_and_grad"]

LogProbFn = Callable[[Tensor], Tensor]
"""Maps positions ``(chains, dim)`` to unnormalised log densities ``(chains,)``."""


def check_log_prob_output(log_prob: Tensor, position: Tensor) -> None:
    """Raise a clear error when a log density has the wrong type, shape or dtype.

    Only shapes are checked (no host synchronisation); values are checked where a caller
    can afford it (kernel ``init``)."""
    if not isinstance(log_prob, Tensor):
        raise TypeError(
            f"log_prob_fn must return a torch.Tensor of shape ({position.shape[0]},), "
            f"got {type(log_prob).__name__}"
        )
    if log_prob.shape != position.shape[:1]:
        raise ValueError(
            f"log_prob_fn must map positions of shape (chains, dim) = {tuple(position.shape)} "
            f"to log densities of shape (chains,) = ({position.shape[0]},), got shape "
            f"{tuple(log_prob.shape)}; sum over the event dims, keep the chain dim"
        )
    if not log_prob.is_floating_point():
        raise TypeError(f"log_prob_fn must return a floating tensor, got {log_prob.dtype}")


def log_prob_and_grad(log_prob_fn: LogProbFn, position: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate ``log_prob_fn`` and its gradient at every chain's position in one backward pass.

    Chains are independent, so the gradient of the sum over chains is each chain's own
    gradient. The results are detached: a sampler's trajectory is not differentiated.

    Shape:
        ``position``: ``(chains, dim)``; returns ``(chains,)`` and ``(chains, dim)``.
    """
    value_and_grad = getattr(log_prob_fn, "value_and_grad", None)
    if value_and_grad is not None:
        log_prob, grad = value_and_grad(position.detach())
        check_log_prob_output(log_prob, position)
        return log_prob, grad
    with torch.enable_grad():
        x = position.detach().requires_grad_(True)
        log_prob = log_prob_fn(x)
        check_log_prob_output(log_prob, x)
        if not log_prob.requires_grad:
            # A log density that does not depend on the position (e.g. constant): zero gradient.
            return log_prob.detach(), torch.zeros_like(x)
        (grad,) = torch.autograd.grad(log_prob.sum(), x)
    return log_prob.detach(), grad.detach()


class CompiledLogProb:
    """A log density whose value and gradient are computed by one ``torch.compile``d function.

    ``torch.func.grad_and_value`` turns the batched log density into a pure function of the
    positions, which ``torch.compile`` fuses into a few kernels: on small models this removes
    most of eager PyTorch's per-operation overhead (e.g. 8x on eight schools on CPU). The first
    call compiles (seconds); a new number of chains or dtype recompiles once. The log density
    must be functional (no in-place ops on its input, no ``.item()``).

    Calling the object evaluates the plain (eager) log density;
    ``bayestorch.utils.log_prob_and_grad`` uses ``value_and_grad``.

    Shape:
        ``(chains, dim) -> (chains,)`` and ``(chains, dim)``.
    """

    def __init__(self, log_prob_fn: LogProbFn, **compile_kwargs) -> None:
        self.log_prob_fn = log_prob_fn

        def summed(x: Tensor):
            log_prob = log_prob_fn(x)
            return log_prob.sum(), log_prob

        grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

        def value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
            grad, (_, log_prob) = grad_and_value(x)
            return log_prob, grad

        compile_kwargs.setdefault("dynamic", False)
        self.value_and_grad = torch.compile(value_and_grad, **compile_kwargs)

    def __call__(self, x: Tensor) -> Tensor:
        return self.log_prob_fn(x)
