"""Swendsen–Wang and heat-bath Gibbs on the 2-D Ising model at T_c: speed and mixing.

There is no peer library for batched Swendsen–Wang; the comparisons are (1) against this
library's own single-site heat-bath Gibbs sweep (checkerboard, ``torch.roll``), and (2)
against a plain numpy + ``scipy.sparse.csgraph.connected_components`` Swendsen–Wang, one
replica at a time (CPU only), as a reference speed for the cluster step.

Prints replica-sweeps per second (``replicas x sweeps / wall time``) for L = 64 and 256,
then the integrated autocorrelation time of the energy at T_c for L = 64 and the ratio
Gibbs / SW, and the cost per effective draw.

    python benchmarks/swendsen_wang.py --device cpu --threads 1
    python benchmarks/swendsen_wang.py --device cuda --replicas 64 --tau-gibbs 64 40000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import setup_device

from bayestorch.mcmc.swendsen_wang import (
    ISING_CRITICAL_TEMPERATURE,
    PottsGibbs,
    SwendsenWang,
    integrated_autocorrelation_time,
    ising_energy,
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_kernel(kernel, replicas: int, sweeps: int, generator, device) -> float:
    """Replica-sweeps per second (after a few warm-up sweeps)."""
    state = kernel.init(kernel.uniform_labels(replicas, generator))
    for _ in range(3):
        state, _ = kernel.step(state, generator)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(sweeps):
        state, _ = kernel.step(state, generator)
    synchronize(device)
    return replicas * sweeps / (time.perf_counter() - start)


def scipy_sw_speed(size: int, replicas: int, sweeps: int, seed: int) -> float:
    """Reference: numpy bonds + scipy connected components, looping over replicas."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    n = size * size
    idx = np.arange(n).reshape(size, size)
    edges = np.concatenate(
        [
            np.stack([idx.ravel(), np.roll(idx, -1, 1).ravel()], 1),
            np.stack([idx.ravel(), np.roll(idx, -1, 0).ravel()], 1),
        ]
    )
    p = -np.expm1(-2.0 / ISING_CRITICAL_TEMPERATURE)
    labels = rng.integers(2, size=(replicas, n))
    start = time.perf_counter()
    for _ in range(sweeps):
        for r in range(replicas):
            z = labels[r]
            bond = (z[edges[:, 0]] == z[edges[:, 1]]) & (rng.random(len(edges)) < p)
            e = edges[bond]
            graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
            _, comp = connected_components(graph, directed=False)
            labels[r] = rng.integers(2, size=comp.max() + 1)[comp]
    return replicas * sweeps / (time.perf_counter() - start)


def tau_at_critical(kernel, sw, replicas, sweeps, burn_in, generator, size):
    """tau_int of the energy from ``replicas`` chains started from SW-equilibrated states."""
    state = sw.init(sw.uniform_labels(replicas, generator))
    for _ in range(burn_in):
        state, _ = sw.step(state, generator)
    energy = []
    start = time.perf_counter()
    for _ in range(sweeps):
        state, _ = kernel.step(state, generator)
        energy.append(ising_energy(state.labels, sw.edges) / size**2)
    wall = time.perf_counter() - start
    energy = torch.stack(energy, 1).double().cpu()
    return float(integrated_autocorrelation_time(energy.unsqueeze(-1))), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--scipy", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tau-size", type=int, default=64)
    parser.add_argument("--tau-sw", type=int, nargs=2, default=[32, 500], metavar=("R", "N"))
    # Gibbs' energy couples to the slow magnetisation mode (tau_exp of order L^2.17): chains
    # much shorter than ~20000 sweeps at L = 64 give scattered tau_int estimates.
    parser.add_argument("--tau-gibbs", type=int, nargs=2, default=[32, 20000], metavar=("R", "N"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = setup_device(args.device, args.threads)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    beta = 2.0 / ISING_CRITICAL_TEMPERATURE
    print(f"device {device}, threads {torch.get_num_threads()}, Ising at T_c, q = 2")
    print(f"replica-sweeps / s with {args.replicas} replicas, {args.sweeps} timed sweeps")
    print("| L | SW (bayestorch) | heat-bath Gibbs | numpy+scipy SW | SW / scipy SW |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        sw = SwendsenWang.lattice(size, size, beta, 2, periodic=True, device=device)
        gibbs = PottsGibbs.lattice(size, size, beta, 2, periodic=True, device=device)
        sw_speed = time_kernel(sw, args.replicas, args.sweeps, gen, device)
        gibbs_speed = time_kernel(gibbs, args.replicas, args.sweeps, gen, device)
        scipy_speed = (
            scipy_sw_speed(size, args.replicas, max(args.sweeps // 4, 1), args.seed)
            if args.scipy
            else float("nan")
        )
        print(
            f"| {size} | {sw_speed:.1f} | {gibbs_speed:.1f} | {scipy_speed:.1f} | "
            f"{sw_speed / scipy_speed:.2f} |"
        )

    size = args.tau_size
    sw = SwendsenWang.lattice(size, size, beta, 2, periodic=True, device=device)
    gibbs = PottsGibbs.lattice(size, size, beta, 2, periodic=True, device=device)
    tau_sw, wall_sw = tau_at_critical(sw, sw, *args.tau_sw, 100, gen, size)
    tau_gibbs, wall_gibbs = tau_at_critical(gibbs, sw, *args.tau_gibbs, 100, gen, size)
    # wall seconds per effective draw of one replica: wall / (R N) * 2 tau
    cost_sw = wall_sw / (args.tau_sw[0] * args.tau_sw[1]) * 2 * tau_sw
    cost_gibbs = wall_gibbs / (args.tau_gibbs[0] * args.tau_gibbs[1]) * 2 * tau_gibbs
    print(f"\nT_c, L = {size}: integrated autocorrelation time of the energy (sweeps)")
    print("| sampler | replicas x sweeps | tau_int,E | s per effective draw |")
    print("|---|---:|---:|---:|")
    print(f"| SW | {args.tau_sw[0]} x {args.tau_sw[1]} | {tau_sw:.2f} | {cost_sw:.2e} |")
    print(
        f"| Gibbs | {args.tau_gibbs[0]} x {args.tau_gibbs[1]} | {tau_gibbs:.1f} | "
        f"{cost_gibbs:.2e} |"
    )
    print(
        f"tau ratio Gibbs / SW = {tau_gibbs / tau_sw:.1f}; "
        f"cost per effective draw Gibbs / SW = {cost_gibbs / cost_sw:.1f}"
    )


if __name__ == "__main__":
    main()
