"""The extract stage: ``extract_overhead`` (extract() vs its loop without cast/copy/write, ABAB) and
``bytes_per_element`` (the real teacher's cache under the default store settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from common import cached_load_images, cpu_seconds, forward_only, log, median, result, rmtree, timed_extract
from harness import Bench

from litcache.cache.reader import Cache, open_cache
from litcache.cache.summary import summarize
from litcache.models.checkpoint import load_model


@dataclasses.dataclass
class Pairs:
    """The timed repeats of extract_overhead, one entry per repeat in each list."""

    extract: list[float] = dataclasses.field(default_factory=list)  # extract's own timed loop
    forward: list[float] = dataclasses.field(default_factory=list)  # the forward-only loop, configured layout
    calls: list[float] = dataclasses.field(default_factory=list)  # the whole extract() call
    extract_cpu: list[float] = dataclasses.field(default_factory=list)
    forward_cpu: list[float] = dataclasses.field(default_factory=list)
    forward_nchw: list[float] = dataclasses.field(default_factory=list)  # the forward-only loop, NCHW


def time_pairs(bench: Bench, teacher_path: str, out: Path, rows_per_unit: int) -> Pairs:
    """extract() and its forward-only loop, alternating, ``extract_reps`` times (the last cache stays at ``out``)."""
    cfg, n, reps = bench.cfg, bench.size["images"], bench.size["extract_reps"]
    rows = n * cfg.extract.views
    teacher, _ = load_model(teacher_path)
    teacher.to(bench.device).eval()
    forward_only(teacher, bench.images, cfg, rows_per_unit, rows_per_unit)
    images = cached_load_images(bench.data, "train", n)  # decoded once, outside the timings
    pairs = Pairs()
    nchw_cfg = cfg.replace(extract=dataclasses.replace(cfg.extract, channels_last=False))
    for r in range(reps):
        s = timed_extract(cfg, teacher_path, out, n)
        pairs.extract.append(s["seconds"])
        pairs.calls.append(s["call_seconds"])
        pairs.extract_cpu.append(s["call_cpu_seconds"])
        cpu = cpu_seconds()
        pairs.forward.append(forward_only(teacher, images, cfg, rows_per_unit, rows))
        pairs.forward_cpu.append(cpu_seconds() - cpu)
        pairs.forward_nchw.append(forward_only(teacher, images, nchw_cfg, rows_per_unit, rows))
        log(
            f"extract rep {r + 1}/{reps}: extract {pairs.extract[-1]:.2f}s, forward only {pairs.forward[-1]:.2f}s "
            f"(CPU {pairs.extract_cpu[-1]:.2f}s incl. set-up / {pairs.forward_cpu[-1]:.2f}s)"
        )
    return pairs


def overhead_record(
    bench: Bench, pairs: Pairs, setup: dict[str, Any], warm: dict[str, Any], rows_per_unit: int, arch: str
) -> dict[str, Any]:
    """extract_overhead from the timed pairs, the set-up-only call and the warm-up call."""
    ext, base, calls, ext_cpu, base_cpu = (
        pairs.extract,
        pairs.forward,
        pairs.calls,
        pairs.extract_cpu,
        pairs.forward_cpu,
    )
    extract_cfg = bench.cfg.extract
    return result(
        "extract_overhead",
        median(ext) / median(base),
        extract_loop_seconds=ext,
        forward_only_seconds=base,
        extract_call_seconds=calls,
        median_extract_s=median(ext),
        median_forward_only_s=median(base),
        channels_last=extract_cfg.channels_last,
        forward_only_nchw_seconds=pairs.forward_nchw,
        channels_last_speedup=median(pairs.forward_nchw) / median(base),
        pairwise_ratios=[a / b for a, b in zip(ext, base, strict=True)],
        call_wall_ratio=median(calls) / median(base),
        extract_call_cpu_seconds=ext_cpu,
        forward_only_cpu_seconds=base_cpu,
        setup_only_call_cpu_seconds=setup["call_cpu_seconds"],
        cpu_ratio=(median(ext_cpu) - setup["call_cpu_seconds"]) / median(base_cpu),
        rows=bench.size["images"] * extract_cfg.views,
        batch_size=extract_cfg.batch_size,
        rows_per_unit=rows_per_unit,
        writers=extract_cfg.writers,
        queue_units=extract_cfg.queue_units,
        device=bench.device,
        teacher=arch + " (real weights)",
        warmup_units=warm["units_written"],
        note="extract's own timed loop (summary['seconds']: views, forward, cast, background encode+write, "
        "drain) / the same loop with forward_boundaries only (same memory format); call_wall_ratio adds "
        "teacher load, fingerprints, cache creation and finish(); cpu_ratio = CPU seconds of the work (all "
        "threads; extract's set-up, measured by a max_units=0 call, subtracted) / those of the forward-only loop. "
        "Both ratios move with other load: extra threads win CPU from other processes, and OpenMP threads "
        "spin (burning CPU) while their peer is descheduled; compare runs at similar load",
    )


def bytes_record(cache: Cache, teacher_info: dict[str, Any]) -> dict[str, Any]:
    """bytes_per_element of ``cache``'s boundaries, per boundary too, with their zero fractions."""
    s = summarize(cache)
    shapes = cache.boundary_shapes()
    names = {f"boundary/{k}": k for k in cache.stored_boundaries()}
    elements = {name: cache.rows * int(np.prod(shapes[k])) for name, k in names.items()}
    stored = {  # a quantised boundary's bytes include its scales
        name: s["arrays"][name]["stored_bytes"] + s["arrays"].get(f"quant/{k}", {}).get("stored_bytes", 0)
        for name, k in names.items()
    }
    zeros = {name: float(np.mean(cache.read([name], 0, cache.rows)[name] == 0)) for name in names}  # decoded
    return result(
        "bytes_per_element",
        s["boundary_bytes_per_element"],
        per_boundary={name: stored[name] / elements[name] for name in names},
        zero_fraction=zeros,
        boundary_stored_bytes=sum(stored.values()),
        boundary_elements=sum(elements.values()),
        cache_stored_bytes_per_row=s["stored_bytes"] / s["rows"],
        rows=s["rows"],
        views=s["views"],
        store=s["store"],
        boundary_stats=s["boundary_stats"],
        teacher=teacher_info,
    )


def bench_extract(bench: Bench) -> None:
    """extract_overhead and bytes_per_element: extract() vs its loop without cast/copy/write, ABAB."""
    teacher_path, teacher_info = bench.real_teacher
    n = bench.size["images"]
    out = bench.work / "real.zarr"
    warm = timed_extract(bench.cfg, teacher_path, out, n, max_units=1)  # warm-up: zarr, codecs, threads
    rows_per_unit = open_cache(str(out)).rows_per_unit
    pairs = time_pairs(bench, teacher_path, out, rows_per_unit)
    setup = timed_extract(bench.cfg, teacher_path, bench.work / "setup-only.zarr", n, max_units=0)
    rmtree(bench.work / "setup-only.zarr")
    bench.results["extract_overhead"] = overhead_record(bench, pairs, setup, warm, rows_per_unit, teacher_info["arch"])
    bench.results["bytes_per_element"] = bytes_record(open_cache(str(out)), teacher_info)
    bench.__dict__["real_cache"] = out  # the stream stage reads this cache (Bench.real_cache is a cached_property)
