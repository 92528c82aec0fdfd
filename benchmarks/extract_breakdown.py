"""Where extraction's time goes beyond the teacher's forward, on this machine's CPU.

    python benchmarks/extract_breakdown.py                    # the default store (4-bit codes): 5 min, busy 2 cores
    python benchmarks/extract_breakdown.py --store bits=0     # float16 boundaries (7 mantissa bits)
    python benchmarks/extract_breakdown.py --images 512       # smaller
    python benchmarks/extract_breakdown.py --threads 1        # one torch thread (see below)

Times ``extract()`` over the same rows in variants that each remove or move one part of the work, alternated
with the forward-only loop of ``run.py`` (views + ``forward_boundaries``, same batches and memory format),
and prints each variant's median time and its ratio to the forward-only median. The store is the pipeline's
(``store.bits=4``: codes quantised from the teacher's float32) with ``--store KEY=VALUE`` overrides. On the CPU
``extract()`` hands each unit's boundaries to its writer threads, which run ``encode_unit`` (quantisation and
bit-field packing, or nothing more for float16, then the statistics) and ``write_unit`` (codec, checksums, store):

- ``default``: ``extract()`` as shipped (background writer threads);
- ``no writes``: every ``write_unit`` (and the progress bar's size look-up) a no-op: forward, hand-off,
  quantisation and statistics in the writer threads only;
- ``no writes, no stats``: as above, and ``unit_stats`` skipped too (a row of zeros per boundary);
- ``inline writes``: each unit encoded and written in the main thread before the next forward (nothing overlaps);
- ``store.codec=none`` and ``store.codec=blosc-lz4``: the default path with a cheaper codec (more bytes).

Each patched variant checks that its stand-ins were called, so a change to ``litcache/extract`` that bypasses
them stops the script instead of timing the default path under another name.

Also times one unit's parts single-threaded, with extraction's own functions: ``teacher_rows`` (forward and
cast), ``quantize_unit`` (codes and bit fields; quantised stores only), ``unit_stats``, ``encode_unit`` (the two,
and the copy to numpy), the store codec alone on the stored boundaries, and ``write_unit``. The patched variants
exist only to measure; they never write a cache anyone reads.

On a 2-core CPU busy with other work, two torch threads made the forward-only loop about 2.5 times slower than
one thread did, and ``extract()`` much less so (its ratios fell below 1): compare variants there with
``--threads 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, WORK, cached_load_images, forward_only, timed_extract  # noqa: E402

import litcache.extract.on_device as on_device  # noqa: E402
import litcache.extract.run as extract_module  # noqa: E402
from litcache.cache.reader import open_cache  # noqa: E402
from litcache.cache.summary import summarize  # noqa: E402
from litcache.cache.writer import CacheWriter, open_writer  # noqa: E402
from litcache.config import PipelineConfig, load_pipeline  # noqa: E402
from litcache.data import make_views  # noqa: E402
from litcache.extract.on_device import encode_unit, quantize_unit, teacher_rows, unit_stats  # noqa: E402
from litcache.models.checkpoint import load_model  # noqa: E402

PIPELINE = "cifar10-resnet20-resnet8"
CALLS: Counter[str] = Counter()  # calls of each stand-in during the current variant


class InlineWriter:
    """Stands in for extract's background writers: encodes and writes each unit at once, in the caller's thread."""

    def __init__(self, cache: CacheWriter, threads: int, max_in_flight: int) -> None:
        self.cache, self.raw_bytes = cache, 0

    def submit(self, unit: int, arrays: dict[str, np.ndarray], encode: Callable[[], Any]) -> None:
        CALLS["InlineWriter.submit"] += 1
        boundaries, stats = encode()
        arrays = {**arrays, **boundaries}
        self.cache.write_unit(unit, arrays, stats)
        self.raw_bytes += sum(a.nbytes for a in arrays.values())

    def ratio(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def no_write(self: CacheWriter, unit: int, arrays: Any, stats: Any = None) -> None:
    CALLS["write_unit"] += 1


def no_size(self: CacheWriter, unit: int) -> int:
    return 0


def no_stats(bounds: list[torch.Tensor], *args: Any, **kwargs: Any) -> np.ndarray:
    CALLS["unit_stats"] += 1
    return np.zeros((len(bounds), 4))


NO_WRITES = [(CacheWriter, "write_unit", no_write), (CacheWriter, "stored_bytes_of_unit", no_size)]
# (overrides, patches, the stand-ins that must be called once a unit)
VARIANTS: dict[str, tuple[list[str], list[tuple[Any, str, Any]], list[str]]] = {
    "default": ([], [], []),
    "no writes": ([], NO_WRITES, ["write_unit"]),
    "no writes, no stats": ([], [*NO_WRITES, (on_device, "unit_stats", no_stats)], ["write_unit", "unit_stats"]),
    "inline writes": ([], [(extract_module, "_UnitWriter", InlineWriter)], ["InlineWriter.submit"]),
    "store.codec=none": (["store.codec=none"], [], []),
    "store.codec=blosc-lz4": (["store.codec=blosc-lz4"], [], []),
}


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)  # an attribute litcache no longer has fails here, not silently
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def median_ms(fn: Callable[[], Any], reps: int = 7) -> float:
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def run_variant(name: str, base: list[str], teacher: str, out: Path, images: int, units: int) -> float:
    """Seconds of ``extract()``'s loop in variant ``name`` of the pipeline with overrides ``base``; stops if a
    stand-in was not called for every unit."""
    overrides, patches, required = VARIANTS[name]
    cfg = load_pipeline(PIPELINE, [*base, *overrides])
    CALLS.clear()
    with ExitStack() as stack:
        for obj, attr, value in patches:
            stack.enter_context(patched(obj, attr, value))
        seconds = timed_extract(cfg, teacher, out, images)["seconds"]
    for stand_in in required:
        if CALLS[stand_in] < units:
            sys.exit(f"{name}: {stand_in} stood in for {CALLS[stand_in]} of {units} units; fix the script")
    return seconds


def unit_parts(teacher_path: str, cfg: PipelineConfig, out: Path, images: int) -> dict[str, float]:
    """Milliseconds of unit 0's parts of the complete cache at ``out``, single-threaded but ``write_unit``."""
    cache = open_writer(str(out))
    assert isinstance(cache, CacheWriter)
    store, first, where = cfg.store, cache.stored_boundaries()[0], " (unit 0)"
    dtype = torch.float16 if store.dtype == "float16" else torch.float32
    bounds_dtype, keepbits = (torch.float32, 0) if store.bits else (dtype, store.bitround_keepbits)
    output_dtype = torch.float32 if cache.output_name == "logits" else dtype
    layout = extract_module.teacher_memory_format(cfg)
    teacher, _ = load_model(teacher_path)
    teacher.to(memory_format=layout).eval()
    split = cached_load_images(cfg.data, "train", images)
    s, e = cache.unit_rows(0)
    rows = np.arange(s, e)
    x = make_views(split, cfg.data, cfg.extract.seed, rows % len(split), rows // len(split))
    cpu = torch.device("cpu")

    def forward() -> tuple[list[torch.Tensor], torch.Tensor]:
        return teacher_rows(
            teacher, x, cfg.extract.batch_size, cpu, bounds_dtype, layout, keepbits, first, output_dtype
        )

    parts: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rounding = ", mantissa rounding" if keepbits else ""
        parts[f"teacher_rows (forward, cast{rounding})"] = median_ms(forward)
        bounds, _ = forward()
        if store.bits:
            quantise = lambda: [quantize_unit(b, store.bits) for b in bounds]  # noqa: E731
            parts[f"quantize_unit ({store.bits}-bit codes, bit fields)"] = median_ms(quantise)
            quantised = quantise()
            values, steps = [q[2] for q in quantised], [q[1][0] for q in quantised]
            stats = lambda: unit_stats(values, first, where, steps=steps, decoded=store.dtype)  # noqa: E731
        else:
            stats = lambda: unit_stats(bounds, first, where, store.bitround_keepbits)  # noqa: E731
        parts["unit_stats (of the stored values)"] = median_ms(stats)
        parts["encode_unit (the above, to numpy)"] = median_ms(lambda: encode_unit(bounds, first, where, store))
        boundaries, unit_statistics = encode_unit(bounds, first, where, store)
        codecs = [(c, a) for name, a in boundaries.items() if (c := cache.codec(name)) is not None]
        parts[f"{store.codec} {store.level} alone on them"] = median_ms(lambda: [c.encode(a) for c, a in codecs])
    finally:
        torch.set_num_threads(threads)
    # the unit as extract wrote it (its boundaries made again, bit for bit): rewriting it changes nothing
    arrays = {name: np.asarray(cache.array(name)[s:e]) for name in cache.data_arrays()}
    arrays.update(boundaries)
    write = lambda: cache.write_unit(0, arrays, unit_statistics)  # noqa: E731
    parts[f"write_unit (encode, checksum, store; {threads} torch threads)"] = median_ms(write)
    return parts


def boundary_bytes(out: Path) -> tuple[float, float]:
    """Stored bytes of the boundaries (scales included) per unit, and per boundary element."""
    s = summarize(open_cache(str(out)))
    stored = sum(a["stored_bytes"] for name, a in s["arrays"].items() if name.startswith(("boundary/", "quant/")))
    return stored / s["units_total"], s["boundary_bytes_per_element"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=str(RESULTS / "teachers" / "resnet20-cifar10.pt"))
    ap.add_argument("--data", default=str(DATA), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--images", type=int, default=1536, help="images x 2 views = rows extracted per variant")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a store setting for every variant, e.g. --store bits=0 (float16 boundaries); repeatable",
    )
    ap.add_argument("--work", default=str(WORK), help="where the variants' caches are written (and deleted)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.teacher).is_file():
        sys.exit(f"no teacher at {args.teacher}: pass --teacher (a ResNet-20 trained on CIFAR-10)")
    base = [
        f'data.source="{args.data}"',
        'data.index_dir=""',  # the split is decoded once, outside the timings: no sidecar needed
        "extract.views=2",
        "extract.device=cpu",  # the forward-only loop and the parts run on the CPU too
        "data.in_memory=true",
        *[f"store.{item}" for item in args.store],
    ]
    cfg = load_pipeline(PIPELINE, base)
    out = Path(args.work) / "breakdown.zarr"
    n = args.images
    timed_extract(cfg, args.teacher, out, n, max_units=1)  # warm-up
    probe = open_cache(str(out))
    rows_per_unit, units, rows = probe.rows_per_unit, probe.num_units, probe.rows
    teacher, _ = load_model(args.teacher)
    teacher.eval()
    images = cached_load_images(cfg.data, "train", n)

    times: dict[str, list[float]] = {"forward only": [], **{k: [] for k in VARIANTS}}
    for rep in range(args.reps):
        times["forward only"].append(forward_only(teacher, images, cfg, rows_per_unit, rows))
        for name in VARIANTS:
            times[name].append(run_variant(name, base, args.teacher, out, n, units))
        print(f"rep {rep + 1}/{args.reps} done", flush=True)
    forward = statistics.median(times["forward only"])
    variants = {}
    for name, ts in times.items():
        m = statistics.median(ts)
        variants[name] = {
            "median_s": m,
            "ratio": m / forward,
            "ms_per_unit_over_forward": (m - forward) / units * 1e3,
            "seconds": ts,
        }
    timed_extract(cfg, args.teacher, out, n)  # the parts below time the store as configured
    parts = unit_parts(args.teacher, cfg, out, n)
    per_unit, per_element = boundary_bytes(out)
    result = {
        "store": dataclasses.asdict(cfg.store),
        "rows": rows,
        "units": units,
        "rows_per_unit": rows_per_unit,
        "torch_threads": torch.get_num_threads(),
        "variants": variants,
        "unit_parts_ms": parts,
        "boundary_bytes_per_unit": per_unit,
        "bytes_per_boundary_element": per_element,
    }
    report(result)
    return result


def report(r: dict[str, Any]) -> None:
    store = r["store"]
    kind = f"{store['bits']}-bit codes" if store["bits"] else f"{store['dtype']}, {store['bitround_keepbits']} bits"
    print(
        f"\n{r['rows']} rows, {r['units']} units of {r['rows_per_unit']} rows, {r['torch_threads']} torch threads; "
        f"store: {kind}, {store['codec']} {store['level']}"
    )
    print(f"{'variant':<24} {'median s':>9} {'ratio':>6} {'ms/unit over forward':>21}  repeats")
    for name, v in r["variants"].items():
        ts = [round(t, 2) for t in v["seconds"]]
        print(f"{name:<24} {v['median_s']:>9.2f} {v['ratio']:>6.3f} {v['ms_per_unit_over_forward']:>21.1f}  {ts}")
    print("\nunit 0's parts, single-threaded but write_unit (ms):")
    for name, ms in r["unit_parts_ms"].items():
        print(f"  {name:<52} {ms:7.1f}")
    print(f"  boundary bytes stored per unit (scales included): {r['boundary_bytes_per_unit'] / 1e6:.3f} MB")
    print(f"  bytes per boundary element: {r['bytes_per_boundary_element']:.3f}")


if __name__ == "__main__":
    main()
