"""Stochastic beam search on a small character model: estimating a sequence-level expectation
with the importance-weighted estimator of Kool, van Hoof & Welling (2019) vs plain Monte Carlo.

Data: the lines of the Zen of Python (``import this``) and of a few standard-library module
docstrings, each line a sequence ``bos, characters..., eos``. Model: a character MLP over the
last ``context`` characters, trained here by maximum likelihood. Target: ``E[f(y)]`` with ``f``
the length of a sampled line (capped at ``max_len``). At each sample count ``k`` the experiment
repeats every estimator ``repeats`` times and reports its variance:

* Monte Carlo: the mean of ``f`` over ``k`` ancestral samples, with replacement (each drawn as a
  stochastic beam search with beam 1, which is an exact ancestral sample);
* SBS: ``sum_i w_i f(y_i)`` over ``k`` samples without replacement, ``w = p / q_kappa``, kappa
  the ``(k + 1)``-th perturbed log-probability (unbiased);
* SBS normalised: ``sum_i w_i f(y_i) / sum_i w_i`` (consistent, lower variance).
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bayestorch.experiment import ExperimentConfig, RunContext
from bayestorch.experiment.plots import new_figure
from bayestorch.gumbel import stochastic_beam_log_weights, stochastic_beam_search


@dataclass
class DataConfig:
    modules: list[str] = field(default_factory=lambda: ["this", "json", "textwrap", "string"])
    max_line_chars: int = 60


@dataclass
class ModelConfig:
    context: int = 6
    embedding_dim: int = 16
    hidden_size: int = 128


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 3e-3


@dataclass
class SearchConfig:
    max_len: int = 40
    sample_counts: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32])
    temperatures: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # of the model
    repeats: int = 200
    reference_samples: int = 20000  # ancestral samples for the reference value of E[f]


@dataclass
class Config(ExperimentConfig):
    experiment: str = "stochastic_beam"
    output_dir: str = "runs/stochastic_beam"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


def load_lines(cfg: DataConfig) -> list[str]:
    """Non-empty lines of the Zen of Python and of the listed modules' docstrings."""
    lines = []
    for name in cfg.modules:
        if name == "this":  # importing `this` prints the Zen; decode its source text instead
            spec = importlib.util.find_spec("this")
            source = spec.loader.get_source("this")
            encoded = source.split('s = """', 1)[1].split('"""', 1)[0]
            text = codecs.decode(encoded, "rot13")
        else:
            text = importlib.import_module(name).__doc__ or ""
        lines += [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and len(line) <= cfg.max_line_chars]


class CharMLP(nn.Module):
    """Next-character log-probabilities from the last ``context`` characters (padded with bos)."""

    def __init__(self, vocab_size: int, context: int, embedding_dim: int, hidden_size: int):
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab_size, embedding_dim)
        self.net = nn.Sequential(
            nn.Linear(context * embedding_dim, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, vocab_size),
        )

    def forward(self, prefixes: torch.Tensor) -> torch.Tensor:
        window = prefixes[:, -self.context :]
        if window.shape[1] < self.context:  # pad on the left with the first (bos) token
            pad = window[:, :1].expand(-1, self.context - window.shape[1])
            window = torch.cat([pad, window], dim=1)
        return torch.log_softmax(self.net(self.embed(window).flatten(1)), -1)


def training_pairs(lines, stoi, context: int, bos: int, eos: int):
    """(context window, next token) pairs of every line."""
    windows, targets = [], []
    for line in lines:
        tokens = [bos] * context + [stoi[c] for c in line] + [eos]
        for i in range(context, len(tokens)):
            windows.append(tokens[i - context : i])
            targets.append(tokens[i])
    return torch.tensor(windows), torch.tensor(targets)


def lengths(sequences: torch.Tensor, eos: int) -> torch.Tensor:
    """f(y): characters before eos (the whole generated part when it never ends)."""
    return (sequences[..., 1:] != eos).cumprod(-1).sum(-1).double()


def compare_estimators(model, temperature: float, cfg: SearchConfig, bos, eos, ctx, g) -> dict:
    """Variance over ``cfg.repeats`` runs of each estimator of E[length], at each sample count."""
    device = ctx.device

    @torch.no_grad()
    def step_fn(prefixes):
        return torch.log_softmax(model(prefixes) / temperature, -1)

    def ancestral(n):
        bos_n = torch.full((n,), bos, device=device)
        out = stochastic_beam_search(step_fn, bos_n, 1, cfg.max_len, eos, generator=g)
        return out.sequences[:, 0]

    ref = lengths(ancestral(cfg.reference_samples), eos)
    table = {
        "reference": ref.mean().item(),
        "reference_standard_error": (ref.std() / math.sqrt(len(ref))).item(),
    }
    for k in cfg.sample_counts:
        mc = lengths(ancestral(cfg.repeats * k), eos).view(cfg.repeats, k).mean(-1)
        bos_r = torch.full((cfg.repeats,), bos, device=device)
        out = stochastic_beam_search(step_fn, bos_r, k + 1, cfg.max_len, eos, generator=g)
        lp, perturbed = out.log_probs.double(), out.perturbed_log_probs.double()
        w = stochastic_beam_log_weights(lp, perturbed).exp()
        f = lengths(out.sequences[:, :k], eos)
        sbs = (w * f).sum(-1)
        row = {
            name: {"mean": est.mean().item(), "variance": est.var().item()}
            for name, est in (
                ("monte_carlo", mc),
                ("sbs", sbs),
                ("sbs_normalised", sbs / w.sum(-1)),
            )
        }
        row["probability_mass_of_the_k_samples"] = lp[:, :k].exp().sum(-1).mean().item()
        table[f"k={k:03d}"] = row
        ctx.info(
            f"T={temperature:g} k={k:3d}: variance MC {row['monte_carlo']['variance']:.4g}, "
            f"SBS {row['sbs']['variance']:.4g}, "
            f"SBS normalised {row['sbs_normalised']['variance']:.4g}"
        )
    return table


def run(cfg: Config, ctx: RunContext) -> None:
    # Data and vocabulary: 0 = bos, 1 = eos, then the characters.
    lines = load_lines(cfg.data)
    chars = sorted(set("".join(lines)))
    stoi = {c: i + 2 for i, c in enumerate(chars)}
    bos, eos, vocab = 0, 1, len(chars) + 2
    windows, targets = training_pairs(lines, stoi, cfg.model.context, bos, eos)
    windows, targets = windows.to(ctx.device), targets.to(ctx.device)

    model = CharMLP(vocab, cfg.model.context, cfg.model.embedding_dim, cfg.model.hidden_size)
    model = model.to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    start, _ = ctx.restore({"model": model, "optimizer": optimizer})
    for step in ctx.progress(range(start, cfg.train.steps), initial=start, desc="train"):
        index = torch.randint(
            len(targets), (cfg.train.batch_size,), generator=ctx.generator, device=ctx.device
        )
        loss = F.nll_loss(model(windows[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 100 == 0 or step + 1 == cfg.train.steps:
            ctx.log(step + 1, train_nll=loss.item())
    if cfg.train.steps > start:
        ctx.save_checkpoint(cfg.train.steps, {"model": model, "optimizer": optimizer})
    model.eval()

    # Searches on their own generator; the step function sees every beam of every repeat.
    g = ctx.make_generator("search")
    max_len, repeats = cfg.search.max_len, cfg.search.repeats
    results = {}
    for temperature in cfg.search.temperatures:
        results[f"T={temperature:g}"] = compare_estimators(
            model, temperature, cfg.search, bos, eos, ctx, g
        )

    examples = stochastic_beam_search(
        lambda prefixes: model(prefixes).detach(), bos, 8, max_len, eos, generator=g
    )
    itos = {i: c for c, i in stoi.items()}
    samples = [
        "".join(itos.get(t, "") for t in s[1:] if t != eos) for s in examples.sequences.tolist()
    ]
    ctx.write_summary(
        {
            "reference_samples": cfg.search.reference_samples,
            "repeats": repeats,
            "max_len": max_len,
            "num_lines": len(lines),
            "vocab_size": vocab,
            "table": results,
            "final_train_nll": ctx.read_metrics()[-1]["train_nll"] if ctx.read_metrics() else None,
            "sbs_samples_k8": samples,
        }
    )
    plot(results, ctx)


def plot(results: dict, ctx: RunContext) -> None:
    n = len(results)
    fig, axes = new_figure(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (temp, table) in zip(axes[0], results.items()):
        keys = [key for key in table if key.startswith("k=")]
        ks = [int(key[2:]) for key in keys]
        for name, label in (
            ("monte_carlo", "Monte Carlo (with replacement)"),
            ("sbs", "stochastic beam, importance-weighted"),
            ("sbs_normalised", "stochastic beam, normalised"),
        ):
            variances = [max(table[key][name]["variance"], 1e-12) for key in keys]
            ax.plot(ks, variances, "o-", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("samples k")
        ax.set_ylabel("variance of the estimate of E[length]")
        ax.set_title(f"model at {temp}: E[length] = {table['reference']:.2f}")
    axes[0][0].legend(fontsize=8)
    ctx.save_figure(fig, "estimator_variance")

    records = ctx.read_metrics()
    fig, ax = new_figure(figsize=(6, 4))
    ax.plot([r["step"] for r in records], [r["train_nll"] for r in records])
    ax.set_xlabel("step")
    ax.set_ylabel("training NLL per character (nats)")
    ctx.save_figure(fig, "training")
