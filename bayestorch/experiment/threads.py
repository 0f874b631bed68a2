"""How many CPU threads a run should use: the CPUs this process may actually run on.

``torch`` sizes its intra-op thread pool from the machine's physical cores, ignoring the
CPU affinity mask (``taskset``, a container's ``cpuset``) and the cgroup CPU quota
(``docker --cpus``, Kubernetes limits). A run allowed 1 CPU of a 2-core machine then runs 2
threads that contend for that CPU (measured in issue 21: ``make run`` took 26 s on an idle
2-core machine and 168 s beside one other single-threaded process). ``threads: auto``
(the default config key) caps torch's thread count at the smaller of the affinity mask and
the quota, shared equally among the processes of a ``torchrun`` launch on this node (a
lower count set before, e.g. by ``OMP_NUM_THREADS=1``, is kept); an integer sets it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from bayestorch.experiment.config import ConfigError

__all__ = ["available_cpus", "cgroup_cpu_limit", "resolve_threads"]

_CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: str | Path = _CGROUP) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or ``None`` without a quota.

    Reads cgroup v2's ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``), else
    cgroup v1's ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (quota ``-1``: none).
    """
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota == "max" or int(quota) <= 0 or int(period) <= 0:
        return None
    return int(quota) / int(period)


def available_cpus(cgroup_root: str | Path = _CGROUP) -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (rounded up,
    at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def resolve_threads(spec: int | str, cgroup_root: str | Path = _CGROUP) -> int:
    """The intra-op thread count for the config value ``threads``.

    ``"auto"``: torch's current count (``torch.get_num_threads()``: the physical cores, or
    what ``OMP_NUM_THREADS`` / an earlier ``torch.set_num_threads`` chose), capped at
    :func:`available_cpus` divided among the ``LOCAL_WORLD_SIZE`` processes ``torchrun``
    starts on this node (at least 1 each); a positive int: that many.

    Raises:
        ConfigError: naming ``threads`` for anything else.
    """
    if spec == "auto":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        share = max(1, available_cpus(cgroup_root) // max(1, local))
        return min(torch.get_num_threads(), share)
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 1:
        raise ConfigError(f"'threads' must be 'auto' or a positive integer, got {spec!r}")
    return spec
