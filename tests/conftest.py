"""Test conventions shared by the whole suite.

Statistical-test contract
-------------------------
A statistical test asserts on a random outcome. Each such assertion:

* declares its failure rate: the probability that a *correct* implementation fails it
  (default ``1e-3``; see :mod:`bayestorch.testing`);
* compares a p-value or a z-score against that rate, never a hand-tuned tolerance;
* uses a fixed seed, so CI is deterministic. A failing seed may be changed once, in a
  commit that says so; a test that passes only for a lucky seed is a bug report;
* is sized so that a subtly wrong sampler fails it (the test says which wrong variant
  it rejects, or has a sibling test that shows it).

Markers: ``statistical`` (the above), ``slow`` (seconds to minutes), ``gpu`` (needs CUDA).

Devices: ``pytest --device cuda`` runs the device-parametrised tests on a GPU; they are
skipped cleanly when CUDA is not available. ``--device all`` runs them on every device
present.
"""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config):
    # The suite's tensors are small: intra-op threads only add OpenMP/BLAS spin-waiting,
    # which on a busy 2-core CI machine made the 8-chain MCMC tests 4x slower. Thread count
    # changes no result a test relies on (reproducibility is checked within one process).
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        help="device for device-parametrised tests: cpu, cuda, cuda:N or all",
    )


def _requested_devices(config) -> list[str]:
    option = config.getoption("--device")
    if option == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [option]


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", _requested_devices(metafunc.config), indirect=True)


@pytest.fixture
def device(request) -> torch.device:
    """The torch device a device-parametrised test runs on."""
    name = request.param
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return dev


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with the suite's fixed seed (tests needing another seed make their own)."""
    return torch.Generator().manual_seed(20261125)
