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

Markers: ``statistical`` (the above), ``slow`` (seconds to minutes), ``gpu`` (needs CUDA),
``compiled`` (the compiled variant of an HMC-family test, see ``hmc_compile``).

Devices: ``pytest --device cuda`` runs the device-parametrised tests on a GPU; they are
skipped cleanly when CUDA is not available. ``--device all`` runs them on every device
present.

Compiled kernels: every test of an HMC-family kernel (HMC, NUTS, ChEES-HMC) takes the
``hmc_compile`` fixture and runs twice, eager and compiled (``compile=True``). The compiled
variant uses the ``aot_eager`` backend (the traced graph run eagerly, no code generated)
unless ``BAYESTORCH_COMPILE_BACKEND`` is set: ``BAYESTORCH_COMPILE_BACKEND=inductor make test``
runs them through the real compiler.
"""

from __future__ import annotations

import os

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
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker("compiled") and item.originalname in SLOW_WHEN_COMPILED:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator with the suite's fixed seed (tests needing another seed make their own)."""
    return torch.Generator().manual_seed(20261125)


COMPILE_BACKEND_VARIABLE = "BAYESTORCH_COMPILE_BACKEND"


def _hmc_compile(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> bool:
    if compiled and COMPILE_BACKEND_VARIABLE not in os.environ:
        monkeypatch.setenv(COMPILE_BACKEND_VARIABLE, "aot_eager")
    return compiled


# Compiled variants that take minutes under aot_eager (whose while_loop runs every operation
# through Python): also ``slow``, so ``make test`` (``-m "not (slow and compiled)"``) fits
# CI's budget; ``make test-compiled-slow`` runs them. Their eager variants stay in make test.
SLOW_WHEN_COMPILED = {
    "test_ill_conditioned_gaussian_moments",
    "test_centred_funnel_diverges_non_centred_does_not",
    "test_conjugate_posterior_mean_and_variance",
}


HMC_COMPILE_PARAMS = [
    pytest.param(False, id="eager"),
    pytest.param(True, id="compiled", marks=pytest.mark.compiled),
]


@pytest.fixture(params=HMC_COMPILE_PARAMS)
def hmc_compile(request, monkeypatch) -> bool:
    """The ``compile=`` argument of an HMC-family kernel: ``False`` (id ``eager``), then
    ``True`` (id ``compiled``). Pass it to the kernel (``NUTS(..., compile=hmc_compile)``,
    ``bt.mcmc.sample(..., compile=hmc_compile)``, ``kernel_kwargs={"compile": ...}``).

    The compiled variant runs the ``aot_eager`` backend (the transition is traced into the
    same ATen graph inductor gets, ``while_loop`` included, and that graph runs eagerly: no
    code is generated, about a second per graph instead of tens), unless the environment
    already sets ``BAYESTORCH_COMPILE_BACKEND``: ``BAYESTORCH_COMPILE_BACKEND=inductor make test``
    runs the compiled variants through the real compiler. The compiled variants carry the
    ``compiled`` marker (``-m "not compiled"`` runs the eager ones only). A test
    parametrised explicitly over ``hmc_compile`` (``indirect=["hmc_compile"]``) gets the
    same backend; mark its compiled cases ``compiled`` too."""
    return _hmc_compile(request.param, monkeypatch)


@pytest.fixture(scope="module", params=HMC_COMPILE_PARAMS)
def hmc_compile_module(request) -> bool:
    """``hmc_compile`` for module-scoped fixtures (a run shared by several tests)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _hmc_compile(request.param, monkeypatch)
