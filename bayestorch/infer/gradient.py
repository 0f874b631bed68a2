"""A model's log density and gradient as one traced, compiled graph of ATen operations.

In eager PyTorch a gradient of ``ModelDensity.log_prob`` runs the handler stack, the
Python of torch.distributions and ``torch.func.vmap``'s batching rules at every call: on
small models that Python is most of the time (2-5x a hand-written density). None of it
depends on the values: tracing ``torch.func.grad_and_value`` of the density once with
``make_fx`` leaves a graph of ATen operations only, which ``torch.compile`` then fuses.

* One graph per (mode, chains, dtype, device, jacobian, ``chain_data`` layout): the trace
  runs on fake tensors (``tracing_mode="fake"``), so it never sees a value. A model whose
  Python reads one (``if x > 0``, ``.item()``, ``bool(...)``) cannot be traced: the trace
  fails and that density stays eager, with the reason (never a graph with one branch baked
  in). A graph that draws random numbers (a model sampling inside its density) is refused.
* Inputs: ``z``, the ``chain_data`` tensors and the indices of subsampled plates (drawn in
  eager at each call, as ``log_prob`` draws them), so neither is baked into the graph. The
  model's own arguments and everything it computes from them are constants of the graph.
* Validation of torch.distributions is off in the trace as in every vectorised evaluation
  (the first trace of ``ModelDensity``, with validation on, checked the observations and
  supports). Dynamo's first compilation in a process switches validation off globally;
  the setting is restored, as ``bayestorch.mcmc.compiled`` does.
* Errors: a graph call that raises (``DENSITY_ERRORS``), or whose value or gradient is not
  finite, is answered by the eager path, which raises where eager raises (a failed
  Cholesky), so ``log_prob_and_grad``'s guard rejects exactly the chains eager would.
  A compiler failure warns once and the plain traced graph is used instead.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bayestorch.mcmc.compiled import random_ops
from bayestorch.utils.autograd import SCALAR_CPU_OPTIONS, compiling

if TYPE_CHECKING:
    from bayestorch.infer.density import ModelDensity

__all__ = ["GRADIENT_MODES", "GradientGraphs", "check_gradient_mode"]

logger = logging.getLogger(__name__)

GRADIENT_MODES = ("eager", "traced", "compiled")
"""``"eager"``: autograd through ``log_prob``; ``"traced"``: the ``make_fx`` graph of the
value and gradient, run as it is (no compilation); ``"compiled"``: that graph compiled by
``torch.compile``."""

GraphFn = Callable[..., tuple[Tensor, Tensor, Tensor]]
"""``(z, *chain_data, *plate_indices) -> (log_prob, grad, finite)``; ``finite``: a 0-d bool,
whether every value and gradient is finite."""


def check_gradient_mode(mode: Any) -> str:
    """``mode`` if it is one of ``GRADIENT_MODES``, else a ``ValueError`` listing them."""
    if mode not in GRADIENT_MODES:
        raise ValueError(f"gradient mode must be one of {GRADIENT_MODES}, got {mode!r}")
    return mode


def _compile_backend() -> str:
    # bayestorch.mcmc.compiled.compile_backend, read here without importing the kernels.
    return os.environ.get("BAYESTORCH_COMPILE_BACKEND", "inductor")


class _Compiled:
    """A traced graph compiled on its first call; the plain graph if compilation fails."""

    def __init__(self, graph: torch.fx.GraphModule, owner: GradientGraphs) -> None:
        self.graph, self.owner = graph, owner
        self.fn: GraphFn | None = None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.fn is not None:
            return self.fn(*inputs)
        try:
            with compiling(quiet=True):
                backend = _compile_backend()
                options = dict[str, Any](SCALAR_CPU_OPTIONS) if backend == "inductor" else None
                compiled = torch.compile(
                    self.graph, backend=backend, dynamic=False, options=options
                )
                out = compiled(*inputs)
        except torch._dynamo.exc.TorchDynamoException as error:
            first = str(error).splitlines()[0] if str(error) else ""
            self.owner.fallback(f"torch.compile failed ({type(error).__name__}: {first})", "traced")
            self.fn = self.graph
            return self.graph(*inputs)
        self.fn = compiled
        return out


class GradientGraphs:
    """The traced (and compiled) value-and-gradient graphs of one ``ModelDensity``.

    ``get(...)`` returns the graph function for a call's layout, building it on first use,
    or ``None`` where the density must stay eager (``reasons`` says why, per layout).
    """

    def __init__(self, density: ModelDensity) -> None:
        self.density = density
        self.graphs: dict[tuple, GraphFn | None] = {}
        self.reasons: dict[tuple, str] = {}
        self.warn = True
        self._warned = False

    def fallback(self, reason: str, path: str) -> None:
        """Report once that a requested fast path was not taken."""
        message = f"ModelDensity.value_and_grad: {reason}; this density's gradient runs {path}"
        logger.info(message)
        if self.warn and not self._warned:
            self._warned = True
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    def get(
        self,
        mode: str,
        z: Tensor,
        data: dict[str, Tensor],
        indices: dict[str, Tensor],
        jacobian: bool,
    ) -> GraphFn | None:
        layout = tuple((n, v.shape, v.dtype, v.device) for n, v in data.items()) if data else ()
        key = (mode, z.shape[0], z.dtype, z.device, jacobian, layout)
        graph = self.graphs.get(key, False)
        if graph is not False:
            return graph  # type: ignore[return-value]
        graph, reason = self._trace(z, data, indices, jacobian)
        if graph is None:
            self.fallback(reason, "eagerly")
            fn: GraphFn | None = None
        elif mode == "compiled":
            fn = _Compiled(graph, self)
            reason = f"compiled ({_compile_backend()}) for {z.shape[0]} chain(s)"
        else:
            fn = graph
            reason = f"traced for {z.shape[0]} chain(s)"
        self.graphs[key], self.reasons[key] = fn, reason
        return fn

    def _trace(
        self, z: Tensor, data: dict[str, Tensor], indices: dict[str, Tensor], jacobian: bool
    ) -> tuple[torch.fx.GraphModule | None, str]:
        density = self.density
        names, plates = list(data), list(indices)

        def value_and_grad(z: Tensor, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            chain_data = dict(zip(names, inputs[: len(names)]))
            previous = density._plate_indices
            density._plate_indices = dict(zip(plates, inputs[len(names) :]))
            try:

                def summed(x: Tensor) -> tuple[Tensor, Tensor]:
                    log_prob = density._log_prob(x, chain_data, jacobian)
                    return log_prob.sum(), log_prob

                grad, (_, log_prob) = torch.func.grad_and_value(summed, has_aux=True)(z)
            finally:
                density._plate_indices = previous
            # Whether to trust this call, computed in the graph (fused by the compiler).
            finite = torch.isfinite(log_prob).all() & torch.isfinite(grad).all()
            return log_prob, grad, finite

        from torch.fx.experimental.proxy_tensor import make_fx

        density._cache_plate_ranges()  # real tensors, not fakes of the trace
        inputs = (z.detach(), *data.values(), *indices.values())
        try:
            with compiling(quiet=True), torch.enable_grad():
                graph = make_fx(value_and_grad, tracing_mode="fake", _allow_non_fake_inputs=True)(
                    *inputs
                )
        except Exception as error:  # any failure to trace: the eager path decides
            first = str(error).splitlines()[0] if str(error) else ""
            return None, (
                f"the model cannot be traced ({type(error).__name__}: {first}); a model that "
                "branches on values, calls .item()/.tolist() or builds shapes from values "
                "runs eagerly"
            )
        random = random_ops(graph)
        if random:
            return None, (
                f"the traced density draws random numbers ({', '.join(random)}): a graph "
                "would not reproduce the eager draws"
            )
        return graph, "traced"
