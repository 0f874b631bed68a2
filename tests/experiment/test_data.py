from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from bayestorch.experiment import ConfigError
from bayestorch.experiment.data import load_image_dataset, read_idx


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = (
        header
        + array.astype(
            array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
        ).tobytes()
    )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", images)
    _write_idx(tmp_path / "a.idx.gz", images)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), images)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    _write_idx(tmp_path / "f.idx", floats, code=0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


def test_read_idx_rejects_damaged_files(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    _write_idx(tmp_path / "short.idx", np.zeros((4, 4), dtype=np.uint8))
    blob = (tmp_path / "short.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(blob[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.idx")


def test_mnist_loader_on_a_small_fake_copy(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    data = load_image_dataset("mnist", path=str(tmp_path))
    assert data.train_x.shape == (12, 784) and data.test_x.shape == (5, 784)
    assert data.train_y.dtype == torch.int64 and data.image_shape == (28, 28)
    assert 0.0 <= data.train_x.min() and data.train_x.max() <= 1.0


def test_digits_split_is_fixed_and_disjoint():
    a = load_image_dataset("digits", test_fraction=0.2, split_seed=0)
    b = load_image_dataset("digits", test_fraction=0.2, split_seed=0)
    assert a.train_x.shape == (1438, 64) and a.test_x.shape == (359, 64)
    torch.testing.assert_close(a.test_x, b.test_x)
    assert a.train_x.max() == 1.0 and a.train_x.min() == 0.0


def test_loader_errors(tmp_path):
    with pytest.raises(ConfigError, match="'data.path' must name"):
        load_image_dataset("mnist")
    with pytest.raises(ConfigError, match="not found"):
        load_image_dataset("mnist", path=str(tmp_path))
    with pytest.raises(ConfigError, match="'data.name' must be"):
        load_image_dataset("cifar")
    with pytest.raises(ConfigError, match="test_fraction"):
        load_image_dataset("digits", test_fraction=1.5)
