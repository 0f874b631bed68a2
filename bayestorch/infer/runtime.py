"""The effect-handler stack behind the model language (NumPyro's design, in torch).

A model calls the primitives of ``bayestorch.infer.primitives``; each builds a *message*
(a small dict) and passes it through the active handlers, innermost first, then back out.
Handlers decide what a site's value is (a prior draw, a substituted value, an observation)
and what to record (a trace, a log density). With no handler active the primitives just
draw from their distributions, so a model is also an ordinary simulator.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Handler", "apply_stack"]

_STACK: list[Handler] = []


class Handler:
    """A context manager that sees every message of the model run inside it.

    ``process(msg)`` runs on the way in (innermost handler first) and may set
    ``msg["value"]``; ``postprocess(msg)`` runs on the way out (outermost last).
    """

    def __enter__(self):
        _STACK.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if _STACK and _STACK[-1] is self:
            _STACK.pop()
        else:  # exited out of order (an exception unwound several handlers): remove us
            if self in _STACK:
                _STACK.remove(self)

    def process(self, msg: dict[str, Any]) -> None:
        """Called before the site's value is decided."""

    def postprocess(self, msg: dict[str, Any]) -> None:
        """Called after the site's value is decided."""


def apply_stack(msg: dict[str, Any]) -> dict[str, Any]:
    """Send ``msg`` through the handlers and fill its ``value`` if no handler did."""
    for handler in reversed(_STACK):
        handler.process(msg)
        if msg.get("stop"):
            break
    if msg["value"] is None:
        msg["value"] = _default_value(msg)
    for handler in _STACK:
        handler.postprocess(msg)
    return msg


def _default_value(msg: dict[str, Any]) -> Any:
    kind = msg["type"]
    if kind == "sample":
        fn = msg["fn"]
        with torch.no_grad():
            return fn.sample()
    if kind == "plate":
        size, subsample_size = msg["args"]
        if subsample_size is None or subsample_size == size:
            return torch.arange(size)
        return torch.randperm(size)[:subsample_size]
    raise RuntimeError(f"no value for the {kind!r} site {msg['name']!r}")  # pragma: no cover


def active_handlers() -> tuple[Handler, ...]:
    """The handlers now active, outermost first."""
    return tuple(_STACK)
