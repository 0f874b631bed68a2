"""``ModelDensity``: a model as a log density on an unconstrained space, for many chains.

Tracing the model once tells its sites, their shapes and supports. Each latent site ``x``
with support ``S`` is sampled as ``u`` with ``x = T(u)``, ``T = biject_to(S)``, and its
term is ``log p(x) + log |det dT/du|``. The flat vector ``z`` of shape ``(chains, dim)``
holds every latent site's ``u``, flattened, in the order the model visits them.

Many chains are one evaluation: the model, written for one parameter set, runs under
``torch.func.vmap`` over the chains (one chain runs it plainly). Argument validation of
torch.distributions is off inside that evaluation (its checks branch on values, which
vmap cannot do); the first trace, with validation on, checks observations and supports.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from bayestorch.infer.gradient import GradientGraphs, check_gradient_mode
from bayestorch.infer.primitives import lazy_plates
from bayestorch.infer.runtime import Handler
from bayestorch.infer.transforms import biject_to
from bayestorch.infer.vmap_rules import site_log_prob
from bayestorch.utils.autograd import DENSITY_ERRORS
from bayestorch.utils.random import check_generator_device

__all__ = ["LatentSite", "ModelDensity", "ObservedSite"]

INIT_STRATEGIES = ("uniform", "prior", "median")
_INIT_ATTEMPTS = 100  # Stan's: redraws of an initial point whose log density is not finite


@dataclass(frozen=True)
class LatentSite:
    """A latent sample site: its constrained ``shape``, unconstrained ``unconstrained_shape``,
    and where its ``size`` coordinates sit in ``z`` (``offset``). ``plates``: ``(name, dim,
    size)`` of the enclosing plates."""

    name: str
    shape: torch.Size
    unconstrained_shape: torch.Size
    offset: int
    size: int
    support: Any
    event_dim: int
    plates: tuple[tuple[str, int, int], ...]

    def slice(self, z: Tensor) -> Tensor:
        """This site's unconstrained value in one chain's ``z`` (``(dim,)``), shaped
        ``unconstrained_shape`` (a view: no reshape where the shape is () or 1-d)."""
        if len(self.unconstrained_shape) == 0:
            return z[self.offset]
        part = z[self.offset : self.offset + self.size]
        return part if len(self.unconstrained_shape) == 1 else part.view(self.unconstrained_shape)


@dataclass(frozen=True)
class ObservedSite:
    """An observed sample site with its observation ``value`` and enclosing plates."""

    name: str
    value: Tensor
    event_dim: int
    plates: tuple[tuple[str, int, int], ...]


class ModelError(ValueError):
    """A model that cannot be turned into a density; the message names the site."""


@contextlib.contextmanager
def _validation(enabled: bool) -> Iterator[None]:
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


def vectorised(fn: Callable[[Any], Any], inputs: Any, randomness: str = "error") -> Any:
    """``fn`` (one chain's input -> pytree of tensors) over the leading dim of every leaf of
    ``inputs``: plainly for one element, under ``torch.func.vmap`` for more. Validation
    of torch.distributions' arguments is off inside (vmap cannot branch on values)."""
    pytree = torch.utils._pytree
    with _validation(False):
        if pytree.tree_leaves(inputs)[0].shape[0] == 1:
            out = fn(pytree.tree_map(lambda t: t[0], inputs))
            return pytree.tree_map(lambda t: t.unsqueeze(0), out)
        try:
            return torch.func.vmap(fn, randomness=randomness)(inputs)
        except ModelError:
            raise
        except RuntimeError as error:
            if "vmap" not in str(error) and "batched" not in str(error).lower():
                raise
            raise ModelError(
                "the model cannot run for many chains at once under torch.func.vmap: "
                f"{error}. A model must not branch on site values in Python, call "
                ".item()/.tolist() on them, or modify them in place"
            ) from error


def simulate(fn: Callable[[Any], Any], inputs: Any) -> Any:
    """``fn`` over the leading dim of ``inputs`` where ``fn`` draws random numbers.

    One ``vmap(randomness="different")`` call; where vmap cannot batch a sampler (families
    that fill an unbatched tensor in place, such as Cauchy and Exponential; Gamma, Beta and
    Dirichlet, whose sampler is an autograd.Function without vmap support) it falls back
    to one run per element (simulation only: densities never loop over chains).
    """
    try:
        with warnings.catch_warnings():
            # vmap's loop fallback for an op without a batching rule (Gamma's in-place
            # clamp_): take the one-run-per-element path below instead of warning.
            warnings.filterwarnings("error", message="There is a performance drop")
            return vectorised(fn, inputs, randomness="different")
    except UserWarning:
        pass
    except ModelError as error:
        if not isinstance(error.__cause__, (RuntimeError, UserWarning)):  # a model error
            raise
    pytree = torch.utils._pytree
    num = pytree.tree_leaves(inputs)[0].shape[0]
    with _validation(False):
        outs = [fn(pytree.tree_map(lambda t, i=i: t[i], inputs)) for i in range(num)]
    return pytree.tree_map(lambda *leaves: torch.stack(leaves), *outs)


class _Trace(Handler):
    """Record every site of one run (names unique); latent values come from the prior."""

    def __init__(self) -> None:
        self.sites: dict[str, dict[str, Any]] = {}
        self.plates: dict[str, int] = {}

    def process(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "plate":
            if msg["name"] in self.plates or msg["name"] in self.sites:
                raise ModelError(f"duplicate name {msg['name']!r}: plate names must be unique")
            self.plates[msg["name"]] = msg["args"][0]

    def postprocess(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "plate":
            return
        name = msg["name"]
        if name in self.sites or name in self.plates:
            raise ModelError(f"duplicate site name {name!r}: every site needs its own name")
        self.sites[name] = dict(msg)


class _Run(Handler):
    """One evaluation of the model at unconstrained ``z`` (1-d, one chain; may be batched
    by vmap): substitutes the latent values and adds up the log density.

    ``mode``: ``"log_prob"`` (the total), ``"values"`` (latent and deterministic values),
    ``"pointwise"`` (observed sites' unsummed log-likelihoods), ``"terms"`` (each
    site's summed term, for error messages).
    """

    def __init__(self, density: ModelDensity, z: Tensor | None, jacobian: bool = True):
        self.density, self.z, self.jacobian = density, z, jacobian
        self.total: Tensor | float = 0.0
        self.values: dict[str, Tensor] = {}
        self.pointwise: dict[str, Tensor] = {}
        self.terms: dict[str, Tensor] = {}
        self.visited: list[str] = []

    def process(self, msg: dict[str, Any]) -> None:
        kind, name = msg["type"], msg["name"]
        if kind == "plate":
            msg["value"] = self.density._indices(name)
            return
        if kind != "sample" or msg["is_observed"]:
            return
        site = self.density.latent_sites.get(name)
        if site is None:
            raise ModelError(
                f"the model's sites changed between calls: latent site {name!r} was not in "
                f"its first trace (sites {list(self.density.latent_sites)}); a model must "
                "visit the same sites every time"
            )
        assert self.z is not None
        u = site.slice(self.z)
        fn = msg["fn"]
        transform = biject_to(fn.support)
        value = u if transform is None else transform(u)
        msg["value"] = value
        if transform is not None and self.jacobian:
            self._add(name + ":jacobian", _summed(transform.log_abs_det_jacobian(u, value)))

    def postprocess(self, msg: dict[str, Any]) -> None:
        kind, name = msg["type"], msg["name"]
        if kind == "plate":
            return
        self.visited.append(name)
        if kind == "deterministic":
            self.values[name] = msg["value"]
            return
        scale = msg["scale"]
        if kind == "factor":
            self._add(name, _summed(msg["value"]) * scale)
            return
        log_prob = site_log_prob(msg["fn"], msg["value"])
        if msg["is_observed"]:
            if self.density._record_pointwise:
                self.pointwise[name] = log_prob
        else:
            self.values[name] = msg["value"]
        self._add(name, _summed(log_prob) * scale if scale != 1.0 else _summed(log_prob))

    def _add(self, name: str, term: Tensor) -> None:
        self.total = term if isinstance(self.total, float) else self.total + term
        if self.density._record_terms:
            self.terms[name] = self.terms.get(name, 0.0) + term

    def check_complete(self) -> None:
        expected = self.density._site_order
        if self.visited != expected:
            missing = [n for n in expected if n not in self.visited]
            raise ModelError(
                "the model's sites changed between calls: first trace visited "
                f"{expected}, this run {self.visited}"
                + (f" (missing {missing})" if missing else "")
            )


def _summed(term: Tensor) -> Tensor:
    return term if term.dim() == 0 else term.sum()


class ModelDensity:
    """A model's log density on the unconstrained space of its latent sites.

    ``ModelDensity(model, *args, **kwargs)`` traces ``model(*args, **kwargs)`` once; every
    later evaluation calls the model with the same arguments.

    ``chain_data`` (an attribute, ``None`` by default) gives each chain its own values of
    some model keywords: ``{name: (chains, ...)}``; chain ``c`` runs the model with
    ``name=chain_data[name][c]`` (many independent data sets in one batch: simulation-based
    calibration, bootstrap, many small problems). Their shapes must equal the traced ones.

    Attributes:
        dim: number of unconstrained coordinates.
        latent_sites, observed_sites: dicts of ``LatentSite`` / ``ObservedSite``.
        deterministic_sites: names of the ``deterministic`` sites.
        dtype: the run's: the widest floating dtype among the traced latent values and
            the observations (float64 data give a float64 run).
        device: the accelerator of the observations or latent draws, if any; else CPU.
        gradient_mode: how ``value_and_grad`` differentiates: ``"eager"`` (default),
            ``"traced"`` or ``"compiled"`` (one traced graph per number of chains, see
            ``value_and_grad``; ``bt.infer.mcmc`` chooses with its ``gradient`` argument).

    Shape:
        ``log_prob``: ``(chains, dim) -> (chains,)``.
    """

    def __init__(self, model: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        self.model, self.args, self.kwargs = model, args, kwargs
        self._plate_indices: dict[str, Tensor] = {}
        self._arange: dict[str, Tensor] = {}
        self._record_pointwise = False
        self._record_terms = False
        self.subsample_generator: torch.Generator | None = None
        self.chain_data: dict[str, Tensor] | None = None
        self._gradient_mode = "eager"
        self._gradients = GradientGraphs(self)
        self._build(self._trace())

    # -- tracing --------------------------------------------------------------------------
    def _trace(self) -> _Trace:
        tracer = _Trace()
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda), _validation(True):
            torch.manual_seed(0)
            with tracer:
                self.model(*self.args, **self.kwargs)
        return tracer

    def _build(self, tracer: _Trace) -> None:
        self.latent_sites: dict[str, LatentSite] = {}
        self.observed_sites: dict[str, ObservedSite] = {}
        self.deterministic_sites: list[str] = []
        self.deterministic_plates: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self.plates = dict(tracer.plates)
        self._subsampled = {}
        offset = 0
        dtypes, device = [], None
        for name, msg in tracer.sites.items():
            plates = tuple(msg["plates"])
            if msg["type"] == "deterministic":
                self.deterministic_sites.append(name)
                self.deterministic_plates[name] = plates
                continue
            if msg["type"] != "sample":
                continue
            fn = msg["fn"]
            event_dim = len(fn.event_shape)
            if msg["is_observed"]:
                self._check_observation(name, fn, msg["value"])
                self.observed_sites[name] = ObservedSite(name, msg["value"], event_dim, plates)
                if msg["value"].is_floating_point():
                    dtypes.append(msg["value"].dtype)
                if msg["value"].device.type != "cpu":
                    device = msg["value"].device  # the data's accelerator is the run's
                continue
            if fn.support.is_discrete:
                raise ModelError(
                    f"latent site {name!r} is discrete ({type(fn).__name__}, support "
                    f"{fn.support}): gradient-based inference needs continuous latents; "
                    "marginalise it out of the model (sum its values with logsumexp in a "
                    "bt.factor) or sample it with a Gibbs step"
                )
            for plate_name, _, size in plates:
                if size != tracer.plates[plate_name]:
                    raise ModelError(
                        f"latent site {name!r} is inside the subsampled plate "
                        f"{plate_name!r}: local latent variables cannot be subsampled; "
                        "only observed sites may sit in a subsampled plate"
                    )
            shape = msg["value"].shape
            try:
                transform = biject_to(fn.support)
            except NotImplementedError:
                raise ModelError(
                    f"latent site {name!r}: its support {fn.support} has no bijection from "
                    "the real numbers; reparameterise the site or register one with "
                    "torch.distributions.biject_to.register"
                ) from None
            ushape = shape if transform is None else transform.inverse_shape(shape)
            size = math.prod(ushape)
            self.latent_sites[name] = LatentSite(
                name, shape, torch.Size(ushape), offset, size, fn.support, event_dim, plates
            )
            offset += size
            dtypes.append(msg["value"].dtype)
            if msg["value"].device.type != "cpu":
                device = msg["value"].device
        self._site_order = list(tracer.sites)
        self._subsampled = {
            name: (size, sub)
            for name, (size, sub) in self._plate_args(tracer).items()
            if sub is not None and sub < size
        }
        self.dim = offset
        self.dtype = dtypes[0] if dtypes else torch.get_default_dtype()
        for d in dtypes[1:]:
            self.dtype = torch.promote_types(self.dtype, d)
        if not self.dtype.is_floating_point:
            self.dtype = torch.get_default_dtype()
        self.device = device if device is not None else torch.device("cpu")
        if self.dim == 0:
            raise ModelError("the model has no latent sample site: nothing to infer")

    def _plate_args(self, tracer: _Trace) -> dict[str, tuple[int, int | None]]:
        args = {}
        for msg in tracer.sites.values():
            for plate_name, _, size in msg["plates"]:
                full = tracer.plates[plate_name]
                args[plate_name] = (full, size if size != full else None)
        return args

    @staticmethod
    def _check_observation(name: str, fn: Distribution, value: Tensor) -> None:
        site_shape = fn.batch_shape + fn.event_shape
        try:
            broadcast = torch.broadcast_shapes(site_shape, value.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != value.shape:
            raise ModelError(
                f"observed site {name!r}: obs has shape {tuple(value.shape)} but the site's "
                f"distribution has shape {tuple(site_shape)} (batch {tuple(fn.batch_shape)} "
                f"+ event {tuple(fn.event_shape)}); they must match (or the distribution "
                "broadcast to the observation)"
            )
        support = fn.support
        assert support is not None
        inside = support.check(value)
        if not bool(inside.all()):
            bad = (~inside).nonzero()[:5].tolist()
            raise ModelError(
                f"observed site {name!r}: obs lies outside the support {fn.support} of "
                f"{type(fn).__name__} at index {bad}"
            )

    # -- evaluation -----------------------------------------------------------------------
    def _check_z(self, z: Tensor) -> None:
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(
                f"z must have shape (chains, dim) = (chains, {self.dim}), got {tuple(z.shape)}"
            )

    def _run(self, z: Tensor, data: dict[str, Tensor], jacobian: bool = True) -> _Run:
        run = _Run(self, z, jacobian)
        with run, lazy_plates():
            self.model(*self.args, **{**self.kwargs, **data})
        run.check_complete()
        return run

    def _chain_data(self, z: Tensor) -> dict[str, Tensor]:
        data = self.chain_data or {}
        for name, value in data.items():
            if value.shape[0] != z.shape[0]:
                raise ValueError(
                    f"chain_data[{name!r}] has {value.shape[0]} rows, z has {z.shape[0]} chains"
                )
        return dict(sorted(data.items()))

    def _over_chains(
        self,
        fn: Callable[[Tensor, dict[str, Tensor]], Any],
        z: Tensor,
        data: dict[str, Tensor] | None = None,
    ) -> Any:
        """``fn(z_chain, chain_data_chain)`` for every chain, as one vectorised call."""
        data = self._chain_data(z) if data is None else data
        return vectorised(lambda inputs: fn(*inputs), (z, data))

    def _draw_subsamples(self) -> None:
        self._plate_indices = {
            name: torch.randperm(size, generator=self.subsample_generator, device=self.device)[:sub]
            for name, (size, sub) in self._subsampled.items()
        }

    def log_prob(self, z: Tensor, jacobian: bool = True) -> Tensor:
        """Unnormalised log density at unconstrained ``z``, log-Jacobians included.

        With ``jacobian=False`` the Jacobian terms are left out: the log density of the
        constrained values (what a posterior mode, ``bt.infer.map``, maximises). Plates with
        a ``subsample_size`` draw fresh indices at each call (``subsample_generator``).

        Shape:
            ``(chains, dim) -> (chains,)``.
        """
        self._check_z(z)
        self._draw_subsamples()
        return self._log_prob(z, self._chain_data(z), jacobian)

    __call__ = log_prob

    def _log_prob(self, z: Tensor, data: dict[str, Tensor], jacobian: bool) -> Tensor:
        """``log_prob`` at the current plate indices, ``chain_data`` given (checked)."""

        def single(zc: Tensor, chain: dict[str, Tensor]) -> Tensor:
            total = self._run(zc, chain, jacobian).total
            return total if isinstance(total, Tensor) else zc.new_tensor(total)

        return self._over_chains(single, z, data)

    @property
    def gradient_mode(self) -> str:
        """How ``value_and_grad`` computes: ``"eager"`` (the default: autograd through
        ``log_prob``), ``"traced"`` (one ``make_fx`` graph of the value and gradient per
        number of chains) or ``"compiled"`` (that graph compiled by ``torch.compile``)."""
        return self._gradient_mode

    @gradient_mode.setter
    def gradient_mode(self, mode: str) -> None:
        self._gradient_mode = check_gradient_mode(mode)

    @property
    def gradient_reasons(self) -> dict[tuple, str]:
        """Per traced layout ``(mode, chains, dtype, device, jacobian, chain_data layout)``,
        the path ``value_and_grad`` takes: ``"traced ..."``, ``"compiled ..."``, or why it
        stays eager."""
        return dict(self._gradients.reasons)

    def value_and_grad(
        self, z: Tensor, jacobian: bool = True, mode: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``log_prob(z)`` and its gradient in ``z``, detached; fast on small models.

        ``mode`` (default ``self.gradient_mode``): ``"eager"`` differentiates ``log_prob``
        with autograd. ``"traced"`` traces the value and gradient once per number of
        chains, dtype, device, ``jacobian`` and ``chain_data`` layout with
        ``torch.fx.experimental.proxy_tensor.make_fx`` (on fake tensors: no value is seen)
        into a graph of ATen operations (no handlers, vmap or torch.distributions Python
        left) and runs it; ``"compiled"`` also compiles that graph with ``torch.compile``
        (``dynamic=False``, backend ``BAYESTORCH_COMPILE_BACKEND`` or inductor; seconds, once
        per layout). ``bayestorch.utils.log_prob_and_grad`` calls this method when it is
        given the density itself, so ``bt.mcmc.NUTS(density)`` gets the fast gradient.

        What stays exact:

        * Subsampled plates: their indices are drawn in eager at each call (as
          ``log_prob`` does, from ``subsample_generator``) and are inputs of the graph, as
          are the ``chain_data`` tensors. The model's own arguments are constants of the
          graph: build a new density for new data.
        * A model that cannot be traced (it branches on a value, calls ``.item()``, ...) or
          whose graph draws random numbers runs eagerly; a ``RuntimeWarning`` says why, once
          per density (``gradient_reasons`` keeps the reason). A ``torch.compile`` failure
          warns once and runs the traced graph.
        * A graph call that raises, or gives a non-finite value or gradient, is redone
          eagerly: an exception of the density (a failed Cholesky) is raised as in eager,
          so ``log_prob_and_grad``'s guard rejects those chains.

        Shape:
            ``(chains, dim) -> (chains,), (chains, dim)``.
        """
        self._check_z(z)
        mode = self.gradient_mode if mode is None else check_gradient_mode(mode)
        data = self._chain_data(z)
        self._draw_subsamples()
        if mode != "eager":
            graph = self._gradients.get(mode, z, data, self._plate_indices, jacobian)
            if graph is not None:
                try:
                    with torch.no_grad():
                        # contiguous: one stride pattern, so no recompilation
                        log_prob, grad, finite = graph(
                            z.detach().contiguous(), *data.values(), *self._plate_indices.values()
                        )
                except DENSITY_ERRORS:
                    pass  # the eager path below raises it again, or answers
                else:
                    if finite:  # else the eager path decides (it may raise)
                        return log_prob, grad
        with torch.enable_grad():
            x = z.detach().requires_grad_(True)
            log_prob = self._log_prob(x, data, jacobian)
            if not log_prob.requires_grad:  # no latent value enters the density
                return log_prob.detach(), torch.zeros_like(x)
            (grad,) = torch.autograd.grad(log_prob.sum(), x)
        return log_prob.detach(), grad.detach()

    def constrain(self, z: Tensor) -> dict[str, Tensor]:
        """Named constrained values of the latent sites and the deterministic sites.

        Shape:
            ``(chains, dim) -> {name: (chains, *site_shape)}``.
        """
        self._check_z(z)
        self._plate_indices = self._full_indices()
        return self._over_chains(lambda zc, data: self._run(zc, data).values, z)

    def pointwise_log_likelihood(self, z: Tensor) -> dict[str, Tensor]:
        """Each observed site's log-likelihood, one value per observation (unscaled).

        Shape:
            ``(chains, dim) -> {name: (chains, *obs_batch_shape)}``.
        """
        self._check_z(z)
        self._plate_indices = self._full_indices()
        self._record_pointwise = True
        try:
            return self._over_chains(lambda zc, data: self._run(zc, data).pointwise, z)
        finally:
            self._record_pointwise = False

    def site_log_probs(self, z: Tensor) -> dict[str, Tensor]:
        """Each site's summed log-density term (Jacobians as ``name:jacobian``).

        Shape:
            ``(chains, dim) -> {name: (chains,)}``.
        """
        self._check_z(z)
        self._record_terms = True
        try:
            self._draw_subsamples()
            return self._over_chains(lambda zc, data: self._run(zc, data).terms, z)
        finally:
            self._record_terms = False

    def _indices(self, plate_name: str) -> Tensor:
        """The plate's indices in this evaluation: a fresh subsample, or all (cached)."""
        indices = self._plate_indices.get(plate_name)
        if indices is None:
            indices = self._arange.get(plate_name)
            if indices is None:
                indices = torch.arange(self.plates[plate_name], device=self.device)
                self._arange[plate_name] = indices
        return indices

    def _cache_plate_ranges(self) -> None:
        for name in self.plates:
            if name not in self._arange:
                self._arange[name] = torch.arange(self.plates[name], device=self.device)

    def _full_indices(self) -> dict[str, Tensor]:
        return {
            name: torch.arange(size, device=self.device)
            for name, (size, _) in self._subsampled.items()
        }

    def unconstrain(self, values: Mapping[str, Tensor]) -> Tensor:
        """Inverse of ``constrain``: named constrained latent values -> ``z``.

        Shape:
            ``{name: (chains, *site_shape)} -> (chains, dim)``.
        """
        missing = [n for n in self.latent_sites if n not in values]
        if missing:
            raise ValueError(f"unconstrain needs a value for every latent site; missing {missing}")
        chains = None
        for name, site in self.latent_sites.items():
            value = torch.as_tensor(values[name])
            if value.shape[1:] != site.shape:
                raise ValueError(
                    f"unconstrain: site {name!r} needs values of shape (chains, "
                    f"{', '.join(map(str, site.shape))}), got {tuple(value.shape)}"
                )
            if chains is not None and value.shape[0] != chains:
                raise ValueError("unconstrain: every site needs the same number of chains")
            chains = value.shape[0]
        stacked = {n: torch.as_tensor(values[n]) for n in self.latent_sites}
        self._plate_indices = self._full_indices()
        return vectorised(self._unconstrain_one, stacked)

    def _unconstrain_one(self, values: dict[str, Tensor]) -> Tensor:
        handler = _Substitute(self, values)
        with handler:
            self.model(*self.args, **self.kwargs)
        return torch.cat([handler.unconstrained[n].reshape(-1) for n in self.latent_sites])

    # -- initial points -------------------------------------------------------------------
    def init(
        self,
        chains: int,
        generator: torch.Generator | None = None,
        strategy: str = "uniform",
        radius: float = 2.0,
    ) -> Tensor:
        """Initial unconstrained points whose log density is finite.

        ``"uniform"``: each coordinate uniform on ``(-radius, radius)`` (Stan's);
        ``"prior"``: a draw from the prior; ``"median"``: per chain, the coordinate-wise
        median of 15 prior draws. A chain whose log density is not finite is redrawn
        (up to 100 times); then the error names the sites whose term is not finite.

        Shape:
            returns ``(chains, dim)`` on ``self.device``, dtype ``self.dtype``.
        """
        if isinstance(chains, bool) or not isinstance(chains, int) or chains < 1:
            raise ValueError(f"chains must be a positive int, got {chains!r}")
        if strategy not in INIT_STRATEGIES:
            raise ValueError(f"unknown init strategy {strategy!r}; choose one of {INIT_STRATEGIES}")
        check_generator_device(generator, self.device)
        z = self._draw_init(chains, generator, strategy, radius)
        for _ in range(_INIT_ATTEMPTS):
            bad = ~torch.isfinite(self.log_prob(z).detach())
            if not bool(bad.any()):
                return z
            fresh = self._draw_init(int(bad.sum()), generator, strategy, radius)
            z = z.clone()
            z[bad] = fresh
        self._raise_not_finite(z[bad][:1], strategy)
        raise AssertionError("unreachable")  # pragma: no cover

    def _draw_init(self, chains: int, generator, strategy: str, radius: float) -> Tensor:
        if strategy == "uniform":
            u = torch.rand(
                chains, self.dim, generator=generator, dtype=self.dtype, device=self.device
            )
            return (2 * u - 1) * radius
        draws = 15 if strategy == "median" else 1
        z = self.prior_unconstrained(chains * draws, generator)
        if draws > 1:
            z = z.reshape(chains, draws, self.dim).median(dim=1).values
        return z

    def prior_unconstrained(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``num`` prior draws of the latent sites, unconstrained.

        Shape:
            returns ``(num, dim)``.
        """

        def one(_: Tensor) -> Tensor:
            handler = _Substitute(self, None, draw=True)
            with handler:
                self.model(*self.args, **self.kwargs)
            return torch.cat([handler.unconstrained[n].reshape(-1) for n in self.latent_sites])

        with forked_rng(generator, self.device), torch.no_grad():
            self._plate_indices = self._full_indices()
            z = simulate(one, torch.arange(num, device=self.device))
        return z.to(self.dtype)

    def _raise_not_finite(self, z: Tensor, strategy: str) -> None:
        try:
            terms = {k: float(v[0]) for k, v in self.site_log_probs(z).items()}
        except Exception as error:  # the model raised at that point: report that
            raise ModelError(
                f"the model's log density cannot be evaluated at any of {_INIT_ATTEMPTS} "
                f"initial points (strategy {strategy!r}): {type(error).__name__}: {error}"
            ) from error
        bad = [name for name, value in terms.items() if not math.isfinite(value)]
        raise ModelError(
            f"the log density is not finite at {_INIT_ATTEMPTS} initial points (strategy "
            f"{strategy!r}); site(s) {bad} have log-prob {[terms[b] for b in bad]} there. "
            "Check their parameters, supports and observations"
        )


@contextlib.contextmanager
def forked_rng(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Run the body on a private copy of the global RNG seeded from ``generator`` (a draw
    from it), so model code that samples with the global RNG depends on ``generator`` only
    and leaves the global state untouched."""
    seed = int(torch.randint(2**62, (), generator=generator, device=device))
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


class _Substitute(Handler):
    """Run the model at given constrained latent ``values`` (or prior draws when ``None``)
    and record each latent site's unconstrained value."""

    def __init__(
        self,
        density: ModelDensity,
        values: dict[str, Tensor] | None,
        draw: bool = False,
    ) -> None:
        self.density, self.given, self.draw = density, values, draw
        self.unconstrained: dict[str, Tensor] = {}

    def process(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "plate":
            indices = self.density._plate_indices.get(msg["name"])
            if indices is not None:
                msg["value"] = indices
        elif msg["type"] == "sample" and not msg["is_observed"]:
            if self.given is not None and msg["name"] in self.given:
                msg["value"] = self.given[msg["name"]]
            elif self.draw:
                msg["value"] = msg["fn"].sample()

    def postprocess(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        site = self.density.latent_sites.get(msg["name"])
        if site is None:
            raise ModelError(
                f"the model's sites changed between calls: latent site {msg['name']!r} was "
                "not in its first trace"
            )
        transform = biject_to(msg["fn"].support)
        value = msg["value"]
        self.unconstrained[site.name] = value if transform is None else transform.inv(value)
