"""Time per training step of one VAE: plain torch, bayestorch, Pyro SVI (Trace / JitTrace ELBO).

All methods train the *same* model: encoder MLP ``data -> hidden... -> 2 * latent`` (location
and softplus scale), decoder MLP ``latent -> reversed(hidden)... -> data`` (Bernoulli logits),
Tanh between layers (``bayestorch.vi.mlp``), prior N(0, I), Adam(lr=1e-3). The weights of one
initialisation are copied into every method, and every method sees the same mini-batches.

Rows:
    plain torch              hand-written loop, closed-form Gaussian KL
    bayestorch               ``-VAE.elbo(x, generator=g).mean()`` (closed-form KL, the default)
    bayestorch (MC KL)       ``analytic_kl=False``: log p(x|z) + log p(z) - log q(z|x), like Pyro
    pyro Trace_ELBO          the Pyro VAE tutorial pattern (plate, to_event), pyro.optim.Adam
    pyro JitTrace_ELBO       the same, traced with the PyTorch JIT

Usage::

    python benchmarks/vae.py [--batch-size 128] [--hidden 256,128] [--latent-dim 2]
                             [--steps 300] [--warmup 30] [--repeats 3] [--block 10]
                             [--device cpu|cuda] [--threads N] [--pyro-validation]
                             [--json PATH]

Each repeat trains every method afresh from the same weights and seed: ``warmup`` untimed
steps, then ``steps`` timed steps. The timed steps are interleaved in blocks of ``block``
steps (A B C D A B C D ...), so machine noise (bursts of other load, a VM's stolen time)
hits every method alike; each method's time per step is the median over repeats.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from _common import setup_device
from torch import Tensor, nn

import bayestorch
from bayestorch.vi import VAE

try:
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
except ImportError:  # the Pyro rows are skipped
    pyro = None

MIN_SCALE = 1e-5  # as in bayestorch.vi.vae: scale = softplus(raw) + 1e-5
LR = 1e-3

StepFn = Callable[[Tensor], float]


# --------------------------------------------------------------------------- data


def load_data(device: torch.device) -> tuple[Tensor, str]:
    """Binarised sklearn digits (1797 x 64); random binary images if sklearn is missing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(1797, 64, generator=g) < 0.3).float()
        return x.to(device), "random binary 1797 x 64 (scikit-learn not installed)"
    x = torch.as_tensor(load_digits().data, dtype=torch.float32)
    return (x / 16.0 > 0.5).float().to(device), "sklearn load_digits, x/16 > 0.5 (1797 x 64)"


def make_batches(data: Tensor, num_steps: int, batch_size: int, seed: int) -> Tensor:
    """``(num_steps, batch_size, data_dim)``: the mini-batches every method sees, in order."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, data.shape[0], (num_steps, batch_size), generator=g)
    return data[idx.to(data.device)].contiguous()


# ------------------------------------------------------------------------ methods


def closed_form_kl(loc: Tensor, scale: Tensor) -> Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) summed over the last dim."""
    return (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).sum(-1)


def plain_torch(init: VAE, device: torch.device, seed: int) -> tuple[StepFn, nn.Module]:
    encoder = copy.deepcopy(init.encoder)
    decoder = copy.deepcopy(init.decoder)
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    g = torch.Generator(device=device).manual_seed(seed)

    def step(x: Tensor) -> float:
        loc, raw_scale = encoder(x).chunk(2, dim=-1)
        scale = F.softplus(raw_scale) + MIN_SCALE
        z = loc + scale * torch.randn(loc.shape, generator=g, device=device, dtype=loc.dtype)
        logits = decoder(z)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        loss = (nll + closed_form_kl(loc, scale)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, nn.ModuleDict({"encoder": encoder, "decoder": decoder})


def bayestorch_vae(
    init: VAE, device: torch.device, seed: int, analytic_kl: bool | None = None
) -> tuple[StepFn, nn.Module]:
    model = copy.deepcopy(init)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator(device=device).manual_seed(seed)

    def step(x: Tensor) -> float:
        loss = -model.elbo(x, analytic_kl=analytic_kl, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, model


def pyro_svi(init: VAE, device: torch.device, seed: int, jit: bool) -> tuple[StepFn, nn.Module]:
    """The Pyro VAE tutorial pattern. Pyro's loss is summed over the batch; the loss returned
    is divided by the batch size (Adam is invariant to the scale of the loss up to its eps)."""
    encoder = copy.deepcopy(init.encoder)
    decoder = copy.deepcopy(init.decoder)
    latent_dim = init.latent_dim
    prefix = "jit_" if jit else ""  # both Pyro runs live in the global param store at once

    def model(x: Tensor) -> None:
        pyro.module(prefix + "decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            loc = x.new_zeros((x.shape[0], latent_dim))
            scale = x.new_ones((x.shape[0], latent_dim))
            z = pyro.sample("z", pdist.Normal(loc, scale).to_event(1))
            logits = decoder(z)
            pyro.sample("obs", pdist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x: Tensor) -> None:
        pyro.module(prefix + "encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            loc, raw_scale = encoder(x).chunk(2, dim=-1)
            scale = F.softplus(raw_scale) + MIN_SCALE
            pyro.sample("z", pdist.Normal(loc, scale).to_event(1))

    loss_fn = JitTrace_ELBO() if jit else Trace_ELBO()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": LR}), loss=loss_fn)

    def step(x: Tensor) -> float:
        return svi.step(x) / x.shape[0]

    return step, nn.ModuleDict({"encoder": encoder, "decoder": decoder})


@dataclass
class Method:
    name: str
    setup: Callable[[VAE, torch.device, int], tuple[StepFn, nn.Module]]
    times_ms: list[float] = field(default_factory=list)
    final_loss: float = math.nan  # mean training loss over the last steps of the last repeat
    eval_loss: float = math.nan  # common full-data evaluation of the trained weights


def methods() -> list[Method]:
    rows = [
        Method("plain torch", plain_torch),
        Method("bayestorch", bayestorch_vae),
        Method("bayestorch (MC KL)", lambda i, d, s: bayestorch_vae(i, d, s, analytic_kl=False)),
    ]
    if pyro is not None:
        rows += [
            Method("pyro Trace_ELBO", lambda i, d, s: pyro_svi(i, d, s, jit=False)),
            Method("pyro JitTrace_ELBO", lambda i, d, s: pyro_svi(i, d, s, jit=True)),
        ]
    return rows


# --------------------------------------------------------------------- measurement


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GlobalRNG:
    """A private state of torch's global RNG (Pyro samples from it), swapped in around each
    block of steps so that every method's draws are those of a run on its own."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.device = device
        saved = self._get()
        torch.manual_seed(seed)
        self.state = self._get()
        self._set(saved)

    def _get(self) -> tuple[Tensor, Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set(self, state: tuple[Tensor, Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def __enter__(self) -> None:
        self._set(self.state)

    def __exit__(self, *exc) -> None:
        self.state = self._get()


@dataclass
class Run:
    """One training run of one method: its step function, weights, RNG and clock."""

    step: StepFn
    trained: nn.Module
    rng: GlobalRNG
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def advance(self, batches: Tensor, start: int, stop: int) -> float:
        """Steps ``start..stop-1``; returns the wall-clock seconds they took."""
        with self.rng:
            sync(batches.device)
            tic = time.perf_counter()
            for i in range(start, stop):
                self.losses.append(self.step(batches[i]))
            sync(batches.device)
            return time.perf_counter() - tic


@torch.no_grad()
def evaluate(trained: nn.Module, data: Tensor, seed: int, particles: int = 20) -> float:
    """Mean negative ELBO (closed-form KL, ``particles`` draws) on the full data set: the same
    estimator for every method, so differences come from training only."""
    if isinstance(trained, VAE):
        trained = nn.ModuleDict({"encoder": trained.encoder, "decoder": trained.decoder})
    encoder, decoder = trained["encoder"], trained["decoder"]
    g = torch.Generator(device=data.device).manual_seed(seed)
    loc, raw_scale = encoder(data).chunk(2, dim=-1)
    scale = F.softplus(raw_scale) + MIN_SCALE
    eps = torch.randn((particles, *loc.shape), generator=g, device=data.device)
    logits = decoder(loc + scale * eps)
    nll = F.binary_cross_entropy_with_logits(logits, data.expand_as(logits), reduction="none")
    return (nll.sum(-1).mean(0) + closed_form_kl(loc, scale)).mean().item()


def run_repeat(
    rows: list[Method], init: VAE, batches: Tensor, args: argparse.Namespace, data: Tensor
) -> None:
    """One repeat: a fresh training run of every method from the same weights and seed, the
    timed steps interleaved in blocks of ``args.block`` (A B C D A B C D ...)."""
    device = batches.device
    if pyro is not None:
        pyro.clear_param_store()
    runs = []
    for method in rows:
        rng = GlobalRNG(args.seed, device)
        with rng:
            step, trained = method.setup(init, device, args.seed)
        run = Run(step, trained, rng)
        run.advance(batches, 0, args.warmup)  # untimed: JIT compilation, allocator, caches
        runs.append(run)
    total = args.warmup + args.steps
    for start in range(args.warmup, total, args.block):
        stop = min(start + args.block, total)
        for run in runs:
            run.seconds += run.advance(batches, start, stop)
    for method, run in zip(rows, runs):
        method.times_ms.append(run.seconds * 1e3 / args.steps)
        tail = run.losses[-min(20, len(run.losses)) :]
        method.final_loss = sum(tail) / len(tail)
        method.eval_loss = evaluate(run.trained, data, args.seed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=str, default="256,128", help="comma-separated widths")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--steps", type=int, default=300, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--block", type=int, default=10, help="steps a method runs before the next one's turn"
    )
    p.add_argument("--device", type=str, default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pyro-validation",
        action="store_true",
        help="keep Pyro's (and torch.distributions') argument validation on, Pyro's default; "
        "off by default because bayestorch builds its distributions with validate_args=False",
    )
    p.add_argument("--json", type=str, default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.hidden_sizes = [int(h) for h in args.hidden.split(",") if h.strip()]
    if min(args.steps, args.repeats, args.block, args.batch_size, args.latent_dim) < 1:
        p.error("--steps, --repeats, --block, --batch-size and --latent-dim must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = setup_device(args.device, args.threads)
    if pyro is not None:
        pyro.enable_validation(args.pyro_validation)

    load_average = os.getloadavg()[0]
    data, data_note = load_data(device)
    torch.manual_seed(args.seed)
    init = VAE(data.shape[1], args.latent_dim, args.hidden_sizes, likelihood="bernoulli").to(device)
    batches = make_batches(data, args.warmup + args.steps, args.batch_size, args.seed)
    rows = methods()

    print(
        f"VAE {data.shape[1]} -> {args.hidden_sizes} -> {args.latent_dim} (Tanh), batch "
        f"{args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.repeats} repeats interleaved in blocks of {args.block} steps\n"
        f"device {device}, torch threads {torch.get_num_threads()}; data: {data_note}"
    )
    print(
        f"torch {torch.__version__}, bayestorch {bayestorch.__version__}, "
        f"pyro {pyro.__version__ if pyro is not None else 'not installed'}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load_average:.2f} (busy CPUs slow multi-threaded torch a lot)\n"
    )

    with warnings.catch_warnings():
        # JitTrace_ELBO's tracing warns (TracerWarning; torch.jit.trace is deprecated in
        # recent torch): silenced here, in the benchmark only.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated")
        for _ in range(args.repeats):
            run_repeat(rows, init, batches, args, data)

    base = statistics.median(rows[0].times_ms)
    header = (
        f"{'method':<22}{'ms/step':>9}{'min':>9}{'x plain':>9}{'train loss':>12}{'eval loss':>11}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for m in rows:
        med = statistics.median(m.times_ms)
        print(
            f"{m.name:<22}{med:>9.3f}{min(m.times_ms):>9.3f}{med / base:>9.2f}"
            f"{m.final_loss:>12.3f}{m.eval_loss:>11.3f}"
        )
        results.append(
            {
                "method": m.name,
                "ms_per_step_median": med,
                "ms_per_step_all": m.times_ms,
                "ratio_vs_plain_torch": med / base,
                "final_train_loss": m.final_loss,
                "eval_loss": m.eval_loss,
            }
        )
    total = args.warmup + args.steps
    print(
        f"\nNotes:\n"
        f"* ms/step: median (and min) over repeats of the mean time of one step (forward, "
        f"backward, Adam, loss.item()).\n"
        f"* train loss: mean negative ELBO per image over the last 20 of {total} steps "
        f"(last repeat); eval loss: the same closed-form-KL estimator on all {data.shape[0]} "
        f"images for every method's trained weights. Close, not identical, is expected.\n"
        f"* Pyro's Trace_ELBO estimates the KL by Monte Carlo (log p(z) - log q(z|x) at the "
        f"sampled z); plain torch and bayestorch use it in closed form. "
        f"'bayestorch (MC KL)' (analytic_kl=False) is the like-for-like row for Pyro.\n"
        f"* Pyro's loss is summed over the batch (reported divided by the batch size); "
        f"Adam is scale-invariant up to eps; pyro.optim.Adam keeps one torch Adam per "
        f"parameter. Every method draws its noise from its own RNG seeded alike (a Generator; "
        f"for Pyro a private state of the global RNG), so plain torch = bayestorch and "
        f"bayestorch (MC KL) = pyro Trace_ELBO to float rounding.\n"
        f"* Pyro validation: {'on' if args.pyro_validation else 'off'} "
        f"(--pyro-validation to turn it on); JIT warnings are suppressed."
    )

    out = {
        "config": {k: v for k, v in vars(args).items() if k not in ("json",) and not callable(v)}
        | {"device": str(device), "threads": torch.get_num_threads()},
        "versions": {
            "torch": torch.__version__,
            "bayestorch": bayestorch.__version__,
            "pyro": pyro.__version__ if pyro is not None else None,
            "python": platform.python_version(),
        },
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": load_average,
        "data": data_note,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
