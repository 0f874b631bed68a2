"""Fuzz cases of bayestorch.experiment (the experiment shell: configs, overrides, checkpoints).

Strings come from hypothesis' text strategy (any unicode); files live in a fresh temporary
directory. ``ConfigError`` (a ValueError) is the shell's error for bad user input;
``CheckpointError`` (documented, a RuntimeError) is what reading a damaged file raises.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from fuzzlib import case, exempt
from hypothesis import strategies as st

import bayestorch as bt

E = bt.experiment

exempt("exception", "the error of a damaged checkpoint file", "experiment.CheckpointError")
exempt("exception", "the error of an invalid config (a ValueError)", "experiment.ConfigError")

_KEY = st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True)
_TEXT = st.text(max_size=20)


@case("experiment.parse_overrides", "experiment.apply_overrides")
def _(f):
    args = f.draw(
        st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", _KEY, _TEXT), _TEXT), max_size=4)
    )
    pairs = E.parse_overrides(f.arg("args", args, aliases=("override", "key")))
    assert isinstance(pairs, list)
    data = {"experiment": "x", "seed": 0, "sub": {"a": 1}}
    return E.apply_overrides(f.arg("data", data), f.arg("overrides", pairs, aliases=("key",)))


@dataclasses.dataclass
class _Schema(E.ExperimentConfig):
    lr: float = 0.1
    steps: int = 3
    name: str = "a"


_VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    _TEXT,
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@case("experiment.config_from_dict", "experiment.config_to_dict", "experiment.ExperimentConfig")
def _(f):
    data = {"experiment": "x"}
    data.update(
        f.draw(
            st.dictionaries(
                st.sampled_from(["seed", "lr", "steps", "name", "device", "bogus", "resume"]),
                _VALUES,
                max_size=3,
            )
        )
    )
    # a ConfigError names the offending key
    config = E.config_from_dict(f.arg("schema", _Schema), f.arg("data", data, aliases=tuple(data)))
    out = E.config_to_dict(f.arg("config", config))
    assert E.config_from_dict(_Schema, out) == config
    return out


@case("experiment.resolve_device")
def _(f):
    spec = f.draw(
        st.one_of(st.sampled_from(["auto", "cpu", "cuda", "cuda:7", "cpu:0", "meta"]), _TEXT)
    )
    return E.resolve_device(f.arg("spec", spec, aliases=("device",)))


@case("experiment.seed_everything")
def _(f):
    E.seed_everything(f.arg("seed", f.draw(st.integers(0, 2**32 - 1))))
    return torch.rand(2)


def _documented(fn, *args):
    try:
        return fn(*args)
    except E.CheckpointError as err:  # the documented error of a damaged file
        assert str(err), "a CheckpointError says why"
        return None


@case("experiment.save_checkpoint", "experiment.load_checkpoint", "experiment.load_latest")
def _(f):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt" / "step_1.pt"
        state = {"x": f.randn(f.size(0, 3)), "step": f.size(0, 9), "name": "run"}
        # (path is not fuzzed: a wrong path would write into the working directory)
        E.save_checkpoint(path, f.arg("state", state))
        if f.draw(st.booleans()):  # damage it
            data = path.read_bytes()
            cut = f.draw(st.integers(0, max(0, len(data) - 1)))
            path.write_bytes(data[:cut] + f.draw(st.binary(max_size=8)))
        loaded = _documented(E.load_checkpoint, path)
        latest = _documented(E.load_latest, path.parent)
        if loaded is not None:
            assert torch.equal(loaded["x"], state["x"]) and loaded["step"] == state["step"]
        return latest


@case("experiment.load_yaml", "experiment.load_experiment_config")
def _(f):
    text = f.draw(
        st.one_of(
            _TEXT,
            st.just("experiment: demo\nseed: 3\n"),
            st.just("- a\n- b\n"),
            st.just("experiment: [1\n"),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        data = E.load_yaml(
            f.arg("path", path, aliases=("config", "yaml", "YAML"), wrong_types=False)
        )
        assert isinstance(data, dict)
        return E.load_experiment_config(
            path, f.arg("overrides", ["seed=4"]), f.arg("registry", {}, aliases=("experiment",))
        )


@case("experiment.main")
def _(f):
    argv = f.draw(st.lists(_TEXT, max_size=3))
    code = E.main(f.arg("argv", argv), f.arg("registry", {}))
    assert code in (0, 2)
    return code


@case("experiment.RunContext", examples=0.5)
def _(f):
    with tempfile.TemporaryDirectory() as tmp:
        config = E.ExperimentConfig("demo", output_dir=str(Path(tmp) / "run"), progress=False)
        E.RunContext(
            f.arg("config", config), keep_checkpoints=f.arg("keep_checkpoints", f.size(1, 3))
        )
        return None
