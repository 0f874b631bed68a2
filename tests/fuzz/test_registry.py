"""Every public entry point of bayestorch has a fuzz case or a justified, checked exemption."""

from __future__ import annotations

import inspect
import types

import pytest
from fuzzlib import REGISTRY, Case, Exempt
from registry import load_cases, public_names, subpackages

load_cases()
PUBLIC = public_names()


def _canonical(name: str) -> str | None:
    """The registered name of ``name``'s object (an alias re-exported elsewhere counts)."""
    if name in REGISTRY:
        return name
    obj = PUBLIC[name]
    for other in REGISTRY:
        if other in PUBLIC and PUBLIC[other] is obj and not isinstance(obj, (int, float, str)):
            return other
    return None


def test_every_subpackage_has_public_names():
    empty = [sub for sub in subpackages() if not any(n.startswith(sub + ".") for n in PUBLIC)]
    assert not empty, f"subpackages without __all__ (nothing to fuzz): {empty}"


def test_every_public_name_is_registered():
    missing = sorted(name for name in PUBLIC if _canonical(name) is None)
    assert not missing, (
        "public names with no fuzz case in tests/fuzz/fuzz_*.py (add a case, or an exemption "
        f"with its reason): {missing}"
    )


def test_no_stale_registry_entries():
    stale = sorted(name for name in REGISTRY if name not in PUBLIC)
    assert not stale, f"registered names that are no longer public: {stale}"


def _is_namedtuple(obj) -> bool:
    return inspect.isclass(obj) and issubclass(obj, tuple) and hasattr(obj, "_fields")


_KIND_CHECKS = {
    "namedtuple": _is_namedtuple,
    "constant": lambda obj: not callable(obj) or isinstance(obj, (int, float, str, dict, tuple)),
    "exception": lambda obj: inspect.isclass(obj) and issubclass(obj, BaseException),
    "module": lambda obj: isinstance(obj, types.ModuleType),
    "type": lambda obj: not inspect.isfunction(obj),
    "protocol": inspect.isclass,
    "dataclass": lambda obj: inspect.isclass(obj) and hasattr(obj, "__dataclass_fields__"),
}


@pytest.mark.parametrize(
    "name", sorted(n for n, e in REGISTRY.items() if isinstance(e, Exempt) and n in PUBLIC)
)
def test_exemption_is_what_it_claims(name):
    entry = REGISTRY[name]
    assert entry.kind in _KIND_CHECKS, f"unknown exemption kind {entry.kind!r}"
    assert _KIND_CHECKS[entry.kind](PUBLIC[name]), f"{name} is not a {entry.kind}"
    assert len(entry.reason) > 10, "an exemption says why"


def test_cases_are_cases():
    assert all(isinstance(e, (Case, Exempt)) for e in REGISTRY.values())
