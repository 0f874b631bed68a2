"""Per-rank bodies of the distributed tests, and a bounded spawn on loopback.

The worker functions run in processes started by ``torch.multiprocessing`` (spawn), so they
live in an importable module. Each joins a 2-process ``gloo`` group through
``bayestorch.experiment.distributed.setup`` with the environment torchrun would set, and
saves what it saw under ``out`` for the parent test to check.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from bayestorch.experiment import distributed

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "vae_digits_smoke.yaml")
TIMEOUT_S = 60.0  # collective timeout inside the workers; the spawn has its own bound
MCMC_KERNELS = ("nuts", "chees", "rwm")
MCMC = {"num_warmup": 20, "num_samples": 15, "checkpoint_every": 10}
# short trajectories: the checks are about exactness, not efficiency
KERNEL_KWARGS = {"nuts": {"max_tree_depth": 4}, "chees": {"max_num_steps": 16}, "rwm": {}}
PRECISION = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
VAE_OVERRIDES = [
    "device=cpu",
    "progress=false",
    "train.epochs=4",
    "train.checkpoint_every=2",
    "train.eval_every=4",
    "eval.elbo_particles=2",
    "eval.iwae_samples=[1]",
]


def free_port() -> int:
    """A free TCP port on the loopback interface (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, args: tuple, nprocs: int = 2, timeout_s: float = 120.0) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` spawned processes; re-raise the first failure
    (``ProcessRaisedException`` carries the rank's traceback); kill them all after
    ``timeout_s`` and raise ``TimeoutError`` rather than hang."""
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"spawned processes still running after {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()


def join_group(rank: int, world: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    device = distributed.setup(torch.device("cpu"), timeout_s=TIMEOUT_S)
    assert device == torch.device("cpu")
    assert distributed.is_distributed() and distributed.rank() == rank


def gaussian_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x.square() * PRECISION).sum(-1)


def initial_positions() -> torch.Tensor:
    return torch.randn(8, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _mcmc(rank: int, out: Path) -> None:
    from bayestorch.mcmc.sample import sample

    for kernel in MCMC_KERNELS:
        # Rank 1 passes other positions on purpose: rank 0's are broadcast.
        x0 = initial_positions() if rank == 0 else torch.zeros(8, 3, dtype=torch.float64)
        snapshots = []
        common = {
            "num_warmup": MCMC["num_warmup"],
            "num_samples": MCMC["num_samples"],
            "progress": False,
            **KERNEL_KWARGS[kernel],
        }
        result = sample(
            gaussian_log_prob,
            x0,
            kernel,
            generator=torch.Generator().manual_seed(3),
            checkpoint_fn=snapshots.append,
            checkpoint_every=MCMC["checkpoint_every"],
            **common,
        )
        resumed = sample(
            gaussian_log_prob,
            x0,
            kernel,
            generator=torch.Generator().manual_seed(3),
            resume=snapshots[1],
            **common,
        )
        torch.save(
            {
                "samples": result.samples,
                "stats": result.stats,
                "warmup_stats": result.warmup_stats,
                "resumed": resumed.samples,
                "rhat": result.summary()["r_hat"],
            },
            out / f"mcmc_{kernel}_rank{rank}.pt",
        )


def _dpp(rank: int, out: Path) -> None:
    from bayestorch.dpp.sampler import DPPBatchSampler
    from tests.dpp.helpers import random_features

    phi = random_features(300, 40)
    sampler = DPPBatchSampler(phi, 8, seed=5)  # rank, world from the group
    sampler.set_epoch(1)
    try:  # a rank-dependent seed would give overlapping batches: refused on every rank
        list(DPPBatchSampler(phi, 8, seed=5 + rank))
        mismatch = None
    except ValueError as error:
        mismatch = str(error)
    torch.save(
        {
            "rank": sampler.rank,
            "world_size": sampler.world_size,
            "batches": list(sampler),
            "ddp_sampler": list(distributed.distributed_sampler(range(10), seed=0)),
            "mismatch": mismatch,
        },
        out / f"dpp_rank{rank}.pt",
    )


def _collectives(rank: int, out: Path) -> None:
    x = torch.full((rank + 1, 2), float(rank))  # uneven sizes: 1 row on rank 0, 2 on rank 1
    torch.save(
        {
            "all_gather_cat": distributed.all_gather_cat(x),
            "gather_cat": distributed.gather_cat(x),
            "all_reduce_sum": distributed.all_reduce_sum(torch.tensor(rank + 1.0)),
            "broadcast": distributed.broadcast_object({"from": rank}),
            "objects": distributed.gather_objects(rank * 10),
        },
        out / f"collectives_rank{rank}.pt",
    )


def _vae(rank: int, out: Path) -> None:
    from bayestorch.experiment import RunContext, load_experiment_config
    from experiments import REGISTRY, vae

    run_dir = out / "vae"
    overrides = [*VAE_OVERRIDES, f"output_dir={run_dir}"]
    cfg, _ = load_experiment_config(SMOKE, overrides, REGISTRY)
    vae.run(cfg, RunContext(cfg))
    # "Kill" the run after its epoch-2 checkpoint: keep the final one aside, drop it, resume.
    if rank == 0:
        last = run_dir / "checkpoints" / "step_00000004.pt"
        shutil.copy(last, out / "vae_full_step4.pt")
        last.unlink()
    distributed.barrier()
    cfg, _ = load_experiment_config(SMOKE, [*overrides, "resume=true"], REGISTRY)
    vae.run(cfg, RunContext(cfg))


def main_worker(rank: int, world: int, port: int, out: str) -> None:
    """MCMC, DPP batches and VAE training (with a resume) under one 2-process group; then
    rank 1 raises while rank 0 waits in a barrier it can never pass: the spawn must fail
    with rank 1's error, promptly (not after the collective timeout)."""
    out = Path(out)
    join_group(rank, world, port)
    try:
        _collectives(rank, out)
        _mcmc(rank, out)
        _dpp(rank, out)
        _vae(rank, out)
        distributed.barrier()
        if rank == 1:
            (out / "raised_at").write_text(repr(time.time()))
            raise RuntimeError("deliberate failure on rank 1")
        distributed.barrier()
    finally:
        distributed.teardown()
