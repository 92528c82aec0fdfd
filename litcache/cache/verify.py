"""``litcache verify``: is a cache what its manifest says, and what its teacher computes?

Three checks, each naming what it finds wrong:

1. every unit against its progress record: written, and every row array's bytes against the unit's CRC-32;
2. the manifest's invariants: row count, array shapes and dtypes, the view-major ``rows/sample`` and
   ``rows/view``, labels inside the class range, finite statistics;
3. with the teacher: a seeded random fraction of the rows recomputed from the cached inputs and compared with the
   stored boundaries and outputs, within the bound of the store's rounding (:func:`tolerance`). That check runs
   the teacher, so it is stage one's: :func:`litcache.extract.recompute.verify_with_teacher`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from litcache.cache.layout import STATS
from litcache.cache.reader import Cache, read_array
from litcache.config import MANTISSA_BITS
from litcache.progress import progress_bar

VERIFY_CALLS = 200  # Cache.verify reads the whole progress record once per call: at most this many calls
ATOL_OF_MAX = 1e-4  # absolute slack, relative to the largest value of the array: float32 sums in another order


@dataclass
class Report:
    """What ``verify`` found: one line per problem (unit, row or invariant), and what it checked."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, where: str, detail: str, **extra: Any) -> None:
        self.problems.append({"kind": kind, "where": where, "detail": detail, **extra})

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [f"{p['where']}: {p['detail']}" for p in self.problems]


def tolerance(cache: Cache, name: str) -> float:
    """Relative bound of a stored value against the value recomputed in float32: 2^-k for k kept mantissa bits.

    Rounding to k bits moves a value by at most half a unit in its last place, 2^-(k+1)·|x|; the other half
    covers a recomputed value on the other side of a rounding boundary. k is ``store.bitround_keepbits`` for the
    boundaries when set, else the stored dtype's (10 for float16, 23 for float32).
    """
    if cache.is_quantized(name):  # the float rounding of the decoded values; the quantisation's step comes on top
        return 2.0 ** -MANTISSA_BITS[cache.manifest["quantization"]["decoded_dtype"]]
    dtype = str(cache.array(name).dtype)
    keep = MANTISSA_BITS.get(dtype, 23)
    if name.startswith("boundary/"):
        keep = int(cache.manifest["store"].get("bitround_keepbits") or keep)
    return 2.0**-keep


def check_units(cache: Cache, report: Report, show_progress: bool) -> None:
    """Checks 1 and 2 per unit: its record and every array's CRC-32 (``Cache.verify``), and the view-major
    ``rows/sample``, ``rows/view`` and labels in the class range."""
    classes = cache.manifest["teacher"].get("num_classes", 0) if cache.output_name == "logits" else 0
    step = max(1, -(-cache.num_units // VERIFY_CALLS))
    with progress_bar(total=cache.rows, desc="verify units", unit="row", enabled=show_progress) as bar:
        for first in range(0, cache.num_units, step):
            units = range(first, min(first + step, cache.num_units))
            unreadable = set()  # not written, or a chunk that does not decode: no rows to check
            for line in cache.verify(units):
                where, _, detail = line.partition(": ")
                report.add("checksum" if "checksum" in detail else "unit", where, detail)
                if "checksum" not in detail:
                    unreadable.add(where)
            for u in units:
                s, e = cache.unit_rows(u)
                where = f"unit {u} (rows {s}..{e - 1})"
                bar.update(e - s)
                if where in unreadable:
                    continue
                rows = cache.read(["rows/sample", "rows/view", "rows/label"], s, e)
                r = np.arange(s, e)
                view_major = np.array_equal(rows["rows/sample"], r % cache.samples) and np.array_equal(
                    rows["rows/view"], r // cache.samples
                )
                if not view_major:
                    report.add("invariant", where, "rows/sample and rows/view are not the view-major row order")
                labels = rows["rows/label"]
                if labels.min() < 0 or (classes and labels.max() >= classes):
                    report.add("invariant", where, f"labels outside 0..{classes - 1}: {sorted(set(labels.tolist()))}")
    report.checked["units"] = cache.num_units


def check_manifest(cache: Cache, report: Report) -> None:
    """Check 2, globally: row count, every row array's shape and dtype, finite statistics."""
    m = cache.manifest
    if cache.rows != cache.samples * cache.views:
        report.add("invariant", "manifest", f"rows {cache.rows} != samples {cache.samples} x views {cache.views}")
    for name, spec in m["arrays"].items():
        arr = cache.array(name)
        want = (cache.rows, *spec["row_shape"])
        if tuple(arr.shape) != want or str(arr.dtype) != spec["dtype"]:
            report.add(
                "invariant", name, f"shape {tuple(arr.shape)} {arr.dtype}, the manifest says {want} {spec['dtype']}"
            )
    stats = read_array(cache.array(STATS))
    done = cache.done_units()
    bad = np.flatnonzero(~np.isfinite(stats[done]).all(axis=(1, 2)))
    if len(bad):
        report.add(
            "invariant", "progress/stats", f"non-finite statistics in units {np.flatnonzero(done)[bad].tolist()}"
        )
    for st in m.get("boundary_stats") or []:
        if not all(math.isfinite(st[k]) for k in ("mean", "std", "abs_max")):
            report.add("invariant", "manifest", f"boundary_stats of boundary {st['boundary']} are not finite")
    if m.get("complete") and not done.all():
        report.add("invariant", "manifest", "says complete, but not every unit is written")


def sample_rows(cache: Cache, fraction: float, seed: int) -> np.ndarray:
    """A seeded random ``fraction`` of the written rows (at least one), sorted."""
    written = np.concatenate([np.arange(*cache.unit_rows(int(u))) for u in np.flatnonzero(cache.done_units())])
    if not len(written):
        return written
    k = min(len(written), max(1, round(fraction * cache.rows)))
    return np.sort(np.random.default_rng(seed).choice(written, size=k, replace=False))


def verify_cache(cache: Cache, *, show_progress: bool = True) -> Report:
    """Checks 1 and 2: every unit against its record and checksums, and the manifest's invariants. Check 3, the
    teacher's, is :func:`litcache.extract.recompute.verify_with_teacher`."""
    report = Report()
    check_manifest(cache, report)
    check_units(cache, report, show_progress)
    return report
