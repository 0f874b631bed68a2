"""Generalised Swendsen–Wang segmentation: sweeps per second, and time to a stable number
of segments against scikit-learn's MeanShift on the same image.

Images are random Voronoi partitions (``--segments`` regions, levels uniform in [0, 1],
Gaussian noise ``--noise``). A sweep's cost is dominated by the sequential loop over bond
components (each visit is O(#segments) tensor work), so sweeps/s depends on how many
components the bonds leave: reported alongside. "Stable" means the number of segments
stayed within ±1 over ``--window`` consecutive sweeps (cap ``--max-sweeps``).

    python benchmarks/segmentation.py --sizes 64 128 256 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import setup_device

from bayestorch.segmentation.generalised_sw import GeneralisedSwendsenWang


def voronoi(size: int, segments: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (segments, 2))
    rows, cols = np.mgrid[0:size, 0:size]
    d2 = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    return rng.uniform(0, 1, segments)[d2.argmin(-1)] + noise * rng.standard_normal((size, size))


def smooth_start(image: torch.Tensor, levels: int = 8, radius: int = 2) -> torch.Tensor:
    grey = image[None, None]
    pad = torch.nn.functional.pad(grey, (radius,) * 4, mode="replicate")
    blur = torch.nn.functional.avg_pool2d(pad, 2 * radius + 1, 1).flatten()
    cuts = torch.quantile(
        blur, torch.linspace(0, 1, levels + 1, dtype=blur.dtype, device=blur.device)[1:-1]
    )
    return torch.bucketize(blur, cuts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--prior", default="dp", choices=["dp", "pitman_yor"])
    parser.add_argument("--beta", type=float, default=1.5)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--timed-sweeps", type=int, default=3)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-sweeps", type=int, default=40)
    parser.add_argument("--meanshift", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    device = setup_device(args.device, args.threads)
    print(f"device={device} threads={torch.get_num_threads()} prior={args.prior} beta={args.beta}")
    header = (
        f"{'pixels':>8} {'components/sweep':>17} {'sweeps/s':>9} {'sweeps to stable':>17} "
        f"{'s to stable':>11} {'segments':>9} {'MeanShift s':>11} {'MS segs':>8} {'ratio':>7}"
    )
    print(header)
    for size in args.sizes:
        image = torch.as_tensor(voronoi(size, args.segments, args.noise, size), device=device)
        kernel = GeneralisedSwendsenWang(
            image,
            args.prior,
            beta=args.beta,
            **({"discount": 0.2} if args.prior == "pitman_yor" else {}),
        )
        gen = torch.Generator(device=device).manual_seed(0)
        state = kernel.init(smooth_start(image))
        history, t0, stable_at = [], time.perf_counter(), None
        for sweep in range(args.max_sweeps):
            state, info = kernel.step(state, gen)
            history.append(int(state.num_segments[0]))
            recent = history[-args.window :]
            if len(recent) == args.window and max(recent) - min(recent) <= 1:
                stable_at = sweep + 1
                break
        sync(device)
        to_stable = time.perf_counter() - t0
        comps = []
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.timed_sweeps):
            state, info = kernel.step(state, gen)
            comps.append(int(info.num_components[0]))
        sync(device)
        rate = args.timed_sweeps / (time.perf_counter() - t0)
        ms_time, ms_segs = float("nan"), -1
        if args.meanshift:
            from sklearn.cluster import MeanShift, estimate_bandwidth

            h = w = size
            rows, cols = np.mgrid[0:h, 0:w]
            y = image.cpu().numpy().ravel()
            x = np.stack(
                [(y - y.mean()) / y.std(), rows.ravel() / h / 0.2887, cols.ravel() / w / 0.2887], 1
            )
            t0 = time.perf_counter()
            bw = estimate_bandwidth(x, quantile=0.1, n_samples=500, random_state=0)
            ms_segs = int(np.unique(MeanShift(bandwidth=bw, bin_seeding=True).fit_predict(x)).size)
            ms_time = time.perf_counter() - t0
        stable = f"{stable_at}" if stable_at else f">{args.max_sweeps}"
        print(
            f"{size * size:>8} {np.mean(comps):>17.0f} {rate:>9.2f} {stable:>17} "
            f"{to_stable:>11.1f} {history[-1]:>9} {ms_time:>11.1f} {ms_segs:>8} "
            f"{to_stable / ms_time:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
