"""DPP sampling and greedy MAP: bayestorch.dpp against DPPy, side by side.

Cases (float64 on both sides, the same kernels):

* exact DPP from an RBF L-ensemble on ``N`` uniform points in the unit square, for each
  ``--sizes``: the first sample (eigendecomposition + sampling) and later samples (the
  eigendecomposition cached on both sides). bayestorch also reports the per-sample time
  when ``--batch`` samples are drawn as one batch (``sample((B,))``, what DPPBatchSampler
  does), against DPPy's single draws (it has no batched sampler);
* the k-DPP (``--k``) of the same kernels, later samples (both reuse the cached spectrum);
* the low-rank k-DPP from features ``Phi`` (``--lowrank-n`` x ``--lowrank-d``): first and
  later samples; DPPy gets ``L_gram_factor = Phi^T``;
* greedy MAP (Chen, Zhang & Zhou 2018) with ``k = --k``: DPPy has none, so the row shows
  bayestorch alone with its time per ``N k^2`` (flat when the cost is ``O(N k^2)``).

Usage::

    python benchmarks/dpp.py [--sizes 500,2000,5000] [--k 64] [--lengthscale 0.1]
                             [--lowrank-n 10000] [--lowrank-d 64] [--repeats 5] [--batch 20]
                             [--threads 1] [--json PATH]

Times are medians over ``--repeats`` single draws (first samples: one draw each). DPPy is
skipped with a message when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import torch

from bayestorch.dpp import DPP, KDPP, greedy_map

try:
    from dppy.finite_dpps import FiniteDPP
except ImportError:  # the DPPy columns are skipped
    FiniteDPP = None


def rbf_points(n: int, lengthscale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    return torch.exp(-torch.cdist(x, x).square() / (2 * lengthscale**2))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn, repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def ratio(theirs: float | None, ours: float) -> str:
    return "-" if theirs is None else f"{theirs / ours:.1f}x"


def bench_full_kernel(n: int, args, g: torch.Generator, rng, report) -> None:
    """DPP first and later samples, k-DPP later samples and greedy MAP on one RBF kernel."""
    k, repeats = args.k, args.repeats
    L = rbf_points(n, args.lengthscale, args.seed)
    dpp = DPP(L=L, validate_args=False)
    first = timed(lambda: dpp.sample(generator=g))  # eigendecomposition + draw
    later = median_time(lambda: dpp.sample(generator=g), repeats)
    batched = timed(lambda: dpp.sample((args.batch,), generator=g)) / args.batch
    size = float(dpp.expected_size)
    peer = None
    theirs_first = theirs_later = None
    if FiniteDPP is not None:
        peer = FiniteDPP("likelihood", L=L.numpy())
        theirs_first = timed(lambda: peer.sample_exact(mode="GS", random_state=rng))
        theirs_later = median_time(lambda: peer.sample_exact(mode="GS", random_state=rng), repeats)
    report(f"DPP N={n} first sample (eigh + draw)", first, theirs_first, f"E|A|={size:.0f}")
    report(f"DPP N={n} later sample", later, theirs_later)
    report(f"DPP N={n} later, batch of {args.batch} (per draw)", batched, theirs_later)
    if k > n:
        return
    kdpp = KDPP(L, k, spectrum=dpp.spectrum, validate_args=False)
    kdpp.sample(generator=g)  # builds the log-ESP table once
    ours_k = median_time(lambda: kdpp.sample(generator=g), repeats)
    ours_kb = timed(lambda: kdpp.sample((args.batch,), generator=g)) / args.batch
    theirs_k = None
    if peer is not None:
        peer.sample_exact_k_dpp(k, mode="GS", random_state=rng)
        theirs_k = median_time(
            lambda: peer.sample_exact_k_dpp(k, mode="GS", random_state=rng), repeats
        )
    report(f"k-DPP N={n} k={k} later sample", ours_k, theirs_k)
    report(f"k-DPP N={n} k={k} later, batch of {args.batch}", ours_kb, theirs_k)
    ours_map = median_time(lambda: greedy_map(L, k), repeats)
    note = f"{ours_map / (n * k * k) * 1e9:.2f} ns per N k^2"
    report(f"greedy MAP N={n} k={k}", ours_map, None, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000,5000")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--lengthscale", type=float, default=0.1)
    parser.add_argument("--lowrank-n", type=int, default=10_000)
    parser.add_argument("--lowrank-d", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=20, help="draws per call, batched rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sizes = [int(s) for s in args.sizes.split(",")]
    k, repeats = args.k, args.repeats
    if FiniteDPP is None:
        print("DPPy is not installed (pip install dppy): its columns are skipped")
    rows: list[dict] = []

    def report(case: str, ours: float, theirs: float | None, note: str = "") -> None:
        rows.append({"case": case, "bayestorch_s": ours, "dppy_s": theirs, "note": note})
        print(f"{case:<44} {fmt(ours):>10} {fmt(theirs):>10} {ratio(theirs, ours):>8}  {note}")

    print(f"torch {torch.__version__}, {args.threads} thread(s), float64, CPU")
    print(f"{'case':<44} {'bayestorch':>10} {'DPPy':>10} {'speedup':>8}")
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    for n in sizes:
        bench_full_kernel(n, args, g, rng, report)

    n, d = args.lowrank_n, args.lowrank_d
    phi = torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    holder: dict = {}

    def build_and_draw():
        holder["kdpp"] = KDPP(k=min(k, d), features=phi, validate_args=False)
        holder["kdpp"].sample(generator=g)

    first = timed(build_and_draw)
    later = median_time(lambda: holder["kdpp"].sample(generator=g), repeats)
    batched = timed(lambda: holder["kdpp"].sample((args.batch,), generator=g)) / args.batch
    theirs_first = theirs_later = None
    if FiniteDPP is not None:
        peer = FiniteDPP("likelihood", L_gram_factor=phi.numpy().T)
        theirs_first = timed(lambda: peer.sample_exact_k_dpp(min(k, d), random_state=rng))
        theirs_later = median_time(
            lambda: peer.sample_exact_k_dpp(min(k, d), random_state=rng), repeats
        )
    case = f"low-rank k-DPP N={n} d={d} k={min(k, d)}"
    report(f"{case} first", first, theirs_first)
    report(f"{case} later", later, theirs_later)
    report(f"{case} later, batch of {args.batch}", batched, theirs_later)
    ours_map = median_time(lambda: greedy_map(features=phi, k=min(k, d)), repeats)
    report(f"greedy MAP features N={n} d={d} k={min(k, d)}", ours_map, None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
