"""Named, constrained draws of a model: the result of ``bt.infer.mcmc`` and ``advi``."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bayestorch.infer.density import LatentSite, ModelDensity, ObservedSite
from bayestorch.mcmc import diagnostics

__all__ = ["Posterior", "constrain_draws", "scalar_names"]

_CHUNK = 4096  # draws constrained per vmapped call (bounds memory)

_ARVIZ_STAT_NAMES = {  # our Info field names -> arviz's sample_stats names
    "accept_prob": "acceptance_rate",
    "is_divergent": "diverging",
    "energy": "energy",
    "num_steps": "n_steps",
    "tree_depth": "tree_depth",
    "step_size": "step_size",
}


def constrain_draws(density: ModelDensity, z: Tensor, pointwise: bool = False):
    """``density.constrain`` (or ``pointwise_log_likelihood``) over draws ``(chains, draws,
    dim)``, in chunks (a density with ``chain_data`` gives each draw its chain's data).

    Shape: ``(chains, draws, dim) -> {name: (chains, draws, *site_shape)}``.
    """
    lead = z.shape[:-1]
    flat = z.reshape(-1, z.shape[-1]).detach()
    chain_data = density.chain_data
    per_draw = None
    if chain_data:
        per_draw = {
            name: value.unsqueeze(1).expand(lead + value.shape[1:]).reshape((-1,) + value.shape[1:])
            for name, value in chain_data.items()
        }
    fn = density.pointwise_log_likelihood if pointwise else density.constrain
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, flat.shape[0], _CHUNK):
                if per_draw is not None:
                    density.chain_data = {n: v[start : start + _CHUNK] for n, v in per_draw.items()}
                parts.append(fn(flat[start : start + _CHUNK]))
    finally:
        density.chain_data = chain_data
    return {
        name: torch.cat([p[name] for p in parts]).reshape(lead + parts[0][name].shape[1:])
        for name in parts[0]
    }


def scalar_names(name: str, shape: torch.Size) -> list[str]:
    """``theta[0]``, ``theta[1]``, ... (row-major) for a site of shape ``shape``."""
    if len(shape) == 0:
        return [name]
    return [
        f"{name}[{', '.join(map(str, index))}]"
        for index in itertools.product(*(range(s) for s in shape))
    ]


def _site_dims(name: str, shape: torch.Size, event_dim: int, plates) -> list[str]:
    """arviz dim names: a plate's name where a plate sits, ``name_dim_i`` elsewhere."""
    dims = [f"{name}_dim_{i}" for i in range(len(shape))]
    batch = len(shape) - event_dim
    for plate_name, dim, _ in plates:
        if batch + dim >= 0:
            dims[batch + dim] = plate_name
    return dims


@dataclass
class Posterior:
    """Draws of a model's latent and deterministic sites, constrained and named.

    Attributes:
        draws: ``{name: (chains, draws, *site_shape)}``.
        density: the ``ModelDensity`` the draws came from.
        samples: the unconstrained draws ``(chains, draws, dim)``.
        stats: per-draw sampler statistics ``{name: (chains, draws)}`` (empty for ADVI).
        result: the ``bt.mcmc.SampleResult`` (``None`` for ADVI).
    """

    draws: dict[str, Tensor]
    density: ModelDensity
    samples: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)
    result: Any = None

    @property
    def num_chains(self) -> int:
        return self.samples.shape[0]

    @property
    def num_draws(self) -> int:
        return self.samples.shape[1]

    @property
    def num_divergent(self) -> int:
        """Divergent transitions after warm-up, all chains."""
        div = self.stats.get("is_divergent")
        return 0 if div is None else int(div.sum())

    def _columns(self) -> tuple[Tensor, list[str]]:
        chains, draws = self.samples.shape[:2]
        columns, names = [], []
        for name, value in self.draws.items():
            shape = value.shape[2:]
            columns.append(value.reshape(chains, draws, -1).to(self.samples.dtype))
            names.extend(scalar_names(name, shape))
        return torch.cat(columns, dim=-1), names

    def summary(self) -> dict[str, dict[str, float]]:
        """``{scalar name: {mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk,
        ess_tail, r_hat}}``, one entry per scalar (``theta[3]``)."""
        columns, names = self._columns()
        stats = diagnostics.summary(columns)
        return {n: {k: float(v[i]) for k, v in stats.items()} for i, n in enumerate(names)}

    def summary_table(self, max_rows: int | None = 40) -> str:
        """The summary as a fixed-width text table, plus divergences."""
        columns, names = self._columns()
        table = diagnostics.format_summary(diagnostics.summary(columns), names, max_rows)
        lines = [table]
        if "is_divergent" in self.stats:
            total = self.stats["is_divergent"].numel()
            lines.append(f"divergent transitions: {self.num_divergent} of {total}")
        return "\n".join(lines)

    def log_likelihood(self) -> dict[str, Tensor]:
        """Pointwise log-likelihood of each observed site at each draw.

        Shape: ``{name: (chains, draws, *obs_batch_shape)}``.
        """
        if not hasattr(self, "_log_likelihood"):
            self._log_likelihood = constrain_draws(self.density, self.samples, pointwise=True)
        return self._log_likelihood

    def to_arviz(
        self,
        posterior_predictive: dict[str, Tensor] | None = None,
        prior: dict[str, Tensor] | None = None,
        prior_predictive: dict[str, Tensor] | None = None,
    ):
        """An ``arviz.InferenceData``: posterior, sample_stats (arviz's names:
        ``diverging`` is ``is_divergent``, ``acceptance_rate`` is ``accept_prob``),
        observed_data, pointwise log_likelihood (so ``az.loo``/``az.waic`` work), and the
        predictive / prior draws passed in (``bt.infer.predictive``'s output; prior draws
        ``(num_samples, ...)`` become one chain). Dims are named after plates."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # arviz's refactor notice
                import arviz
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("to_arviz() needs arviz: pip install arviz") from error
        density = self.density
        dims: dict[str, list[str]] = {}

        def numpy(value: Tensor):
            return value.detach().cpu().numpy()

        def site_dims(name: str, shape: torch.Size) -> None:
            site: LatentSite | ObservedSite
            if name in density.latent_sites:
                site = density.latent_sites[name]
                dims[name] = _site_dims(name, shape, site.event_dim, site.plates)
            elif name in density.observed_sites:
                site = density.observed_sites[name]
                dims[name] = _site_dims(name, shape, site.event_dim, site.plates)
            elif name in density.deterministic_plates:
                dims[name] = _site_dims(name, shape, 0, density.deterministic_plates[name])

        posterior = {}
        for name, value in self.draws.items():
            posterior[name] = numpy(value)
            site_dims(name, value.shape[2:])
        observed = {}
        for name, site in density.observed_sites.items():
            observed[name] = numpy(site.value)
            site_dims(name, site.value.shape)
        log_lik = {}
        for name, value in self.log_likelihood().items():
            log_lik[name] = numpy(value)
            if name not in dims:
                dims[name] = [f"{name}_dim_{i}" for i in range(value.dim() - 2)]

        def as_chains(draws: dict[str, Tensor] | None, chains: bool):
            if draws is None:
                return None
            return {n: numpy(v if chains else v.unsqueeze(0)) for n, v in draws.items()}

        stats = {_ARVIZ_STAT_NAMES.get(k, k): numpy(v) for k, v in self.stats.items()}
        with warnings.catch_warnings():
            # many short chains are this library's normal layout, not a transposed array
            warnings.filterwarnings("ignore", message="More chains")
            return arviz.from_dict(
                posterior=posterior,
                sample_stats=stats or None,
                log_likelihood=log_lik or None,
                observed_data=observed or None,
                posterior_predictive=as_chains(posterior_predictive, True),
                prior=as_chains(prior, False),
                prior_predictive=as_chains(prior_predictive, False),
                dims={n: d for n, d in dims.items() if d},
            )

    def __repr__(self) -> str:
        sites = ", ".join(f"{n}: {tuple(v.shape)}" for n, v in self.draws.items())
        return f"Posterior({self.num_chains} chains x {self.num_draws} draws; {sites})"
