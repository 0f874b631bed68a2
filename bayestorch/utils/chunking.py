"""Chunked evaluation: bound the peak memory of batched samplers by working in pieces.

A sampler that draws ``S`` independent samples (or predicts at ``m`` points, or filters ``B``
sequences) often needs temporaries proportional to the number of rows times a per-row size
(``N^2`` for a DPP drawn by the LDL^T sampler). It processes the rows in chunks of
``chunk_size``; by default the chunk is as large as keeps those temporaries under
:data:`DEFAULT_MAX_MEMORY` bytes, so peak memory is set by the chunk, not by the total.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["DEFAULT_MAX_MEMORY", "check_chunk_size", "chunk_slices", "resolve_chunk_size"]

DEFAULT_MAX_MEMORY = 2**28
"""Working-memory budget (bytes, 256 MiB) of one chunk when ``chunk_size`` is left at ``None``."""


def check_chunk_size(chunk_size: int | None) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``chunk_size`` unless it is ``None`` or an
    int >= 1."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int or None, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (rows per chunk), got {chunk_size}")


def resolve_chunk_size(chunk_size: int | None, bytes_per_row: int, total: int) -> int:
    """Rows per chunk: ``chunk_size`` if given (checked), else as many rows as fit
    :data:`DEFAULT_MAX_MEMORY` at ``bytes_per_row`` each (at least 1, at most ``total``).

    Raises:
        TypeError, ValueError: naming ``chunk_size`` unless it is ``None`` or an int >= 1.
    """
    check_chunk_size(chunk_size)
    if chunk_size is None:
        size = DEFAULT_MAX_MEMORY // max(1, int(bytes_per_row))
    else:
        size = chunk_size
    return max(1, min(size, max(1, total)))


def chunk_slices(total: int, size: int) -> Iterator[slice]:
    """``slice(0, size), slice(size, 2 size), ...`` covering ``range(total)``.

    ``total = 0`` gives one empty slice, so a chunked map over no rows still calls its
    function once and returns an empty (correctly shaped) result.
    """
    if total == 0:
        yield slice(0, 0)
        return
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))
