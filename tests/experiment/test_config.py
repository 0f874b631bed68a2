from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bayestorch.experiment import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_experiment_config,
    load_yaml,
    parse_overrides,
)

REGISTRY = {"vae": "experiments.vae"}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Inner:
    width: int = 4
    rate: float = 0.1
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    mode: Literal["a", "b"] = "a"
    path: str | None = None


@dataclass
class Schema(ExperimentConfig):
    experiment: str = "toy"
    inner: Inner = field(default_factory=Inner)


@dataclass
class RequiredSchema:
    needed: int
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_dataclasses_and_coerces():
    cfg = config_from_dict(Schema, {"inner": {"width": 8, "rate": 1, "sizes": [3], "mode": "b"}})
    assert cfg.inner == Inner(width=8, rate=1.0, sizes=[3], mode="b")
    assert isinstance(cfg.inner.rate, float)
    assert config_to_dict(cfg)["inner"]["sizes"] == [3]


def test_yaml_exponent_without_dot_is_a_float():
    # YAML 1.1 reads 1e-3 as a string; a float field accepts it.
    assert config_from_dict(Inner, {"rate": "1e-3"}).rate == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"inner": {"widht": 3}},
            "unknown key 'inner.widht' (did you mean 'inner.width'?) in section 'inner'; "
            "valid keys: mode, path, rate, sizes, width",
        ),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"inner": {"width": "wide"}}, "'inner.width' must be int, got str 'wide'"),
        ({"inner": {"width": True}}, "'inner.width' must be int, got bool True"),
        ({"inner": {"sizes": [1, "x"]}}, "'inner.sizes[1]' must be int"),
        ({"inner": {"mode": "c"}}, "'inner.mode' must be one of 'a', 'b', got 'c'"),
        ({"inner": 3}, "'inner' must be a mapping"),
        ({"seed": 1.5}, "'seed' must be int"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(Schema, data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'needed'"):
        config_from_dict(RequiredSchema, {})


def test_overrides():
    parsed = parse_overrides(["inner.width=16", "inner.sizes=[4, 5]", "resume=true", "inner.path="])
    assert parsed == [
        ("inner.width", 16),
        ("inner.sizes", [4, 5]),
        ("resume", True),
        ("inner.path", None),
    ]
    data = apply_overrides({"inner": {"width": 1}}, parsed)
    cfg = config_from_dict(Schema, data)
    assert cfg.inner.width == 16 and cfg.inner.sizes == [4, 5] and cfg.resume is True


@pytest.mark.parametrize("arg", ["novalue", "=3", "a..b=1", "a b=1", "x=[1,"])
def test_bad_override_syntax(arg):
    with pytest.raises(ConfigError, match="bad override"):
        parse_overrides([arg])


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, [("seed.x", 2)])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML in .*bad.yaml at line"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(scalar)


def test_experiment_lookup(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: nope\n")
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; available experiments: vae"):
        load_experiment_config(path, [], REGISTRY)
    path.write_text("seed: 1\n")
    with pytest.raises(ConfigError, match="missing required key 'experiment'"):
        load_experiment_config(path, [], REGISTRY)
    cfg, module = load_experiment_config(
        ROOT / "configs/vae_digits.yaml", ["train.epochs=3"], REGISTRY
    )
    assert cfg.train.epochs == 3 and module.__name__ == "experiments.vae"


def test_every_shipped_config_loads():
    from experiments import REGISTRY as shipped

    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_experiment_config(path, [], shipped)
