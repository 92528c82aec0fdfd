"""The cache's layout: the names of its arrays, the manifest's format tag and version, and the row arrays' specs.

Everything here is plain data about the format (``docs/cache-format.md``); it imports neither zarr nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORMAT = "litcache-cache"
FORMAT_VERSION = 2
PROGRESS = "progress/units"
FROZEN = "teacher/frozen"  # the teacher's parameters and buffers outside its sections, one array each
STATS = "progress/stats"
STAT_FIELDS = ("sum", "sum_sq", "abs_max")  # per boundary and unit, in float64


def boundary_name(k: int) -> str:
    return f"boundary/{k}"


@dataclass(frozen=True)
class ArraySpec:
    """One row-indexed array of the cache: per-row shape and dtype."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def rows_per_chunk(specs: Sequence[ArraySpec], chunk_mb: float, rows: int) -> int:
    """Rows per chunk so the widest array's chunk is about ``chunk_mb`` decoded."""
    widest = max(s.row_bytes for s in specs)
    return max(1, min(rows, int(chunk_mb * 2**20 // widest)))
