"""MkDocs hook: the API reference, generated from bayestorch's list of subpackages.

One page per subpackage in ``bayestorch.__all__`` (a new subpackage gets its page without
editing the docs). A page renders the subpackage's docstring and every name of its
``__all__``; then, for each of its modules whose ``__all__`` holds names the subpackage does
not re-export (the functional cores, the named tuples of states and infos), a section with
those names. ``tests/docs/test_api_reference.py`` checks that this covers every ``__all__``.
Deprecated module paths (stubs without ``__all__``) are left out.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import warnings
from types import ModuleType

NAV_TITLE = "API reference"


def _import(name: str) -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def subpackages() -> list[str]:
    """The documented subpackages: the packages under ``bayestorch/``, in name order."""
    import bayestorch

    return sorted(info.name for info in pkgutil.iter_modules(bayestorch.__path__) if info.ispkg)


def top_level_names() -> list[str]:
    """Names of ``bayestorch.__all__`` that are neither subpackages nor dunders
    (``bt.sample``, ``bt.plate``, ...: shortcuts documented on the top-level page)."""
    import bayestorch

    packages = set(subpackages())
    return [n for n in bayestorch.__all__ if not n.startswith("_") and n not in packages]


def top_level_homes() -> dict[str, str]:
    """``{name: dotted path of its definition}`` for :func:`top_level_names` (they are
    provided lazily by ``bayestorch.__getattr__``, which static analysis cannot follow)."""
    import bayestorch

    homes = {}
    for name in top_level_names():
        obj = getattr(bayestorch, name)
        homes[name] = f"{obj.__module__}.{obj.__qualname__}"
    return homes


def _directive(module: str, members: list[str], heading: bool) -> str:
    listed = "".join(f"\n        - {name}" for name in members)
    return (
        f"::: {module}\n"
        "    options:\n"
        f"      show_root_heading: {str(heading).lower()}\n"
        f"      show_root_toc_entry: {str(heading).lower()}\n"
        f"      members:{listed if members else ' []'}\n"
    )


def sections(subpackage: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` rendered on a subpackage's page, the subpackage first."""
    package = _import(f"bayestorch.{subpackage}")
    exported = {name: getattr(package, name) for name in package.__all__}
    out = [(package.__name__, sorted(package.__all__, key=str.lower))]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = _import(info.name)
        extra = [
            name
            for name in getattr(module, "__all__", ())
            if name not in exported or exported[name] is not getattr(module, name)
        ]
        if extra:
            out.append((info.name, sorted(extra, key=str.lower)))
    return out


def reference_pages() -> dict[str, str]:
    """``{path under docs/: Markdown}`` for every subpackage page."""
    top = [
        "# `bayestorch`\n",
        "Shortcuts at the top level (`bt.sample`, ...), each documented from its module.\n",
    ]
    for home in top_level_homes().values():
        options = "    options:\n      show_root_heading: true\n      show_root_full_path: false\n"
        top.append(f"::: {home}\n{options}")
    pages = {"reference/bayestorch.md": "\n".join(top)}
    for sub in subpackages():
        parts = [f"# `bayestorch.{sub}`\n"]
        for i, (module, names) in enumerate(sections(sub)):
            if i:
                parts.append(f"## `{module}`\n")
            parts.append(_directive(module, names, heading=False))
        pages[f"reference/{sub}.md"] = "\n".join(parts)
    return pages


# -- MkDocs events ------------------------------------------------------------------------
_PAGES: dict[str, str] = {}


def on_config(config):
    _PAGES.clear()
    _PAGES.update(reference_pages())
    entries = [
        {"bayestorch" if path.endswith("/bayestorch.md") else f"bayestorch.{path[10:-3]}": path}
        for path in _PAGES
    ]
    for item in config["nav"]:
        if isinstance(item, dict) and NAV_TITLE in item:
            item[NAV_TITLE] = ["reference/index.md", *entries]
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    for path, content in _PAGES.items():
        files.append(File.generated(config, path, content=content))
    return files


# Sphinx roles in the docstrings (":class:`Foo`", ":func:`~a.b.c`") render as Markdown code
# after a literal role name; drop the role, and shorten a "~"-prefixed path to its last part.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")


def on_page_content(html, page, config, files):
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
