"""torch.distributed under 2 real CPU processes (gloo, loopback, bounded in time).

One spawned 2-process group (``workers.main_worker``) runs the MCMC, DPP and VAE checks;
the tests here compare what the ranks saved with single-process references. Extra
launches: a rank that raises (must fail fast, not hang) and a ``torchrun`` smoke run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils._pytree import tree_leaves

from bayestorch.experiment import ConfigError, RunContext, distributed, load_experiment_config
from bayestorch.experiment.checkpoint import load_checkpoint
from bayestorch.experiment.data import load_binarized
from bayestorch.experiment.run import _derived_seed
from bayestorch.mcmc.sample import sample
from bayestorch.testing import assert_z
from bayestorch.vi import VAE
from experiments import REGISTRY
from tests.distributed import workers

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    """The run directory of one 2-process group (see ``workers.main_worker``), which ends
    with rank 1 raising: the error and the seconds from the raise to the spawn's failure
    are kept in ``spawn_error.txt`` and ``failed_after`` for the test of that."""
    out = tmp_path_factory.mktemp("dist")
    with pytest.raises(mp.ProcessRaisedException) as error:
        workers.spawn(workers.main_worker, (2, workers.free_port(), str(out)), timeout_s=240)
    failed_after = time.time() - float((out / "raised_at").read_text())
    (out / "failed_after").write_text(repr(failed_after))
    (out / "spawn_error.txt").write_text(str(error.value))
    return out


def test_collectives_gather_uneven_tensors_in_rank_order(group_run):
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    for r in range(2):
        saved = torch.load(group_run / f"collectives_rank{r}.pt")
        assert torch.equal(saved["all_gather_cat"], expected)
        assert torch.equal(saved["gather_cat"], expected) if r == 0 else saved["gather_cat"] is None
        assert saved["all_reduce_sum"].item() == 3.0
        assert saved["broadcast"] == {"from": 0} and saved["objects"] == [0, 10]


# -- MCMC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", workers.MCMC_KERNELS)
def test_mcmc_two_ranks_of_four_chains_equal_one_process_with_the_same_group_seeds(
    group_run, kernel
):
    ranks = [torch.load(group_run / f"mcmc_{kernel}_rank{r}.pt") for r in range(2)]
    common = {
        "num_warmup": workers.MCMC["num_warmup"],
        "num_samples": workers.MCMC["num_samples"],
        "progress": False,
        **workers.KERNEL_KWARGS[kernel],
    }
    reference = sample(
        workers.gaussian_log_prob,
        workers.initial_positions(),
        kernel,
        generator=torch.Generator().manual_seed(3),
        chain_groups=2,
        **common,
    )
    assert reference.samples.shape == (8, workers.MCMC["num_samples"], 3)
    for saved in ranks:  # every rank returns all 8 chains, bit for bit the reference's
        assert torch.equal(saved["samples"], reference.samples)
        assert saved["stats"].keys() == reference.stats.keys()
        assert all(torch.equal(saved["stats"][k], v) for k, v in reference.stats.items())
        assert all(
            torch.equal(saved["warmup_stats"][k], v) for k, v in reference.warmup_stats.items()
        )
        assert torch.equal(saved["resumed"], reference.samples)  # resumed mid-warm-up
        # diagnostics over all 8 chains, as in one process
        torch.testing.assert_close(saved["rhat"], reference.summary()["r_hat"])
    # The wrong design: one generator for all 8 chains gives other draws, so the test
    # above does discriminate.
    one_stream = sample(
        workers.gaussian_log_prob,
        workers.initial_positions(),
        kernel,
        generator=torch.Generator().manual_seed(3),
        **common,
    )
    assert not torch.equal(one_stream.samples, reference.samples)


def test_sample_group_arguments_are_checked():
    x0 = workers.initial_positions()
    kwargs = {"num_warmup": 2, "num_samples": 2, "progress": False}
    with pytest.raises(ValueError, match="chain_groups must be a multiple"):
        sample(workers.gaussian_log_prob, x0, "rwm", chain_groups=9, **kwargs)
    with pytest.raises(ValueError, match="chain_groups must be a positive int"):
        sample(workers.gaussian_log_prob, x0, "rwm", chain_groups=0, **kwargs)
    with pytest.raises(ValueError, match="distributed=True needs an initialised"):
        sample(workers.gaussian_log_prob, x0, "rwm", distributed=True, **kwargs)
    snapshots = []
    sample(
        workers.gaussian_log_prob,
        x0,
        "rwm",
        chain_groups=2,
        checkpoint_fn=snapshots.append,
        checkpoint_every=1,
        **kwargs,
    )
    with pytest.raises(ValueError, match="holds 2 chain group"):
        sample(workers.gaussian_log_prob, x0, "rwm", resume=snapshots[0], **kwargs)


# -- DPP batches --------------------------------------------------------------------------


def test_dpp_batches_are_disjoint_across_ranks_and_diversified(group_run):
    from bayestorch.dpp.sampler import DPPBatchSampler
    from tests.dpp.helpers import random_features

    ranks = [torch.load(group_run / f"dpp_rank{r}.pt") for r in range(2)]
    assert [(s["rank"], s["world_size"]) for s in ranks] == [(0, 2), (1, 2)]
    phi = random_features(300, 40)
    for r, saved in enumerate(ranks):
        # The single-process checks: size, no duplicates, in range; and the same batches
        # as the (statistically tested) single-process simulation of rank r.
        assert len(saved["batches"]) == 300 // 16
        for batch in saved["batches"]:
            assert len(batch) == 8 and len(set(batch)) == 8
            assert all(0 <= i < 300 for i in batch)
        simulated = DPPBatchSampler(phi, 8, seed=5, rank=r, world_size=2)
        simulated.set_epoch(1)
        assert saved["batches"] == list(simulated)
    for a, b in zip(ranks[0]["batches"], ranks[1]["batches"]):
        assert not set(a) & set(b)
    assert all("generators differ" in (saved["mismatch"] or "") for saved in ranks)
    # distributed_sampler: each rank a disjoint half of the shuffled indices
    halves = [s["ddp_sampler"] for s in ranks]
    assert sorted(halves[0] + halves[1]) == list(range(10)) and len(halves[0]) == 5


@pytest.mark.statistical
def test_per_rank_dpp_batches_have_the_declared_inclusion_probabilities():
    """Each rank's share of the k-DPP (the simulation, equal to the real ranks above)
    includes item i with probability pi_i / world_size (z-test, declared failure rate);
    uniform batches of the same size fail the same test."""
    from bayestorch.dpp.sampler import DPPBatchSampler
    from tests.dpp.helpers import random_features

    n, k, num, world = 30, 2, 3000, 2
    phi = random_features(n, 8, seed=2)
    quality = torch.linspace(0.5, 2.0, n, dtype=torch.float64)

    def frequencies(batches: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(batches.numel(), dtype=torch.float64)
        return torch.zeros(n, dtype=torch.float64).index_add_(0, batches.flatten(), ones) / num

    for r in range(world):
        sampler = DPPBatchSampler(
            phi, k, num_batches=num, quality=quality, seed=11, rank=r, world_size=world
        )
        pi = sampler.inclusion_probs
        torch.testing.assert_close(pi.sum(), torch.tensor(float(k), dtype=torch.float64))
        assert_z(frequencies(torch.tensor(list(sampler))), pi, (pi * (1 - pi) / num).sqrt())
    g = torch.Generator().manual_seed(0)
    uniform = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(num)])
    with pytest.raises(AssertionError):
        assert_z(frequencies(uniform), pi, (pi * (1 - pi) / num).sqrt())


# -- VAE under DDP ------------------------------------------------------------------------


def _vae_config(out):
    overrides = [*workers.VAE_OVERRIDES, f"output_dir={out}"]
    return load_experiment_config(workers.SMOKE, overrides, REGISTRY)[0]


def test_ddp_vae_equals_one_process_on_the_combined_batch(group_run, tmp_path):
    """Two ranks, each a slice of every batch of 128 and its own noise stream, train the
    same parameters as one process on the whole batch with the same noise."""
    cfg = _vae_config(tmp_path / "reference")
    ctx = RunContext(cfg)  # seeds as each rank's context did
    train_x, _, _ = load_binarized(cfg.data, "cpu")
    model = VAE(train_x.shape[1], cfg.model.latent_dim, cfg.model.hidden_sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    noise = [
        torch.Generator().manual_seed(_derived_seed(cfg.seed, f"train_noise@rank{r}"))
        for r in range(2)
    ]
    for _ in range(cfg.train.epochs):
        for index in torch.randperm(len(train_x), generator=ctx.generator).split(
            cfg.train.batch_size
        ):
            shards = index.tensor_split(2)
            bound = torch.cat([model.elbo(train_x[s], generator=n) for s, n in zip(shards, noise)])
            optimizer.zero_grad()
            (-bound.mean()).backward()
            optimizer.step()
    ddp = load_checkpoint(group_run / "vae_full_step4.pt")["objects"]["model"]
    reference = model.state_dict()
    assert ddp.keys() == reference.keys()
    for name, value in reference.items():
        # float32, 48 Adam steps; only the summation order differs (2 partial sums)
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)
    # The wrong variant: the same training with one noise stream for the whole batch
    # (what the single-process experiment does) ends elsewhere.
    ctx_single = RunContext(_vae_config(tmp_path / "single"))
    model_single = VAE(train_x.shape[1], cfg.model.latent_dim, cfg.model.hidden_sizes)
    opt_single = torch.optim.Adam(model_single.parameters(), lr=cfg.train.lr)
    for _ in range(cfg.train.epochs):
        for index in torch.randperm(len(train_x), generator=ctx_single.generator).split(
            cfg.train.batch_size
        ):
            loss = -model_single.elbo(train_x[index], generator=ctx_single.generator).mean()
            opt_single.zero_grad()
            loss.backward()
            opt_single.step()
    differs = [
        not torch.allclose(ddp[k], v, rtol=1e-4, atol=1e-5)
        for k, v in model_single.state_dict().items()
    ]
    assert any(differs)


def test_only_rank0_writes_and_a_killed_run_resumes_exactly(group_run):
    run_dir = group_run / "vae"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # once per epoch, not per rank
    assert (run_dir / "summary.json").exists() and list((run_dir / "plots").glob("*.png"))
    resumed = load_checkpoint(run_dir / "checkpoints" / "step_00000004.pt")
    full = load_checkpoint(group_run / "vae_full_step4.pt")
    assert resumed["world_size"] == 2 and len(resumed["rng_ranks"]) == 2
    noise = [s["generators"]["train_noise"] for s in resumed["rng_ranks"]]
    assert not torch.equal(noise[0], noise[1])  # each rank its own stream, both saved
    for part in ("model", "optimizer"):
        a, b = full["objects"][part], resumed["objects"][part]
        leaves_a = tree_leaves(a)
        leaves_b = tree_leaves(b)
        assert len(leaves_a) == len(leaves_b)
        for x, y in zip(leaves_a, leaves_b):
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


def test_resume_with_another_world_size_is_refused(group_run, tmp_path):
    copy = tmp_path / "vae"
    shutil.copytree(group_run / "vae", copy)
    cfg, _ = load_experiment_config(
        workers.SMOKE, [*workers.VAE_OVERRIDES, f"output_dir={copy}", "resume=true"], REGISTRY
    )
    with pytest.raises(ConfigError, match="written by 2 process"):
        RunContext(cfg).restore({})


# -- failures, helpers without a group, torchrun ------------------------------------------


def test_a_rank_that_raises_fails_the_run_fast_with_its_error(group_run):
    # rank 0 sat in a barrier with a 60 s timeout; the failure surfaced long before that
    error = (group_run / "spawn_error.txt").read_text()
    assert "deliberate failure on rank 1" in error
    assert "Traceback" in error  # the failing rank's traceback is shown
    assert float((group_run / "failed_after").read_text()) < workers.TIMEOUT_S / 2


def test_helpers_are_identities_in_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun()
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (
        0,
        1,
        True,
    )
    model = torch.nn.Linear(2, 1)
    assert distributed.wrap_model(model) is model
    x = torch.arange(3.0)
    assert distributed.all_gather_cat(x) is x and distributed.gather_cat(x) is x
    assert distributed.gather_objects(1) == [1] and distributed.broadcast_object(2) == 2
    assert distributed.distributed_sampler(range(4)) is None
    distributed.barrier()
    monkeypatch.setenv("BAYESTORCH_DIST_TIMEOUT_S", "soon")
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="BAYESTORCH_DIST_TIMEOUT_S must be a positive"):
        distributed.setup(torch.device("cpu"))


@pytest.mark.slow
def test_torchrun_smoke_run_of_the_experiment_cli(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BAYESTORCH_DIST_TIMEOUT_S": "60"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={workers.free_port()}",
        "--max_restarts=0",
        "-m",
        "experiments",
        workers.SMOKE,
        f"output_dir={out}",
    ]
    result = subprocess.run(
        command, cwd=workers.ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 4  # the smoke config's 4 epochs, written by rank 0 only
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4
    assert result.stderr.count("done in") == 1  # rank 0 alone reports
