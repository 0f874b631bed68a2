"""Peak-memory measurement for the bounded-memory tests: the growth of the resident set
(``VmHWM`` minus ``VmRSS`` before the call, in bytes) while a call runs, measured in a
subprocess, with the size of what the call returned (outputs are linear in the total by
nature; the working memory beside them is what chunking bounds).

The subprocess sets glibc's ``MALLOC_MMAP_THRESHOLD_`` to 64 KiB, so every tensor bigger than
that is mapped on allocation and unmapped on free: the resident set then follows the live
tensors, and the peak of one call does not hide in memory an earlier call freed. The peak is
reset between calls by writing 5 to ``/proc/self/clear_refs`` (Linux). One interpreter
measures many calls, so the suite pays for one ``import torch``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_PRELUDE = """
import gc, json, sys
import torch
torch.set_num_threads(1)


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _tensor_bytes(out):
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_tensor_bytes(item) for item in out)
    return 0


def _growth(fn):
    gc.collect()
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with torch.no_grad():
        out = fn()
    peak = _status("VmHWM")
    size = _tensor_bytes(out)
    del out
    gc.collect()
    return peak - base, size
"""


def supported() -> bool:
    """Whether this platform has the ``/proc`` files the measurement needs (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_growth(
    setup: str, calls: dict[str, str], timeout: float = 300.0
) -> dict[str, tuple[int, int]]:
    """Run ``setup`` then each of ``calls`` (expressions, evaluated under ``torch.no_grad``)
    in one fresh interpreter; return, for each, its peak resident-set growth and the size of
    the tensors it returned, in bytes. Warm lazily allocated buffers up in ``setup`` (one
    small call of each function measured)."""
    lines = [_PRELUDE, textwrap.dedent(setup), "_results = {}"]
    for name, expr in calls.items():
        lines.append(f"_results[{name!r}] = _growth(lambda: {expr})")
    lines.append("print(json.dumps(_results))")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{done.stderr[-3000:]}")
    return {
        name: tuple(value)
        for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items()
    }
