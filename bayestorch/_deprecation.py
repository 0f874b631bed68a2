"""Old import paths that keep working for one release, with a ``DeprecationWarning``.

A moved module leaves behind a stub whose module-level ``__getattr__`` is
:func:`moved_attributes`: every attribute read through the old path (``from old import
name`` included) warns and returns the object from its new home, so the warning is
emitted on each use and not only on the first import.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_attributes"]


def moved_attributes(
    old: str, new: str | Mapping[str, str], *, removed_in: str = "0.3"
) -> Callable[[str], Any]:
    """A module ``__getattr__`` forwarding names from module ``old`` to their new home.

    Args:
        old: the deprecated module's dotted name (its ``__name__``).
        new: the new module's dotted name (every public name moved there), or a mapping
            ``{name: new module}`` for a module that kept some names and lost others.
        removed_in: the version in which the old path goes away.

    Returns:
        ``__getattr__(name)``: warns ``DeprecationWarning`` naming the new path and returns
        the attribute; ``AttributeError`` for names that never lived at ``old``.
    """

    def __getattr__(name: str) -> Any:
        target = new.get(name) if isinstance(new, Mapping) else new
        if target is None or name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        module = importlib.import_module(target)
        try:
            value = getattr(module, name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{old}.{name} moved to {target}.{name}; the old path is removed in "
            f"bayestorch {removed_in}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
