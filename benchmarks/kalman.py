"""Kalman filtering throughput: bayestorch (sequential, parallel scan) vs filterpy and pykalman.

Model: constant-velocity tracking in 2-D (state 4: position and velocity; observation 2:
position), ``dt = 1``, white-noise-acceleration process noise ``q``, measurement noise
``r I``. Sequences of length T (default 1000), float64.

Rows:
    filterpy batch_filter       one ``filterpy.kalman.KalmanFilter.batch_filter`` call per sequence
    pykalman filter             one ``pykalman.KalmanFilter.filter`` call per sequence
                                (+ ``loglikelihood``, which filters again)
    bayestorch sequential / parallel at batch 1 and at batch B (default 1000)
    bayestorch ... missing      the same with 1% of the entries NaN: covariances become
                                per-sequence (the general path), at batch ``--missing-batch``

Columns: seconds per call, sequences per second, and the per-sequence speed-up over filterpy.
Accuracy: max abs difference from pykalman's filtered means and log-likelihood (float64).

Usage::

    python benchmarks/kalman.py [--steps 1000] [--batch 1000] [--missing-batch 100]
                                [--peer-sequences 5] [--repeats 3] [--device cpu|cuda]
                                [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

import bayestorch
from bayestorch.ssm import kalman_filter

try:
    import filterpy.kalman as filterpy_kalman
except ImportError:
    filterpy_kalman = None
try:
    import pykalman
except ImportError:
    pykalman = None


def constant_velocity(q: float, r: float) -> dict[str, np.ndarray]:
    dt = 1.0
    A = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    H = np.array([[1, 0, 0, 0], [0, 1, 0, 0.0]])
    block = q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    Q = np.zeros((4, 4))
    Q[np.ix_([0, 2], [0, 2])] = block
    Q[np.ix_([1, 3], [1, 3])] = block
    return {"A": A, "H": H, "Q": Q, "R": r * np.eye(2), "m0": np.zeros(4), "P0": 10 * np.eye(4)}


def simulate(model, batch: int, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    LQ, LR = np.linalg.cholesky(model["Q"]), np.linalg.cholesky(model["R"])
    x = model["m0"] + rng.standard_normal((batch, 4)) @ np.linalg.cholesky(model["P0"]).T
    ys = np.empty((batch, steps, 2))
    for t in range(steps):
        x = x @ model["A"].T + rng.standard_normal((batch, 4)) @ LQ.T
        ys[:, t] = x @ model["H"].T + rng.standard_normal((batch, 2)) @ LR.T
    return ys


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def filterpy_run(model, ys: np.ndarray):
    kf = filterpy_kalman.KalmanFilter(dim_x=4, dim_z=2)
    kf.F, kf.H, kf.Q, kf.R = model["A"], model["H"], model["Q"], model["R"]

    def run():
        for y in ys:
            kf.x = model["m0"].reshape(4, 1).copy()
            kf.P = model["P0"].copy()
            kf.batch_filter([z.reshape(2, 1) for z in y])

    return run


def pykalman_model(model):
    A, Q = model["A"], model["Q"]
    # pykalman's initial state is x_1's prior (no prediction before the first update).
    return pykalman.KalmanFilter(
        transition_matrices=A,
        observation_matrices=model["H"],
        transition_covariance=Q,
        observation_covariance=model["R"],
        initial_state_mean=A @ model["m0"],
        initial_state_covariance=A @ model["P0"] @ A.T + Q,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--missing-batch", type=int, default=100)
    parser.add_argument("--peer-sequences", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--q", type=float, default=0.01)
    parser.add_argument("--r", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    model = constant_velocity(args.q, args.r)
    ys = simulate(model, max(args.batch, args.missing_batch, args.peer_sequences), args.steps, 0)
    t = {k: torch.as_tensor(v, device=device) for k, v in model.items()}

    def bt(y: torch.Tensor, method: str):
        return kalman_filter(y, t["A"], t["H"], t["Q"], t["R"], t["m0"], t["P0"], method=method)

    print(
        f"bayestorch {bayestorch.__version__}, torch {torch.__version__}, python "
        f"{platform.python_version()}, {device}, threads {torch.get_num_threads()}"
    )
    print(f"constant-velocity model, state 4, obs 2, T = {args.steps}, float64\n")

    rows: list[tuple[str, int, float]] = []  # (name, sequences per call, seconds per call)
    if filterpy_kalman is not None:
        k = args.peer_sequences
        seconds = timed(filterpy_run(model, ys[:k]), args.repeats)
        rows.append(("filterpy batch_filter (loop)", k, seconds))
    else:
        print("filterpy not installed: its row is skipped")
    pk = None
    if pykalman is not None:
        pk = pykalman_model(model)
        k = max(1, min(2, args.peer_sequences))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds = timed(lambda: [pk.filter(y) for y in ys[:k]], 1)
        rows.append(("pykalman filter (loop)", k, seconds))
    else:
        print("pykalman not installed: its row and the accuracy check are skipped")

    y_all = torch.as_tensor(ys, device=device)
    for method in ("sequential", "parallel"):
        for batch in (1, args.batch):
            y = y_all[:batch].contiguous()
            seconds = timed(lambda y=y, m=method: bt(y, m), args.repeats, sync)
            rows.append((f"bayestorch {method}", batch, seconds))
    rng = np.random.default_rng(1)
    y_missing = y_all[: args.missing_batch].clone()
    y_missing[torch.as_tensor(rng.random(y_missing.shape) < 0.01, device=device)] = float("nan")
    for method in ("sequential", "parallel"):
        seconds = timed(lambda m=method: bt(y_missing, m), 1, sync)
        rows.append((f"bayestorch {method}, 1% missing", args.missing_batch, seconds))

    reference = next((s / n for name, n, s in rows if name.startswith("filterpy")), None)
    print(f"{'method':36s} {'batch':>6s} {'s / call':>10s} {'seq / s':>10s} {'vs filterpy':>12s}")
    records = []
    for name, n, seconds in rows:
        per_seq = seconds / n
        ratio = reference / per_seq if reference else float("nan")
        print(f"{name:36s} {n:6d} {seconds:10.4f} {1 / per_seq:10.1f} {ratio:11.1f}x")
        records.append({"method": name, "batch": n, "seconds": seconds, "speedup": ratio})

    accuracy = {}
    if pk is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_means, _ = pk.filter(ys[0])
            ref_ll = pk.loglikelihood(ys[0])
        print("\nmax |difference| from pykalman (sequence 0):")
        for method in ("sequential", "parallel"):
            out = bt(y_all[:1], method)
            d_mean = float(np.abs(out.means[0].cpu().numpy() - ref_means).max())
            d_ll = abs(float(out.log_likelihood[0]) - ref_ll)
            accuracy[method] = {"means": d_mean, "log_likelihood": d_ll}
            print(f"  {method:10s} filtered means {d_mean:.2e}, log-likelihood {d_ll:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": records, "accuracy": accuracy}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
