"""Throughput at 1 and N processes under torch.distributed (gloo on CPU, nccl on GPUs).

Two workloads, each run in a fresh group of P processes (``torch.multiprocessing`` spawn
on loopback, the environment torchrun would set) for every P in ``--procs``:

* training: the digits VAE of ``experiments/vae.py`` under DistributedDataParallel, a
  global batch of ``--batch-size`` images split over the ranks; images per second over
  ``--steps`` optimiser steps (after 5 untimed ones);
* MCMC: ``bayestorch.mcmc.sample`` with ``--chains`` NUTS chains on a 100-d
  ill-conditioned Gaussian, in ``chain_groups = max(--procs)`` independently seeded groups
  split over the ranks, so every row does the *same* computation (bit-identical draws,
  checked) and the ratio is the parallel speed-up alone; post-warm-up draws of all chains
  per second of the whole run (warm-up included, results gathered).

The scaling ratio is throughput(P) / throughput(1) from the same invocation. Every process
gets ``--threads`` intra-op threads (default 1), so P processes use P cores: on a machine
with fewer free cores than processes, the ratio measures contention, not the library.

    python benchmarks/distributed.py --procs 1 2
    python benchmarks/distributed.py --device cuda --procs 1 2 4 8   # one GPU per process
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from bayestorch.experiment import distributed
from bayestorch.experiment.data import ImageDataConfig, load_binarized
from bayestorch.mcmc.sample import sample
from bayestorch.testing.targets import ill_conditioned_gaussian
from bayestorch.vi import VAE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train(args, device: torch.device) -> float:
    world, rank = distributed.world_size(), distributed.rank()
    train_x, _, _ = load_binarized(ImageDataConfig(), device)
    torch.manual_seed(0)
    model = VAE(train_x.shape[1], 2, [256, 128]).to(device)
    wrapped = distributed.wrap_model(model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shuffle = torch.Generator(device=device).manual_seed(0)
    noise = torch.Generator(device=device).manual_seed(1 + rank)
    order = torch.cat(
        [torch.randperm(len(train_x), generator=shuffle, device=device) for _ in range(50)]
    )
    batches = order.split(args.batch_size)

    def step(index: torch.Tensor) -> None:
        shard = index.tensor_split(world)[rank]
        loss = -wrapped(train_x[shard], generator=noise).sum() * (world / len(index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for index in batches[:5]:
        step(index)
    _synchronize(device)
    distributed.barrier()
    start = time.perf_counter()
    for index in batches[5 : 5 + args.steps]:
        step(index)
    _synchronize(device)
    distributed.barrier()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def _mcmc(args, device: torch.device) -> float:
    target = ill_conditioned_gaussian(100).to(device)
    x0 = torch.randn(
        args.chains, 100, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).to(device)
    distributed.barrier()
    start = time.perf_counter()
    result = sample(
        target.log_prob,
        x0,
        "nuts",
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        generator=torch.Generator(device=device).manual_seed(0),
        progress=False,
        chain_groups=max(args.procs),
        max_tree_depth=6,
    )
    _synchronize(device)
    elapsed = time.perf_counter() - start
    assert result.samples.shape[0] == args.chains  # gathered on every rank
    return args.chains * args.num_samples / elapsed, float(result.samples.double().sum())


def _worker(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(args.threads)
    device = distributed.setup(torch.device(args.device), timeout_s=300)
    try:
        train = _train(args, device)
        mcmc, checksum = _mcmc(args, device)
        result = {"train": train, "mcmc": mcmc, "checksum": checksum}
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        distributed.teardown()


def run(world: int, args) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        mp.start_processes(
            _worker,
            args=(world, _free_port(), args, out),
            nprocs=world,
            join=True,
            start_method="spawn",
        )
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--num-warmup", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if any(max(args.procs) % p for p in args.procs) or max(args.procs) > args.chains:
        parser.error("every --procs must divide the largest, which must be <= --chains")
    rows = [{"procs": p, **run(p, args)} for p in args.procs]
    if len({row["checksum"] for row in rows}) != 1:
        raise AssertionError("the MCMC draws differ between process counts")
    base = rows[0]
    print(
        f"device {args.device}, {args.threads} thread(s) per process; VAE digits batch "
        f"{args.batch_size}, NUTS {args.chains} chains in {max(args.procs)} groups on a "
        "100-d Gaussian (same draws in every row)"
    )
    print("| processes | train images/s | ratio | MCMC draws/s | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['procs']} | {row['train']:.0f} | {row['train'] / base['train']:.2f} "
            f"| {row['mcmc']:.0f} | {row['mcmc'] / base['mcmc']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
