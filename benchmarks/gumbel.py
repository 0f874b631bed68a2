"""Gumbel-softmax forward + backward: bayestorch vs ``torch.nn.functional.gumbel_softmax``; and
stochastic beam search steps per second.

Rows (each: draw the noise, relax, backward of ``(y * w).sum()``; logits ``(rows, cols)``):
    floor: rand + softmax     ``torch.rand`` of the shape, then softmax forward + backward: the
                              least any exact method can cost (it needs one uniform per entry)
    torch F.gumbel_softmax    torch's (noise by ``exponential_``, then log and softmax)
    bayestorch tau=1          ``bt.gumbel.gumbel_softmax(logits, 1.0, generator=g)``
    bayestorch tau=0.5        the general-temperature path
    bayestorch hard           straight-through (exact one-hot forward), tau = 0.5
    torch hard                ``F.gumbel_softmax(..., hard=True)``, tau = 0.5

Then stochastic beam search on a random "language model" (a fixed random table of next-token
logits indexed by the last token): steps per second for a batch of searches.

Timings interleave the methods (A B C ... A B C ...) so machine noise hits all alike; each
figure is the median over ``--repeats`` rounds.

Usage::

    python benchmarks/gumbel.py [--rows 4096] [--cols 1000] [--repeats 15] [--tau 1.0]
                                [--device cpu|cuda] [--threads N] [--beam-batch 256]
                                [--beam-size 8] [--beam-vocab 64] [--beam-len 32] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import setup_device

import bayestorch
from bayestorch.gumbel import gumbel_softmax, stochastic_beam_search


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def methods(logits: torch.Tensor, weights: torch.Tensor, tau: float, generator):
    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            logits.grad = None
            (fn(logits) * weights).sum().backward()

        return step

    def floor(x):
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.softmax(x + u, -1)

    return {
        "floor: rand + softmax": run(floor),
        f"torch F.gumbel_softmax tau={tau:g}": run(lambda x: F.gumbel_softmax(x, tau=tau)),
        f"bayestorch tau={tau:g}": run(lambda x: gumbel_softmax(x, tau, generator=generator)),
        "bayestorch tau=0.5": run(lambda x: gumbel_softmax(x, 0.5, generator=generator)),
        "bayestorch hard, tau=0.5": run(
            lambda x: gumbel_softmax(x, 0.5, hard=True, generator=generator)
        ),
        "torch hard, tau=0.5": run(lambda x: F.gumbel_softmax(x, tau=0.5, hard=True)),
    }


def time_interleaved(rows: dict[str, Callable[[], None]], repeats: int, device) -> dict:
    for step in rows.values():  # warm-up
        step()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, step in rows.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def beam_benchmark(args, device, generator) -> dict:
    g = torch.Generator(device=device).manual_seed(1)
    table = torch.log_softmax(
        torch.randn(args.beam_vocab, args.beam_vocab, generator=g, device=device) * 2, -1
    )

    def step_fn(prefixes):
        return table[prefixes[:, -1]]

    bos = torch.zeros(args.beam_batch, dtype=torch.long, device=device)
    stochastic_beam_search(step_fn, bos, args.beam_size, 2, 1, generator=generator)  # warm-up
    times = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        stochastic_beam_search(
            step_fn, bos, args.beam_size, args.beam_len, eos=1, generator=generator
        )
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "steps_per_second": args.beam_len / seconds,
        "sequences_per_second": args.beam_batch * args.beam_size / seconds,
        "seconds_per_search_batch": seconds,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=1000)
    p.add_argument("--tau", type=float, default=1.0, help="temperature of the headline rows")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", type=str, default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--beam-batch", type=int, default=256, help="independent searches at once")
    p.add_argument("--beam-size", type=int, default=8)
    p.add_argument("--beam-vocab", type=int, default=64)
    p.add_argument("--beam-len", type=int, default=32)
    p.add_argument("--json", type=str, default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    generator = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(args.rows, args.cols, device=device, requires_grad=True)
    weights = torch.randn(args.rows, args.cols, device=device)
    print(
        f"bayestorch {bayestorch.__version__}, torch {torch.__version__}, {platform.machine()}, "
        f"device {device}, threads {torch.get_num_threads()}"
    )
    print(f"gumbel-softmax forward + backward on ({args.rows}, {args.cols}) float32 logits")
    rows = methods(logits, weights, args.tau, generator)
    medians = time_interleaved(rows, args.repeats, device)
    torch_name = f"torch F.gumbel_softmax tau={args.tau:g}"
    header = f"{'method':<34} {'ms':>9} {'torch / this':>13} {'this / floor':>13}"
    print(header)
    print("-" * len(header))
    floor = medians["floor: rand + softmax"]
    for name, seconds in medians.items():
        reference = medians["torch hard, tau=0.5"] if "hard" in name else medians[torch_name]
        print(
            f"{name:<34} {seconds * 1e3:>9.2f} {reference / seconds:>12.2f}x "
            f"{seconds / floor:>12.2f}x"
        )
    beam = beam_benchmark(args, device, generator)
    print(
        f"\nstochastic beam search: batch {args.beam_batch} x beam {args.beam_size}, vocab "
        f"{args.beam_vocab}, {args.beam_len} steps: {beam['steps_per_second']:.1f} steps/s, "
        f"{beam['sequences_per_second']:.0f} sequences/s"
    )
    result = {
        "args": vars(args),
        "ms": {name: s * 1e3 for name, s in medians.items()},
        "speedup_vs_torch": medians[torch_name] / medians[f"bayestorch tau={args.tau:g}"],
        "beam": beam,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
