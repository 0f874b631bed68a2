"""Every Python code block of the README and of the documentation site runs.

Each Markdown page is one test: its ```python blocks run in order in one namespace, as a
reader runs them top to bottom, so a block may use what an earlier block on the same page
defined (that is the only setup a block gets: the page shows it). A block preceded by the
comment ``<!-- docs-test: skip REASON -->`` is not run (the reason is required); no page
uses it unless it says why. Shell blocks are not run, but every ``configs/*.yaml`` and
``benchmarks/*.py`` they name must exist. Plots go to matplotlib's Agg backend; the global
torch seed is fixed per page, so a page's output is reproducible.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(?P<reason>\S.*?)\s*-->")
PATHS = re.compile(r"(?:configs/[\w./-]+\.yaml|benchmarks/[\w/-]+\.py)")


@dataclass
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None


def code_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with their language and opening line."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        language = match["info"].strip().split(" ")[0].lower()
        previous = next((s for s in reversed(lines[:i]) if s.strip()), "")
        skip = SKIP.search(previous)
        body, j = [], i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
        ):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        blocks.append(Block(language, i + 1, "\n".join(body) + "\n", skip and skip["reason"]))
        i = j + 1
    return blocks


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_pages_are_collected():
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 1, "no documentation pages under docs/"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_blocks_run(page: Path, tmp_path, monkeypatch):
    blocks = [b for b in code_blocks(page.read_text()) if b.language in ("python", "py")]
    runnable = [b for b in blocks if b.skip is None]
    if not runnable:
        pytest.skip("no Python blocks")
    pytest.importorskip("matplotlib").use("Agg")
    monkeypatch.chdir(tmp_path)  # files an example writes stay out of the repository
    torch.manual_seed(0)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    # global torch settings an example may change must not leak into the other tests
    dtype, threads, grad = (
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.is_grad_enabled(),
    )
    try:
        for block in runnable:  # the blocks of a page share its settings, in order
            error = None
            try:
                exec(compile(block.code, f"{_page_id(page)}:{block.line}", "exec"), namespace)
            except Exception:
                error = traceback.format_exc()
            if error is not None:
                message = f"{_page_id(page)}: the block at line {block.line} failed\n{error}"
                pytest.fail(message, False)
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_commands_name_existing_files(page: Path):
    for block in code_blocks(page.read_text()):
        if block.language in ("bash", "sh", "shell", "console"):
            for path in PATHS.findall(block.code):
                assert (ROOT / path).exists(), f"{_page_id(page)}:{block.line} names {path}"


LINK = re.compile(r"\]\((?!https?://|#|mailto:)(?P<target>[^)#\s]+)")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_point_to_files(page: Path):
    """The README's links into docs/ (and the pages' links, which mkdocs checks too)."""
    generated = {ROOT / "docs/reference" / f"{p.name}.md" for p in (ROOT / "bayestorch").iterdir()}
    generated.add(ROOT / "docs/reference/bayestorch.md")  # pages of docs/_hooks/reference.py
    for target in LINK.findall(page.read_text()):
        path = (page.parent / target).resolve()
        assert path.exists() or path in generated, f"{_page_id(page)} links to missing {target}"


def test_the_collector_sees_blocks_and_skips():
    text = "a\n```python\nx = 1\n```\n<!-- docs-test: skip needs a GPU -->\n```python\ny\n```\n"
    blocks = code_blocks(text)
    assert [(b.language, b.line, b.code, b.skip) for b in blocks] == [
        ("python", 2, "x = 1\n", None),
        ("python", 6, "y\n", "needs a GPU"),
    ]
