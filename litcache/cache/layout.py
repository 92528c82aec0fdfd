"""The cache's layout: the names of its arrays, the manifest's format tag and version, and the row arrays' specs.

Everything here is plain data about the format (``docs/cache-format.md``); it imports neither zarr nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORMAT = "litcache-cache"
FORMAT_VERSION = 4
# version 2 has no quantised boundaries and always stores the input; it reads as before. Version 3 reads as before
# where its boundaries are floats; its quantised codes are bit planes, which no reader decodes any more
READABLE_VERSIONS = (2, 3, 4)
PROGRESS = "progress/units"
FROZEN = "teacher/frozen"  # the teacher's parameters and buffers outside its sections, one array each
STATS = "progress/stats"
# per boundary and unit, in float64: sums and the peak of the stored values, and the largest error a stored value
# of the unit can have against the teacher's float32 (half a quantisation step, or the float rounding's)
STAT_FIELDS = ("sum", "sum_sq", "abs_max", "error_max")
INPUT = "input"  # the views' pixels (store.input = "pixels")
INPUT_CRC = "rows/input_crc"  # or a CRC-32 of each view's pixels (store.input = "crc32"): stage two regenerates it


def boundary_name(k: int) -> str:
    return f"boundary/{k}"


@dataclass(frozen=True)
class ArraySpec:
    """One row-indexed array of the cache: per-row shape and dtype."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str
    decoded_row_bytes: int = 0  # a row's bytes once decoded, where that differs from stored (quantised codes)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def rows_per_chunk(specs: Sequence[ArraySpec], chunk_mb: float, rows: int) -> int:
    """Rows per chunk so the widest array's chunk is about ``chunk_mb`` decoded."""
    widest = max(max(s.row_bytes, s.decoded_row_bytes) for s in specs)
    return max(1, min(rows, int(chunk_mb * 2**20 // widest)))


def float_error(abs_max: float, mantissa_bits: int) -> float:
    """The largest error of floats of at most ``abs_max`` rounded to ``mantissa_bits`` bits: half a unit in the last
    place of the largest, 2^-(m+1)·abs_max rounded up to the next power of two."""
    if abs_max <= 0:
        return 0.0
    return float(2.0 ** (np.ceil(np.log2(abs_max)) - mantissa_bits - 1))
