"""What every benchmark script does first (imported as ``_common``: scripts run from here)."""

from __future__ import annotations

import sys

import torch


def setup_device(device_name: str, threads: int | None) -> torch.device:
    """Apply ``--threads`` and return ``--device``, falling back to the CPU (with a note on
    stderr) when CUDA is requested but absent."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available; running on cpu", file=sys.stderr)
        device = torch.device("cpu")
    return device
