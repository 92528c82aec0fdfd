"""``litcache verify``: is a cache what its manifest says, and what its teacher computes?

Three checks, each naming what it finds wrong:

1. every unit against its progress record: written, and every row array's bytes against the unit's CRC-32;
2. the manifest's invariants: row count, array shapes and dtypes, the view-major ``rows/sample`` and
   ``rows/view``, labels inside the class range, finite statistics;
3. with the teacher: a seeded random fraction of the rows recomputed from the cached inputs and compared with the
   stored boundaries and outputs, within the bound of the store's rounding (:func:`tolerance`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from litcache.checkpoint import fingerprint_state, load_teacher
from litcache.config import MANTISSA_BITS
from litcache.data import to_unit_float
from litcache.errors import CompatibilityError
from litcache.models import SectionedModel
from litcache.models.registry import check_trusted
from litcache.progress import progress_bar
from litcache.store import STATS, Cache, read_array
from litcache.students import frozen_state

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


@torch.inference_mode()
def check_teacher(
    cache: Cache, teacher: SectionedModel, rows: np.ndarray, device: torch.device, report: Report, show_progress: bool
) -> None:
    """Check 3: recompute ``rows`` from the cached inputs and compare with what is stored."""
    layout = torch.channels_last if cache.manifest.get("compute", {}).get("channels_last") else torch.contiguous_format
    teacher.to(device).to(memory_format=layout).eval()
    stored = [f"boundary/{k}" for k in cache.stored_boundaries()] + [cache.output_name]
    worst = {name: 0.0 for name in stored}
    units = (rows // cache.rows_per_unit).astype(np.int64)
    with progress_bar(total=len(rows), desc="verify rows", unit="row", enabled=show_progress) as bar:
        for u in np.unique(units):
            s, e = cache.unit_rows(int(u))
            picked = rows[units == u]
            data = cache.read(["input", *stored], s, e)
            x = to_unit_float(torch.from_numpy(data["input"][picked - s]).to(device))
            bounds, out = teacher.forward_boundaries(x.contiguous(memory_format=layout))
            fresh = {f"boundary/{k}": bounds[k] for k in cache.stored_boundaries()} | {cache.output_name: out}
            for name in stored:
                got = torch.from_numpy(data[name][picked - s].astype(np.float32)).to(device)
                want = fresh[name].float()
                bound = tolerance(cache, name) * want.abs() + ATOL_OF_MAX * float(want.abs().max())
                excess = ((got - want).abs() - bound).flatten(1).amax(1)
                error = (got - want).abs().flatten(1).amax(1)
                worst[name] = max(worst[name], float((error / (want.abs().flatten(1).amax(1) + 1e-12)).max()))
                for i in torch.nonzero(excess > 0).flatten().tolist():
                    row = int(picked[i])
                    report.add(
                        "teacher",
                        f"row {row} (unit {int(u)})",
                        f"{name} differs from the teacher's by up to {float(error[i]):.4g} (beyond the rounding bound)",
                        row=row,
                        array=name,
                    )
            bar.update(len(picked))
    report.checked["rows_recomputed"] = len(rows)
    report.checked["worst_relative_error"] = worst  # per array, of the largest value in the row


def verify_cache(
    cache: Cache,
    teacher_path: str | None = None,
    *,
    fraction: float = 0.01,
    seed: int = 0,
    device: torch.device | None = None,
    trusted: Collection[str] = (),
    show_progress: bool = True,
) -> Report:
    """Every check; the teacher's only with ``teacher_path`` (a litcache checkpoint or a plain state dict of the
    model the manifest names). ``trusted``: model factories the caller's pipeline names."""
    report = Report()
    check_manifest(cache, report)
    check_units(cache, report, show_progress)
    if teacher_path is not None:
        m = cache.manifest
        check_trusted(m["teacher"]["model"], trusted, f"cache {cache.url}")
        frozen = frozen_state(cache)  # the normalisation a plain state dict does not carry
        mean, std = (frozen[f"normalize.{k}"].flatten().tolist() for k in ("mean", "std"))
        spec, classes = m["teacher"]["model"], m["teacher"]["num_classes"]
        teacher = load_teacher(teacher_path, spec, classes, mean, std, trusted)
        if fingerprint_state(teacher.state_dict()) != m["teacher"]["fingerprint"]:
            raise CompatibilityError(
                f"{teacher_path} is not the teacher {cache.url} was extracted with (its weights' fingerprint differs)"
            )
        rows = sample_rows(cache, fraction, seed)
        check_teacher(cache, teacher, rows, device or torch.device("cpu"), report, show_progress)
        report.checked["fraction"], report.checked["seed"] = fraction, seed
    return report
