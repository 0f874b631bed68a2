"""Discovery of bayestorch's public names and the loading of their fuzz cases."""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from pathlib import Path

import bayestorch

_HERE = Path(__file__).parent


def load_cases() -> None:
    """Import every ``fuzz_*.py`` module beside this one (each registers its cases)."""
    for path in sorted(_HERE.glob("fuzz_*.py")):
        importlib.import_module(path.stem)


def subpackages() -> list[str]:
    """Every subpackage of bayestorch, found on disk (new ones are picked up automatically)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(bayestorch.__path__)
        if info.ispkg and not info.name.startswith("_")
    )


def public_names() -> dict[str, object]:
    """``{"subpackage.Name": object}`` for each name in a subpackage's ``__all__``, plus
    ``{"bayestorch.name": object}`` for the top-level functions (subpackages and
    ``__version__`` excluded). Deprecated aliases are resolved with their warning silenced."""
    names: dict[str, object] = {}
    top = bayestorch
    for name in getattr(top, "__all__", []):
        if name == "__version__" or name in subpackages():
            continue
        names[f"bayestorch.{name}"] = getattr(top, name)
    for sub in subpackages():
        module = importlib.import_module(f"bayestorch.{sub}")
        for name in getattr(module, "__all__", []):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                names[f"{sub}.{name}"] = getattr(module, name)
    return names
