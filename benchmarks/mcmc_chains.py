"""How bayestorch's NUTS and ChEES-HMC scale with the number of batched chains.

Prints chains x draws per second (post-warm-up draws of all chains / wall time of the whole
run, warm-up included) and the minimum bulk ESS per second, for 1 .. N chains on one device.
A GPU runs 1024 chains of a small model for about the price of one.

    python benchmarks/mcmc_chains.py --device cuda --chains 1 16 128 1024
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from sklearn.datasets import load_breast_cancer

from bayestorch.mcmc import ess_bulk, sample
from bayestorch.testing.targets import LogisticRegression, ill_conditioned_gaussian


def targets(device):
    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)
    logistic = LogisticRegression(x.to(device), torch.tensor(y, device=device))
    gaussian = ill_conditioned_gaussian(100).to(device)
    return {"gaussian100": gaussian, "logistic": logistic}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--chains", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--kernels", nargs="+", default=["nuts", "chees"])
    parser.add_argument("--targets", nargs="+", default=["gaussian100", "logistic"])
    parser.add_argument("--num-warmup", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    print(f"device {device}, warm-up {args.num_warmup}, samples {args.num_samples}, float64")
    header = ["target", "kernel", "chains", "wall s", "chains x draws / s", "min bulk ESS / s"]
    print("| " + " | ".join(header + ["grads / draw"]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, target in targets(device).items():
        if name not in args.targets:
            continue
        for kernel in args.kernels:
            for chains in args.chains:
                g = torch.Generator(device=device).manual_seed(0)
                x0 = 0.1 * torch.randn(
                    chains, target.dim, generator=g, device=device, dtype=torch.float64
                )
                synchronize(device)
                start = time.perf_counter()
                result = sample(
                    target.log_prob,
                    x0,
                    kernel,
                    num_warmup=args.num_warmup,
                    num_samples=args.num_samples,
                    generator=g,
                    progress=False,
                )
                synchronize(device)
                wall = time.perf_counter() - start
                draws = chains * args.num_samples
                ess = float(ess_bulk(result.samples).min())
                steps = float(result.stats["num_steps"].double().mean())
                row = dict(
                    target=name,
                    kernel=kernel,
                    chains=chains,
                    wall=wall,
                    draws_per_s=draws / wall,
                    ess_per_s=ess / wall,
                    grads_per_draw=steps,
                )
                rows.append(row)
                print(
                    f"| {name} | {kernel} | {chains} | {wall:.1f} | {draws / wall:,.0f} | "
                    f"{ess / wall:,.1f} | {steps:.1f} |",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
