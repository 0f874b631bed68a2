"""Data sets for experiments: scikit-learn's digits (ships with the package) and MNIST
from a local directory (no download at run time).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from bayestorch.experiment.config import ConfigError

__all__ = ["ImageDataConfig", "ImageDataset", "load_binarized", "load_image_dataset", "read_idx"]


class ImageDataset(NamedTuple):
    """Flattened images in [0, 1] with labels, split into train and test.

    Shape:
        ``train_x``: ``(n_train, h * w)``; ``train_y``: ``(n_train,)``; likewise test.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    image_shape: tuple[int, int]


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(
            f"{path} is truncated: expected {expected} bytes of data, found {len(body)}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise ConfigError(f"MNIST file {stem}[.gz] not found in {directory}")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"'data.test_fraction' must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    num_test = int(round(test_fraction * len(x)))
    test, train = order[:num_test], order[num_test:]
    return x[train], y[train], x[test], y[test]


def load_image_dataset(
    name: str, *, path: str | None = None, test_fraction: float = 0.2, split_seed: int = 0
) -> ImageDataset:
    """Load ``digits`` (8x8, 1797 images, a fixed seeded split) or ``mnist`` (28x28, its
    official 60k/10k split, from the IDX files in ``path``)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.data.astype(np.float32) / 16.0
        parts = _split(x, digits.target.astype(np.int64), test_fraction, split_seed)
        shape = (8, 8)
    elif name == "mnist":
        if not path:
            raise ConfigError("'data.path' must name the directory holding the MNIST IDX files")
        directory = Path(path)
        if not directory.is_dir():
            raise ConfigError(f"'data.path' {path!r} is not a directory")
        parts = []
        for prefix in ("train", "t10k"):
            images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
            labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
            parts += [
                images.reshape(len(images), -1).astype(np.float32) / 255.0,
                labels.astype(np.int64),
            ]
        shape = (28, 28)
    else:
        raise ConfigError(f"'data.name' must be 'digits' or 'mnist', got {name!r}")
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(p)) for p in parts)
    return ImageDataset(train_x, train_y, test_x, test_y, shape)


@dataclass
class ImageDataConfig:
    """The ``data:`` block of the image experiments (VAE, categorical VAE)."""

    name: Literal["digits", "mnist"] = "digits"
    path: str | None = None  # directory of the MNIST IDX files
    test_fraction: float = 0.2  # digits only: MNIST has its official split
    split_seed: int = 0
    binarize_threshold: float | None = 0.5  # None keeps grey levels (gaussian likelihood)


def load_binarized(
    cfg: ImageDataConfig, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, ImageDataset]:
    """Train and test images ``(n, pixels)`` on ``device``, thresholded at
    ``cfg.binarize_threshold`` (kept as grey levels when it is None), and the dataset."""
    data = load_image_dataset(
        cfg.name, path=cfg.path, test_fraction=cfg.test_fraction, split_seed=cfg.split_seed
    )
    threshold = cfg.binarize_threshold

    def prepare(x: Tensor) -> Tensor:
        return ((x > threshold).float() if threshold is not None else x).to(device)

    return prepare(data.train_x), prepare(data.test_x), data
