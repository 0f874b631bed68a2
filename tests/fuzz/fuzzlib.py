"""The fuzzing harness: a registry of public entry points and the contract each call must keep.

A *case* is a function ``case(f: Fuzz) -> output`` that builds a valid call of one public
entry point from hypothesis draws (random shapes, empty and size-1 dimensions included, the
dtype and device of the example) and passes each argument through ``f.arg(name, value)``. At
most one argument of an example is *corrupted* there: a NaN or infinite entry, another dtype,
another Python type, a zero or negative number, or (where the case says the shape is
constrained) another shape. The contract, checked by :func:`run_case`:

* the call raises ``ValueError`` or ``TypeError`` (subclasses included) whose message names the
  corrupted argument (or, for an uncorrupted example, one of the arguments) - never an
  ``IndexError``/``RuntimeError``/``AttributeError`` from deep inside. For a wrong *type*
  (tier ``types``: another dtype, a string, ``None``) the exception class is the contract and
  the message need not name the argument (Python's own ``TypeError`` for ``None < 1`` is
  accepted); for a wrong *value* (tier ``values``) the message must name it; or
* it returns output whose floating tensors are finite (``-inf`` only where the case declares a
  log-probability that may be ``-inf``) and whose shapes the case checks with ``f.expect``;
* a NaN entry is never accepted silently: unless the case says NaN has a meaning there (a
  missing observation), a NaN argument must raise.

Warnings are allowed (they are not silent); they do not change the verdict.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from hypothesis import note
from hypothesis import strategies as st
from torch import Tensor

# --------------------------------------------------------------------------------------------
# Registry


@dataclasses.dataclass(frozen=True)
class Case:
    """A fuzz strategy for one public name; ``examples`` scales the profile's example count."""

    name: str
    fn: Callable[[Fuzz], Any]
    examples: float = 1.0
    xfail: Mapping[str, str] = dataclasses.field(default_factory=dict)  # tier -> "bug: ..."


@dataclasses.dataclass(frozen=True)
class Exempt:
    """A public name with no behaviour to fuzz, and why. ``kind`` is checked against the object."""

    name: str
    kind: str  # "namedtuple", "constant", "exception", "module", "type", "protocol", "covered"
    reason: str


REGISTRY: dict[str, Case | Exempt] = {}


def case(*names: str, examples: float = 1.0, xfail: Mapping[str, str] | None = None):
    """Register ``fn`` as the fuzz case of each of ``names`` (``"subpackage.Name"``).

    ``xfail`` maps a tier (``"valid"``, ``"values"``, ``"types"``) to the reason of a known,
    reported bug (``"bug: ..."``); that tier is then a strict xfail until it is fixed.
    """

    def register(fn):
        for name in names:
            if name in REGISTRY:
                raise KeyError(f"{name} registered twice")
            REGISTRY[name] = Case(name, fn, examples, dict(xfail or {}))
        return fn

    return register


def exempt(kind: str, reason: str, *names: str) -> None:
    for name in names:
        if name in REGISTRY:
            raise KeyError(f"{name} registered twice")
        REGISTRY[name] = Exempt(name, kind, reason)


# --------------------------------------------------------------------------------------------
# Corruptions

_NAN, _POS_INF, _NEG_INF = "nan", "+inf", "-inf"
_NON_FINITE = (_NAN, _POS_INF, _NEG_INF)
_SHAPES = ("one dim fewer", "last dim +1", "extra leading dim")


@dataclasses.dataclass
class Corruption:
    arg: str
    how: str
    value: Any
    must_raise: bool  # NaN (unless declared meaningful): accepting it is a failure
    propagates: bool = False  # a NaN entry may come out as NaN (elementwise maths, like torch)


VALUES, TYPES = "values", "types"
TIERS = ("valid", VALUES, TYPES)  # no corruption; a wrong value; a wrong type or dtype

_WRONG_OBJECTS: tuple[tuple[str, Any], ...] = (
    ("a string", "bogus"),
    ("None", None),
)


def _tensor_corruptions(value: Tensor, nan_ok: bool, inf_ok: bool, neg_inf_ok: bool, shape_fuzz):
    out: list[tuple[str, Callable[[], Any], bool, str]] = []
    if value.is_floating_point() and value.numel() > 0:
        out.append((_NAN, lambda: _put(value, math.nan), not nan_ok, VALUES))
        if not inf_ok:
            out.append((_POS_INF, lambda: _put(value, math.inf), False, VALUES))
        if not (inf_ok or neg_inf_ok):
            out.append((_NEG_INF, lambda: _put(value, -math.inf), False, VALUES))
    if value.is_floating_point():
        other = torch.float32 if value.dtype == torch.float64 else torch.float64
        out.append((f"dtype {other}", lambda: value.to(other), False, TYPES))
        out.append(("dtype int64", lambda: value.round().long(), False, TYPES))
    elif value.dtype == torch.bool:
        out.append(("dtype float", lambda: value.float(), False, TYPES))
    else:
        out.append(("dtype float", lambda: value.float() + 0.5, False, TYPES))
    shape_fuzz = {True: ("fewer", "last"), False: ()}.get(shape_fuzz, shape_fuzz)
    if "fewer" in shape_fuzz and value.dim() > 0:
        out.append(
            ("one dim fewer", lambda: value[0] if len(value) else value.sum(0), False, VALUES)
        )
    if "last" in shape_fuzz and value.dim() > 0:
        out.append(("last dim +1", lambda: torch.cat([value, value[..., :1]], -1), False, VALUES))
    if "extra" in shape_fuzz:
        out.append(("extra leading dim", lambda: torch.stack([value, value]), False, VALUES))
    return out


def _put(value: Tensor, entry: float) -> Tensor:
    out = value.detach().clone(memory_format=torch.contiguous_format)
    out.view(-1)[out.numel() // 2] = entry
    return out


def _scalar_corruptions(value: Any):
    out: list[tuple[str, Callable[[], Any], bool, str]] = []
    if isinstance(value, float):
        out += [
            (_NAN, lambda: math.nan, True, VALUES),
            (_POS_INF, lambda: math.inf, False, VALUES),
            (_NEG_INF, lambda: -math.inf, False, VALUES),
            ("zero", lambda: 0.0, False, VALUES),
            ("negative", lambda: -abs(value) - 1.0, False, VALUES),
            ("0-dim tensor", lambda: torch.tensor(value), False, TYPES),
        ]
    elif isinstance(value, int):  # bool is handled by the caller
        out += [
            ("zero", lambda: 0, False, VALUES),
            ("negative", lambda: -1 - abs(value), False, VALUES),
            ("non-integral float", lambda: value + 0.5, False, TYPES),
        ]
    return out


# --------------------------------------------------------------------------------------------
# The per-example drawing context


class Fuzz:
    """Hypothesis draws for one example, with the bookkeeping of the one corrupted argument."""

    def __init__(self, data: st.DataObject, devices: list[torch.device], tier: str = VALUES):
        self.data = data
        self.tier = tier
        self.corruption: Corruption | None = None
        self.names: list[str] = []
        self.aliases: dict[str, tuple[str, ...]] = {}
        self.neg_inf_out = False
        self._corrupt = tier != "valid"
        self.dtype: torch.dtype = data.draw(
            st.sampled_from([torch.float64, torch.float32]), label="dtype"
        )
        self.device: torch.device = data.draw(st.sampled_from(devices), label="device")
        self._seed = data.draw(st.integers(0, 2**16), label="seed")
        self._count = 0

    # ---- plain draws
    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def size(self, lo: int = 0, hi: int = 4) -> int:
        """A dimension size; ``lo=0`` allows empty dimensions (in the ``valid`` tier only: a
        corrupted example keeps the rest valid, so that its error is the corruption's)."""
        if self.tier != "valid":
            lo = min(max(lo, 1), hi)
        return self.draw(st.integers(lo, hi))

    def shape(self, min_dims: int = 0, max_dims: int = 3, lo: int = 0, hi: int = 4):
        n = self.draw(st.integers(min_dims, max_dims))
        return tuple(self.size(lo, hi) for _ in range(n))

    def generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self._seed + self._count)
        self._count += 1
        return g

    def randn(self, *shape, scale: float = 1.0, dtype: torch.dtype | None = None) -> Tensor:
        g = torch.Generator().manual_seed(self._seed + 7919 * (self._count + 1))
        self._count += 1
        x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
        return x.to(dtype=dtype or self.dtype, device=self.device)

    def rand(self, *shape, lo: float = 0.0, hi: float = 1.0) -> Tensor:
        g = torch.Generator().manual_seed(self._seed + 104729 * (self._count + 1))
        self._count += 1
        x = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
        return x.to(dtype=self.dtype, device=self.device)

    def spd(self, n: int, batch: tuple[int, ...] = (), ridge: float = 0.5) -> Tensor:
        """A well-conditioned symmetric positive-definite ``(*batch, n, n)`` matrix."""
        b = self.randn(*batch, n, n) / max(n, 1) ** 0.5
        return b @ b.mT + ridge * torch.eye(n, dtype=self.dtype, device=self.device)

    def tensor(self, *values, dtype=None) -> Tensor:
        return torch.tensor(values, dtype=dtype or self.dtype, device=self.device)

    # ---- arguments
    def arg(
        self,
        name: str,
        value: Any,
        *,
        nan_ok: bool = False,
        inf_ok: bool = False,
        neg_inf_ok: bool = False,
        shape_fuzz: bool = False,
        wrong_types: bool = True,
        propagates: bool = False,
        aliases: tuple[str, ...] = (),
    ) -> Any:
        """``value``, or (at most once an example) a corrupted version of it, under ``name``.

        ``nan_ok``: NaN has a meaning here (a missing value); ``inf_ok``/``neg_inf_ok``: so has
        ``±inf``/``-inf`` (a masked logit); ``propagates``: an input of elementwise maths
        whose NaN, infinity or out-of-domain value may come out as NaN/inf (torch's own
        semantics, e.g. ``torch.log(-1.)``) instead of an error - a check would cost a device
        synchronisation on a hot path; ``shape_fuzz``: the shape is constrained, another shape
        must raise or broadcast (``True``: a dim fewer or a last dim too long; or a tuple of
        ``"fewer"``, ``"last"``, ``"extra"`` (a leading dim)).
        """
        self.names.append(name)
        if aliases:
            self.aliases[name] = aliases
        if not self._corrupt or self.corruption is not None:
            return value
        options = self._corruptions(value, nan_ok, inf_ok, neg_inf_ok, shape_fuzz, wrong_types)
        options = [option for option in options if option[3] == self.tier]
        if not options:
            return value
        if not self.draw(st.sampled_from([False, True]), label=f"corrupt {name}"):
            return value
        index = self.draw(st.sampled_from(range(len(options))), label=f"how {name}")
        how, make, must_raise, _ = options[index]
        note(f"corrupting {name}: {how}")
        bad = make()
        must_raise = must_raise and not propagates
        self.corruption = Corruption(name, how, bad, must_raise, propagates and how not in _SHAPES)
        return bad

    def _corruptions(self, value, nan_ok, inf_ok, neg_inf_ok, shape_fuzz, wrong_types):
        if isinstance(value, Tensor):
            options = _tensor_corruptions(value, nan_ok, inf_ok, neg_inf_ok, shape_fuzz)
        elif isinstance(value, bool):
            options = [("int 2", lambda: 2, False, TYPES)]
        elif isinstance(value, (int, float)):
            options = _scalar_corruptions(value)
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            # (a negative size is left to torch's own RuntimeError, as in torch.randn((-1,)))
            options = [("float size", lambda: (*value, 1.5), False, TYPES)]
        elif isinstance(value, str):
            options = [("unknown string", lambda: value + "_bogus", False, VALUES)]
        else:
            options = []
        if wrong_types:
            options += [(how, (lambda v=v: v), False, TYPES) for how, v in _WRONG_OBJECTS]
        return options

    # ---- output expectations
    def expect(self, tensor: Any, shape: tuple[int, ...] | None = None, *, dtype=None) -> Any:
        """Assert ``tensor``'s shape (and dtype); returns it (``return f.expect(out, ...)``)."""
        assert isinstance(tensor, Tensor), f"expected a tensor, got {type(tensor).__name__}"
        if self.corruption is not None and self.corruption.how in _SHAPES:
            return tensor  # an accepted other shape broadcasts: only finiteness is checked
        if self.corruption is not None and self.tier == TYPES:
            dtype = None  # an accepted other dtype may promote
        if shape is not None:
            assert tuple(tensor.shape) == tuple(shape), (
                f"output shape {tuple(tensor.shape)}, expected {tuple(shape)}"
            )
        if dtype is not None:
            assert tensor.dtype == dtype, f"output dtype {tensor.dtype}, expected {dtype}"
        return tensor

    def allow_neg_inf(self) -> None:
        """The output is a log-probability that may be ``-inf`` (an impossible event)."""
        self.neg_inf_out = True


# --------------------------------------------------------------------------------------------
# The contract


def _names_in(message: str, names) -> bool:
    for name in names:
        pattern = r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9])"
        if re.search(pattern, message):
            return True
    return False


def _finite(out: Any, path: str, neg_inf_ok: bool, seen: set[int]) -> None:
    if id(out) in seen:
        return
    seen.add(id(out))
    if isinstance(out, Tensor):
        if out.is_floating_point() or out.is_complex():
            x = out.detach()
            nan = torch.isnan(x)
            assert not bool(nan.any()), f"silent NaN in the output {path} ({int(nan.sum())})"
            bad = torch.isinf(x) if not neg_inf_ok else (x == math.inf)
            assert not bool(bad.any()), f"infinite value in the output {path}"
        return
    if isinstance(out, np.ndarray) and out.dtype.kind in "fc":
        assert np.isfinite(out).all() or (neg_inf_ok and not np.isnan(out).any()), path
        return
    if isinstance(out, float):
        assert not math.isnan(out), f"silent NaN in the output {path}"
        assert neg_inf_ok or math.isfinite(out), f"infinite output {path}"
        return
    if isinstance(out, Mapping):
        for k, v in out.items():
            _finite(v, f"{path}[{k!r}]", neg_inf_ok, seen)
    elif isinstance(out, (tuple, list)):
        fields = getattr(out, "_fields", None)
        for i, v in enumerate(out):
            _finite(v, f"{path}.{fields[i]}" if fields else f"{path}[{i}]", neg_inf_ok, seen)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for field in dataclasses.fields(out):
            _finite(getattr(out, field.name), f"{path}.{field.name}", neg_inf_ok, seen)


def run_case(case: Case, data: st.DataObject, devices: list[torch.device], tier: str) -> None:
    """Draw one example of ``case`` in ``tier`` and check the contract (module docstring)."""
    f = Fuzz(data, devices, tier)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = case.fn(f)
    except (ValueError, TypeError) as err:
        message = str(err)
        if f.corruption is not None:
            names = (f.corruption.arg, *f.aliases.get(f.corruption.arg, ()))
            note(f"corrupted {f.corruption.arg}: {f.corruption.how}")
        else:
            names = tuple(f.names) + tuple(a for al in f.aliases.values() for a in al)
        if f.tier == TYPES:
            return  # a wrong type: the exception class is the contract (see the docstring)
        assert _names_in(message, names), (
            f"{type(err).__name__} does not name the argument ({', '.join(names)}): {message!r}"
        )
        return
    except Exception as err:  # the contract: nothing else escapes
        where = f" (corrupted {f.corruption.arg}: {f.corruption.how})" if f.corruption else ""
        raise AssertionError(
            f"{case.name} raised {type(err).__name__}{where}: {str(err)[:500]}"
        ) from err
    if f.corruption is not None:
        note(f"corrupted {f.corruption.arg}: {f.corruption.how} (accepted)")
        assert not f.corruption.must_raise, (
            f"{case.name} accepted {f.corruption.how} in {f.corruption.arg} without an error"
        )
    if f.corruption is not None and f.corruption.propagates:
        return  # a non-finite input came out as a non-finite output: visible, like torch
    _finite(out, "output", f.neg_inf_out, set())
