"""What a cache holds: the summary behind ``litcache inspect``, per-channel statistics with dask, verification."""

from __future__ import annotations

from typing import Any

import numpy as np

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
    data_names = cache.data_arrays()
    stored = sum(arrays[n]["stored_bytes"] for n in data_names)
    bounds = [n for n in data_names if n.startswith("boundary/")]
    elements = sum(int(np.prod(arrays[n]["shape"], dtype=np.int64)) for n in bounds)
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


def channel_stats(
    cache: Cache, scheduler: str = "threads", show_progress: bool = False
) -> dict[str, dict[str, list[float]]]:
    """Per-channel mean, std, min and max of every boundary over the whole cache, computed with dask."""
    import dask
    import dask.array as da

    out = {}
    for name in cache.data_arrays():
        if not name.startswith("boundary/"):
            continue
        arr = cache.array(name)
        x = da.from_zarr(arr, chunks=arr.chunks).astype(np.float64)
        axes = (0, *range(2, x.ndim))
        with (
            progress_bar(total=0, desc=f"stats {name}", unit="task", enabled=show_progress) as bar,
            _dask_progress(bar),
        ):
            mean, std, lo, hi = dask.compute(
                x.mean(axis=axes), x.std(axis=axes), x.min(axis=axes), x.max(axis=axes), scheduler=scheduler
            )
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
        f"store      {s['store']['dtype']} {s['store']['codec']} level {s['store']['level']}, "
        f"{s['stored_bytes'] / mb:.1f} MB, {s['boundary_bytes_per_element']:.3f} bytes per boundary element",
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
        lines.append(f"boundary {st['boundary']}: mean {st['mean']:.4f} std {st['std']:.4f} max|x| {st['abs_max']:.4f}")
    return "\n".join(lines)
