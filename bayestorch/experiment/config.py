"""Typed experiment configs: YAML -> dataclasses, with ``key.sub=value`` overrides.

An experiment declares its config as a dataclass that extends :class:`ExperimentConfig`.
Loading checks every key against the schema: an unknown key, a missing required key or
a value of the wrong type raises :class:`ConfigError`, whose one-line message names the
key and lists the valid ones (the ideas of Hydra's structured configs, without Hydra).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_yaml",
    "parse_overrides",
]


class ConfigError(ValueError):
    """An invalid config; the message is one line that names the problem."""


@dataclasses.dataclass
class ExperimentConfig:
    """Keys every experiment shares.

    Attributes:
        experiment: the experiment's name in the registry (``experiments/__init__.py``).
        seed: seeds python, numpy and torch, and the generator handed to the library.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch's intra-op CPU threads: ``auto`` (the CPUs this process may use,
            from its affinity mask and cgroup quota; see ``bayestorch.experiment.threads``)
            or a positive integer.
        output_dir: the run directory.
        resume: continue from the latest checkpoint in ``output_dir``.
        progress: show progress bars (only on a terminal).
    """

    experiment: str
    seed: int = 0
    device: str = "auto"
    threads: int | Literal["auto"] = "auto"
    output_dir: str = "runs/default"
    resume: bool = False
    progress: bool = True


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"invalid YAML in {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings; values are read as YAML (``true``, ``3``, ``[1, 2]``)."""
    parsed = []
    for arg in args:
        key, sep, raw = arg.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"bad override {arg!r}: expected key=value, e.g. train.epochs=10")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"bad override {arg!r}: the value is not valid YAML") from None
        parsed.append((key, value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted ``(key, value)`` set (schema checks come later)."""
    data = _deep_copy(data)
    for key, value in overrides:
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"bad override {key}={value!r}: '{prefix}' is a value, not a section"
                )
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def config_from_dict(schema: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``schema`` from ``data``, checking keys and types recursively."""
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a mapping of keys, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    hints = typing.get_type_hints(schema)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), prefix, sorted(fields)))
    values = {}
    for name, field in fields.items():
        full = prefix + name
        if name in data:
            values[name] = _coerce(data[name], hints[name], full)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{full}'")
    return schema(**values)


def _unknown_key_message(key: str, prefix: str, valid: list[str]) -> str:
    section = f" in section '{prefix.rstrip('.')}'" if prefix else ""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    return f"unknown key '{prefix}{key}'{hint}{section}; valid keys: {', '.join(valid)}"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail() -> typing.NoReturn:
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, prefix=key + ".")
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        fail()
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(
            f"'{key}' must be one of {', '.join(repr(a) for a in args)}, got {value!r}"
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail()
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        value_type = args[1] if args else Any
        return {str(k): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"config field '{key}' has a type the loader does not support: {tp}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-serialisable data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
