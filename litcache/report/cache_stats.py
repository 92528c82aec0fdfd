"""What a cache's boundaries look like, from a bounded sample of its units (never the whole cache in memory).

For each stored boundary: the distribution of values (a histogram over ±max|x| of the whole cache), the fraction
of exact zeros (what ReLU leaves, and what compresses well), and the scale of each channel (RMS and max |x|).
The channel of a row (C, H, W) is C; of a row (tokens, width), or any other rank, the last axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from litcache.cache.layout import boundary_name
from litcache.cache.reader import Cache
from litcache.progress import progress_bar

HISTOGRAM_BINS = 201  # over ±max|x|; the empty bins at either end are dropped (post-ReLU: the negative half)


def sampled_units(cache: Cache, count: int) -> list[int]:
    """Up to ``count`` written units spread evenly over the cache (so every view is represented)."""
    done = np.flatnonzero(cache.done_units())
    if len(done) <= count:
        return done.tolist()
    return sorted({int(done[i]) for i in np.linspace(0, len(done) - 1, count).round().astype(int)})


def channel_axis(row_shape: tuple[int, ...]) -> int:
    """The axis of a row that holds channels: C of (C, H, W), else the last one (a transformer's width)."""
    return 0 if len(row_shape) == 3 else len(row_shape) - 1


class _Accumulator:
    """Running sums over sampled rows of one boundary: per channel, zeros, and a fixed-edge histogram."""

    def __init__(self, row_shape: tuple[int, ...], abs_max: float, bins: int) -> None:
        self.axis = channel_axis(row_shape)
        channels = row_shape[self.axis] if row_shape else 1
        self.sum, self.sum_sq = np.zeros(channels), np.zeros(channels)
        self.abs_max = np.zeros(channels)
        self.count = np.zeros(channels, dtype=np.int64)
        self.zeros = 0
        limit = abs_max if abs_max > 0 else 1.0
        self.edges = np.linspace(-limit, limit, bins + 1)
        self.hist = np.zeros(bins, dtype=np.int64)
        self.rows = 0

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float32, copy=False)
        self.rows += len(x)
        per_channel = np.moveaxis(x, 1 + self.axis, 0).reshape(len(self.sum), -1) if x.ndim > 1 else x[None]
        self.sum += per_channel.sum(1, dtype=np.float64)
        self.sum_sq += np.square(per_channel, dtype=np.float64).sum(1)
        self.abs_max = np.maximum(self.abs_max, np.abs(per_channel).max(1))
        self.count += per_channel.shape[1]
        self.zeros += int(x.size - np.count_nonzero(x))
        self.hist += np.histogram(np.clip(x, self.edges[0], self.edges[-1]), self.edges)[0]

    def result(self) -> dict[str, Any]:
        n = max(int(self.count.sum()), 1)
        used = np.flatnonzero(self.hist)
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, len(self.hist))
        mean = float(self.sum.sum() / n)
        count = np.maximum(self.count, 1)
        channel_mean = self.sum / count
        return {
            "rows": self.rows,
            "elements": int(self.count.sum()),
            "mean": mean,
            "std": float(np.sqrt(max(self.sum_sq.sum() / n - mean * mean, 0.0))),
            "abs_max": float(self.abs_max.max()) if len(self.abs_max) else 0.0,
            "zero_fraction": self.zeros / n,
            "channel_axis": self.axis,
            "channel_mean": channel_mean.tolist(),
            "channel_rms": np.sqrt(self.sum_sq / count).tolist(),
            "channel_std": np.sqrt(np.maximum(self.sum_sq / count - channel_mean**2, 0.0)).tolist(),
            "channel_abs_max": self.abs_max.tolist(),
            "histogram_edges": self.edges[lo : hi + 1].tolist(),
            "histogram_counts": self.hist[lo:hi].tolist(),
        }


def boundary_statistics(
    cache: Cache, units: int = 8, bins: int = HISTOGRAM_BINS, show_progress: bool = True
) -> dict[str, Any]:
    """Statistics of every stored boundary over ``units`` sampled units, read one unit at a time and checked
    against their CRC-32s; with each boundary's whole-cache mean, std and max |x| from the progress record."""
    chosen = sampled_units(cache, units)
    whole = {st["boundary"]: st for st in cache.boundary_stats()}  # over every written unit, from progress/stats
    shapes = cache.boundary_shapes()
    names = [boundary_name(k) for k in cache.stored_boundaries()]
    acc = {
        name: _Accumulator(tuple(shapes[k]), whole[k]["abs_max"], bins)
        for name, k in zip(names, cache.stored_boundaries(), strict=True)
    }
    rows = sum(e - s for s, e in map(cache.unit_rows, chosen))
    with progress_bar(total=rows, desc="boundary statistics", unit="row", enabled=show_progress) as bar:
        for unit in chosen:
            start, stop = cache.unit_rows(unit)
            for name, x in cache.read_unit(unit, names).items():  # checked, then decoded
                acc[name].add(x)
            bar.update(stop - start)
    return {
        "url": cache.url,
        "units_sampled": chosen,
        "units_total": cache.num_units,
        "rows_sampled": rows,
        "boundaries": {
            name: {"boundary": k, "shape": list(shapes[k]), "whole_cache": whole[k], **acc[name].result()}
            for name, k in zip(names, cache.stored_boundaries(), strict=True)
        },
    }
