"""Peak memory of the batched samplers is set by the chunk, not by the total (issue 21).

For each sampler, three runs in one subprocess (see :mod:`tests.memory.peak`): ``(T, c)``,
``(4T, c)`` and ``(4T, 4c)`` for ``T`` draws (points, sequences, searches) in chunks of ``c``.
Growing the total four-fold at a fixed chunk leaves the peak where it was (up to the outputs,
which are small here); growing the chunk four-fold grows it about four-fold. Before chunking,
the DPP's LDL^T sampler held ``S N^2`` numbers (``DPP(L).sample((2000,), method="cholesky")``
with ``N = 1000`` asked for 32 GB), so the ``(4T, c)`` run peaked four times higher.
"""

from __future__ import annotations

import pytest

from tests.memory.peak import peak_growth, supported

pytestmark = pytest.mark.skipif(not supported(), reason="needs Linux /proc peak-RSS counters")

MiB = 2**20

SETUP = """
import math
from bayestorch.dpp import DPP, KDPP
from bayestorch.gp import RBF, GPRegression
from bayestorch.gumbel import stochastic_beam_search
from bayestorch.ssm import particle_filter

g = torch.Generator().manual_seed(0)
x = torch.randn(96, 2, generator=g, dtype=torch.float64)
dpp = DPP(L=2 * torch.exp(-torch.cdist(x, x).square() / 2))
phi = torch.randn(1500, 48, generator=g, dtype=torch.float64) / 48**0.25
dual = DPP(features=phi)
kdpp = KDPP(k=24, features=phi)
gx = torch.rand(64, 2, generator=g, dtype=torch.float64)
gp = GPRegression(RBF(0.5), 0.1).double().fit(gx, gx.sum(-1).sin())
xs = torch.rand(32768, 2, generator=g, dtype=torch.float64)


def init(shape, generator):
    return torch.randn(*shape, 4, generator=generator, dtype=torch.float64)


def move(x, t, generator):
    return 0.9 * x + torch.randn(x.shape, generator=generator, dtype=x.dtype)


def obs(y_t, x, t):
    return -0.5 * (y_t[:, None, :] - x).square().sum(-1)


y = torch.randn(64, 4, 4, generator=g, dtype=torch.float64)
VOCAB = 2048


def uniform(prefixes):
    return torch.full((prefixes.shape[0], VOCAB), -math.log(VOCAB), dtype=torch.float64)


bos = torch.zeros(64, dtype=torch.long)

with torch.no_grad():  # warm-up: lazily allocated buffers, first-call caches
    dpp.sample((4,), g, method="cholesky", chunk_size=2)
    dual.sample((4,), g, chunk_size=2)
    kdpp.sample((4,), g, chunk_size=2)
    gp.predict(xs[:64], chunk_size=32)
    particle_filter(y[:4], init, move, obs, 64, generator=g, chunk_size=2)
    stochastic_beam_search(uniform, bos[:4], 8, 3, generator=g, chunk_size=2)
"""

# name -> (T, c) call template; every sampler is measured at (T, c), (4T, c), (4T, 4c).
CASES = {
    "DPP cholesky": ("dpp.sample(({t},), g, method='cholesky', chunk_size={c})", 256, 64),
    "DPP dual": ("dual.sample(({t},), g, chunk_size={c})", 128, 32),
    "KDPP": ("kdpp.sample(({t},), g, chunk_size={c})", 128, 32),
    "GP predict": ("gp.predict(xs[:{t}], chunk_size={c})", 8192, 2048),
    "particle filter": (
        "particle_filter(y[:{t}], init, move, obs, 4096, generator=g, chunk_size={c})",
        16,
        4,
    ),
    "beam search": (
        "stochastic_beam_search(uniform, bos[:{t}], 8, 3, generator=g, chunk_size={c})",
        16,
        4,
    ),
}


@pytest.fixture(scope="module")
def growth():
    calls = {}
    for name, (template, t, c) in CASES.items():
        for label, (total, chunk) in RUNS.items():
            calls[f"{name}|{label}"] = template.format(t=total * t, c=chunk * c)
    return peak_growth(SETUP, calls)


RUNS = {"T,c": (1, 1), "4T,c": (4, 1), "4T,4c": (4, 4)}


@pytest.mark.parametrize("name", list(CASES))
def test_peak_memory_is_linear_in_the_chunk_not_the_total(name, growth):
    # working memory: the peak growth beside the returned tensors
    base, more, bigger = (
        growth[f"{name}|{label}"][0] - growth[f"{name}|{label}"][1] for label in RUNS
    )
    report = f"{name}: working memory {base / MiB:.1f}, {more / MiB:.1f}, {bigger / MiB:.1f} MiB"
    assert base > 2 * MiB, report  # the chunk's temporaries dominate the measurement
    assert more < 1.3 * base + MiB, report  # four times the draws, same chunk: same peak
    assert 2.5 * base < bigger < 5.5 * base, report  # four times the chunk: ~four times the peak
