"""Time per training iteration of a GAN: plain torch vs bayestorch.gan (each latent prior), and
the Bayesian GAN's time per weight sample.

Data sets:
    ring     8 Gaussians on the unit circle (sigma 0.01); G: latent 2 -> 128 -> 128 -> 2,
             D: 2 -> 128 -> 128 -> 1 (ReLU)
    digits   sklearn load_digits scaled to [0, 1] (1797 x 64); G: latent 16 -> 256 -> 256 -> 64
             (sigmoid out), D: 64 -> 256 -> 256 -> 1 (LeakyReLU 0.2)

Rows (all with the same networks, the same initial weights and the same mini-batches):
    plain torch            hand-written non-saturating loop, z ~ N(0, I), Adam(2e-4, (0.5, 0.999))
    GAN gaussian           bayestorch.gan.GAN with GaussianPrior
    GAN gmm                ... with GaussianMixturePrior(K) (Gumbel-softmax component choice)
    GAN dp                 ... with DirichletProcessPrior(1, T) (Kumaraswamy stick-breaking)
    BayesianGAN J          J generator and J discriminator weight samples (SGHMC), Gaussian prior;
                           reported per weight sample: time / J, against one GAN's step

Usage::

    python benchmarks/gan.py [--data ring,digits] [--batch-size 256] [--steps 200] [--warmup 20]
                             [--repeats 3] [--block 10] [--samples 1,2,4]
                             [--device cpu|cuda] [--threads N]

Steps are interleaved in blocks of ``block`` steps across rows (A B C ... A B C ...), so machine
noise hits every row alike; a row's time is the median over repeats of its mean time per step.
Every row's step ends with one host sync (the losses as floats), as a logging loop would.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import setup_device
from torch import Tensor, nn

from bayestorch.gan import (
    GAN,
    BayesianGAN,
    DirichletProcessPrior,
    GaussianMixturePrior,
    GaussianPrior,
)

LR, BETAS = 2e-4, (0.5, 0.999)


def ring_data(n: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(0)
    angle = 2 * math.pi * torch.randint(8, (n,), generator=g) / 8  # 8 distinct angles
    x = torch.stack([angle.cos(), angle.sin()], 1) + 0.01 * torch.randn(n, 2, generator=g)
    return x.to(device)


def digits_data(device: torch.device) -> Tensor:
    from sklearn.datasets import load_digits

    return (torch.as_tensor(load_digits().data, dtype=torch.float32) / 16.0).to(device)


def mlp(sizes: list[int], act: Callable[[], nn.Module], out: nn.Module | None = None):
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


def networks(name: str) -> tuple[nn.Module, nn.Module, int, int]:
    if name == "ring":
        g = mlp([2, 128, 128, 2], nn.ReLU)
        d = mlp([2, 128, 128, 1], nn.ReLU)
        return g, d, 2, 8
    g = mlp([16, 256, 256, 64], nn.ReLU, nn.Sigmoid())
    d = mlp([64, 256, 256, 1], lambda: nn.LeakyReLU(0.2))
    return g, d, 16, 10


StepFn = Callable[[Tensor], list[float]]


def plain_torch(g0, d0, latent, device, seed) -> StepFn:
    gen, disc = copy.deepcopy(g0), copy.deepcopy(d0)
    opt_g = torch.optim.Adam(gen.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(disc.parameters(), lr=LR, betas=BETAS)
    rng = torch.Generator(device=device).manual_seed(seed)

    def step(real: Tensor) -> list[float]:
        n = real.shape[0]
        with torch.no_grad():
            fake = gen(torch.randn(n, latent, generator=rng, device=device))
        d_loss = F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        fake = gen(torch.randn(n, latent, generator=rng, device=device))
        g_loss = F.softplus(-disc(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        return torch.stack((d_loss.detach(), g_loss.detach())).tolist()

    return step


def bayestorch_gan(prior_fn) -> Callable:
    def setup(g0, d0, latent, device, seed) -> StepFn:
        torch.manual_seed(seed)
        model = GAN(copy.deepcopy(g0), copy.deepcopy(d0), prior_fn(latent), lr=LR, betas=BETAS)
        model.to(device)
        rng = torch.Generator(device=device).manual_seed(seed)
        return lambda real: model.training_step(real, rng)

    return setup


def bayesian_gan(num_samples: int, num_data: int) -> Callable:
    def setup(g0, d0, latent, device, seed) -> StepFn:
        torch.manual_seed(seed)
        model = BayesianGAN(
            copy.deepcopy(g0),
            copy.deepcopy(d0),
            GaussianPrior(latent),
            num_generators=num_samples,
            num_discriminators=num_samples,
            num_data=num_data,
            keep_every=10**9,
        ).to(device)
        rng = torch.Generator(device=device).manual_seed(seed)
        return lambda real: model.training_step(real, rng)

    return setup


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(data_name: str, args, device) -> None:
    data = ring_data(50000, device) if data_name == "ring" else digits_data(device)
    g0, d0, latent, k = networks(data_name)
    g0, d0 = g0.to(device), d0.to(device)
    rows: list[tuple[str, Callable, int]] = [
        ("plain torch", plain_torch, 1),
        ("GAN gaussian", bayestorch_gan(lambda d: GaussianPrior(d)), 1),
        ("GAN gmm", bayestorch_gan(lambda d: GaussianMixturePrior(k, d)), 1),
        ("GAN dp", bayestorch_gan(lambda d: DirichletProcessPrior(1.0, 2 * k, d)), 1),
    ] + [(f"BayesianGAN J={j}", bayesian_gan(j, data.shape[0]), j) for j in args.samples]
    total = args.warmup + args.steps
    gidx = torch.Generator().manual_seed(1)
    batches = data[
        torch.randint(data.shape[0], (total, args.batch_size), generator=gidx).to(device)
    ]
    times = {name: [] for name, _, _ in rows}
    for repeat in range(args.repeats):
        steps = [setup(g0, d0, latent, device, repeat) for _, setup, _ in rows]
        elapsed = [0.0] * len(rows)
        for i in range(args.warmup):
            for step in steps:
                step(batches[i])
        for start in range(args.warmup, total, args.block):
            for r, step in enumerate(steps):
                sync(device)
                t = time.perf_counter()
                for i in range(start, min(start + args.block, total)):
                    step(batches[i])
                sync(device)
                elapsed[r] += time.perf_counter() - t
        for (name, _, _), e in zip(rows, elapsed, strict=True):
            times[name].append(e / args.steps * 1e3)
    base = statistics.median(times["plain torch"])
    one_gan = statistics.median(times["GAN gaussian"])
    print(f"\n## {data_name}: batch {args.batch_size}, {args.steps} timed steps x {args.repeats}")
    print(f"{'row':<22}{'ms/iter':>10}{'vs plain':>10}{'per sample / GAN':>18}")
    for name, _, j in rows:
        t = statistics.median(times[name])
        per = f"{t / j / one_gan:>18.2f}" if name.startswith("Bayesian") else f"{'':>18}"
        print(f"{name:<22}{t:>10.3f}{t / base:>10.2f}{per}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="ring,digits")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--samples", default="1,2,4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    args.samples = [int(s) for s in args.samples.split(",")]
    device = setup_device(args.device, args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    for data_name in args.data.split(","):
        bench(data_name, args, device)


if __name__ == "__main__":
    main()
