"""Packaging: the wheel holds the library only, with its type marker.

The wheel is built from a copy of the package sources (an in-tree build would reuse a stale
``build/`` folder), without dependencies and without build isolation (setuptools comes from
the test extra), then installed with ``pip --target`` into an empty folder: what a
fresh virtualenv's ``pip install .`` puts into site-packages, without resolving torch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bayestorch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "bayestorch", src / "bayestorch", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        ROOT / "experiments", src / "experiments", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    (found,) = out.glob("bayestorch-*.whl")
    return found


def test_wheel_holds_only_bayestorch_and_its_type_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"bayestorch", f"bayestorch-{bayestorch.__version__}.dist-info"}, top
    assert "bayestorch/py.typed" in names
    assert "bayestorch/segmentation/generalised_sw.py" in names  # subpackages included
    assert not any(name.startswith("experiments") for name in names)


def test_install_puts_no_other_top_level_package(wheel, tmp_path):
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    installed = {p.name for p in target.iterdir() if p.name != "bin"}
    packages = {name for name in installed if not name.endswith(".dist-info")}
    assert packages == {"bayestorch"}, installed
    top_level = target / f"bayestorch-{bayestorch.__version__}.dist-info" / "top_level.txt"
    if top_level.exists():
        assert top_level.read_text().split() == ["bayestorch"]
