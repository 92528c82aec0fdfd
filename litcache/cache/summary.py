"""What a cache holds: the summary behind ``litcache inspect``, per-channel statistics with dask, verification."""

from __future__ import annotations

from typing import Any

import numpy as np

from litcache.cache.quantize import channel_axis
from litcache.cache.reader import Cache
from litcache.models.specs import describe
from litcache.progress import progress_bar


def summarize(cache: Cache) -> dict[str, Any]:
    """A JSON-ready summary: format, completeness, sizes, teacher, and every array's bytes."""
    m = cache.manifest
    done = cache.done_units()
    arrays: dict[str, Any] = {}
    for name, arr in sorted(_all_arrays(cache)):
        arrays[name] = {
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "chunks": list(arr.chunks),
            "stored_bytes": int(arr.nbytes_stored()),
            "raw_fp32_bytes": int(np.prod(arr.shape, dtype=np.int64)) * 4,
        }
    data_names = cache.data_arrays() + cache.unit_arrays()
    stored = sum(arrays[n]["stored_bytes"] for n in data_names)
    # a boundary's bytes: its array and, when quantised, its scales; its elements: rows x the boundary's shape
    bounds = [n for n in data_names if n.startswith(("boundary/", "quant/"))]
    shapes = cache.boundary_shapes()
    elements = sum(cache.rows * int(np.prod(shapes[k], dtype=np.int64)) for k in cache.stored_boundaries())
    return {
        "url": cache.url,
        "format_version": m["format_version"],
        "litcache_version": m.get("litcache_version"),
        "complete": bool(done.all()),
        "units_written": int(done.sum()),
        "units_total": int(len(done)),
        "rows": cache.rows,
        "samples": cache.samples,
        "views": cache.views,
        "seed": m["seed"],
        "teacher": {
            **{k: m["teacher"][k] for k in ("fingerprint", "num_classes", "sections", "b0", "output")},
            "model": describe(m["teacher"]["model"]),
        },
        "data": {k: m["data"][k] for k in ("identity", "samples", "fingerprint")},
        "input": "stored" if cache.input_stored else "regenerated from the data (the cache needs its data)",
        "quantization": m.get("quantization"),
        "transform": m["transform"],
        "store": m["store"],
        "boundary_shapes": m["teacher"]["boundary_shapes"],
        "boundary_stats": cache.boundary_stats(),
        "stored_bytes": stored,
        "boundary_bytes_per_element": sum(arrays[n]["stored_bytes"] for n in bounds) / max(elements, 1),
        "arrays": arrays,
    }


def _all_arrays(cache: Cache) -> list[tuple[str, Any]]:
    import zarr

    return [(path, node) for path, node in cache.group.members(max_depth=None) if isinstance(node, zarr.Array)]


def _dask_progress(bar: Any) -> Any:
    """A dask callback that advances ``bar`` by one per finished task (dask's own bar prints to stdout)."""
    from dask.callbacks import Callback

    class Progress(Callback):  # type: ignore[misc]
        def _start_state(self, dsk: Any, state: Any) -> None:
            bar.reset(total=len(state["finished"]) + sum(len(state[k]) for k in ("ready", "waiting", "running")))

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            bar.update(1)

    return Progress()


def _channel_sums(cache: Cache, name: str, units: range) -> np.ndarray:
    """(5, C) float64 over ``units``: count, sum, sum of squares, min and max of each channel of ``name``, decoded."""
    k = int(name.rsplit("/", 1)[1])
    shape = cache.boundary_shapes()[k]
    axis = channel_axis(shape) + 1
    out = np.zeros((5, shape[axis - 1]))
    out[3], out[4] = np.inf, -np.inf
    for unit in units:
        x = cache.read([name], *cache.unit_rows(unit))[name]
        x = np.moveaxis(x, axis, 0).reshape(shape[axis - 1], -1).astype(np.float64)  # (C, rest)
        out[0] += x.shape[1]
        out[1] += x.sum(1)
        out[2] += np.square(x).sum(1)
        out[3] = np.minimum(out[3], x.min(1))
        out[4] = np.maximum(out[4], x.max(1))
    return out


def channel_stats(
    cache: Cache, scheduler: str = "threads", show_progress: bool = False, units_per_task: int = 8
) -> dict[str, dict[str, list[float]]]:
    """Per-channel mean, std, min and max of every stored boundary over the whole cache, of its decoded values
    (dequantised, when quantised), computed with dask: one task per ``units_per_task`` units."""
    import dask

    out = {}
    for k in cache.stored_boundaries():
        name = f"boundary/{k}"
        groups = [range(u, min(u + units_per_task, cache.num_units)) for u in range(0, cache.num_units, units_per_task)]
        tasks = [dask.delayed(_channel_sums)(cache, name, g) for g in groups]
        with (
            progress_bar(total=0, desc=f"stats {name}", unit="task", enabled=show_progress) as bar,
            _dask_progress(bar),
        ):
            parts = dask.compute(*tasks, scheduler=scheduler)
        count, total, total_sq = (sum(p[i] for p in parts) for i in range(3))
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        lo = np.min([p[3] for p in parts], axis=0)
        hi = np.max([p[4] for p in parts], axis=0)
        out[name] = {"mean": mean.tolist(), "std": std.tolist(), "min": lo.tolist(), "max": hi.tolist()}
    return out


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text a person reads."""
    mb = 1e6
    lines = [
        f"cache      {s['url']}",
        f"format     v{s['format_version']} (litcache {s['litcache_version']})",
        f"status     {'complete' if s['complete'] else 'INCOMPLETE'} ({s['units_written']}/{s['units_total']} units)",
        f"rows       {s['rows']} = {s['samples']} samples x {s['views']} views (seed {s['seed']})",
        f"teacher    {s['teacher']['model']} ({s['teacher']['output']}, {s['teacher']['num_classes']} classes) "
        f"{s['teacher']['fingerprint'][:23]}…",
        f"sections   {', '.join(s['teacher']['sections'])} (b0 {s['teacher']['b0']})",
        f"data       {s['data']['identity'][:90]}",
        f"store      {_boundaries(s)} {s['store']['codec']} level {s['store']['level']}, "
        f"{s['stored_bytes'] / mb:.1f} MB, {s['boundary_bytes_per_element']:.3f} bytes per boundary element",
        f"input      {s['input']}",
        "",
        f"{'array':<28} {'shape':<24} {'dtype':<8} {'stored MB':>10} {'fp32 MB':>10}",
    ]
    for name, a in s["arrays"].items():
        lines.append(
            f"{name:<28} {str(tuple(a['shape'])):<24} {a['dtype']:<8} "
            f"{a['stored_bytes'] / mb:>10.2f} {a['raw_fp32_bytes'] / mb:>10.2f}"
        )
    lines.append("")
    for st in s["boundary_stats"]:
        bound = f" error <= {st['error_bound']:.4g}" if "error_bound" in st else ""
        lines.append(
            f"boundary {st['boundary']}: mean {st['mean']:.4f} std {st['std']:.4f} max|x| {st['abs_max']:.4f}{bound}"
        )
    return "\n".join(lines)


def _boundaries(s: dict[str, Any]) -> str:
    """How the boundaries are stored, in words: ``int4 codes (per unit and channel) -> float16`` or ``float16``."""
    q = s.get("quantization")
    if q:
        return f"int{q['bits']} codes (scale per unit and channel) -> {q['decoded_dtype']}"
    keep = s["store"].get("bitround_keepbits")
    return s["store"]["dtype"] + (f" ({keep} mantissa bits)" if keep else "")
