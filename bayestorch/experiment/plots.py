"""Plot helpers for experiments (matplotlib, headless)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["image_grid", "new_figure"]


def new_figure(*args: Any, **kwargs: Any):
    """``plt.subplots`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def image_grid(
    images: Any, image_shape: tuple[int, int], num_columns: int, padding: int = 1
) -> np.ndarray:
    """Tile flattened images ``(n, h * w)`` into one ``(rows * (h+p), cols * (w+p))`` array."""
    images = np.asarray(images, dtype=float).reshape(-1, *image_shape)
    n, (h, w) = images.shape[0], image_shape
    rows = -(-n // num_columns)
    grid = np.full((rows * (h + padding) + padding, num_columns * (w + padding) + padding), 0.5)
    for i, image in enumerate(images):
        r, c = divmod(i, num_columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid
