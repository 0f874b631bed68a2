"""Thread count of a run from the CPUs the process may use (issue 21, section 6).

Module under test: ``bayestorch.experiment.threads`` (and its use by ``RunContext``).
"""

from __future__ import annotations

import os

import pytest
import torch

from bayestorch.experiment import ConfigError, ExperimentConfig, RunContext
from bayestorch.experiment.config import config_from_dict
from bayestorch.experiment.threads import available_cpus, cgroup_cpu_limit, resolve_threads


@pytest.fixture
def many_torch_threads():
    """torch at 8 threads (as on an 8-core machine) for the test, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(8)
    yield
    torch.set_num_threads(before)


def _cgroup_v2(root, text):
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def test_cgroup_v2_and_v1_quota(tmp_path):
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path / "a", "150000 100000\n")) == 1.5
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path / "b", "max 100000\n")) is None
    v1 = tmp_path / "c" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "c") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "c") is None
    assert cgroup_cpu_limit(tmp_path / "nothing") is None


def test_available_cpus_is_the_affinity_mask_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert available_cpus(tmp_path / "none") == 4
    assert available_cpus(_cgroup_v2(tmp_path / "a", "150000 100000")) == 2  # 1.5 -> 2
    assert available_cpus(_cgroup_v2(tmp_path / "b", "50000 100000")) == 1


def test_auto_threads_follow_the_cpus_the_process_may_use(
    tmp_path, monkeypatch, many_torch_threads
):
    # Before: the experiment shell kept torch's default (all physical cores) whatever the
    # affinity mask or quota allowed.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_threads("auto", tmp_path / "none") == 2
    assert resolve_threads("auto", _cgroup_v2(tmp_path / "a", "100000 100000")) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes share the 2 CPUs
    assert resolve_threads("auto", tmp_path / "none") == 1
    assert resolve_threads(3) == 3


def test_auto_keeps_a_lower_count_chosen_before(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # e.g. OMP_NUM_THREADS=1
    try:
        assert resolve_threads("auto", tmp_path / "none") == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_thread_counts_are_named(bad):
    with pytest.raises(ConfigError, match="'threads'"):
        resolve_threads(bad)


@pytest.mark.parametrize("bad", ["many", 1.5, True])
def test_bad_threads_config_values_are_named(bad):
    with pytest.raises(ConfigError, match="'threads'"):
        config_from_dict(ExperimentConfig, {"experiment": "x", "threads": bad})


def test_run_context_sets_torch_threads_from_the_config(tmp_path, many_torch_threads):
    config = ExperimentConfig(
        experiment="x", device="cpu", threads=3, output_dir=str(tmp_path / "run")
    )
    context = RunContext(config)
    assert context.threads == 3 and torch.get_num_threads() == 3
    assert config_from_dict(ExperimentConfig, {"experiment": "x"}).threads == "auto"
