"""Where extraction's time goes beyond the teacher's forward, on this machine.

    python benchmarks/extract_breakdown.py                 # about 3 minutes on an idle 2-core CPU
    python benchmarks/extract_breakdown.py --images 512    # smaller

Times ``extract()`` over the same rows in variants that each remove or move one part of the work, alternated
with the forward-only loop of ``run.py`` (views + ``forward_boundaries``, same batches and memory format),
and prints each variant's median time and its ratio to the forward-only median:

- ``default``: ``extract()`` as shipped (background writer threads);
- ``no writes``: every unit's ``write_unit`` replaced by a no-op (forward, cast, statistics, hand-off only);
- ``no writes, no stats``: as above, and the per-unit statistics skipped too;
- ``inline writes``: each unit written in the main thread before the next forward (nothing overlaps);
- ``store.codec=none`` and ``store.codec=blosc-lz4``: the default path with a cheaper codec (more bytes).

Also times one unit's parts single-threaded: the forward, the statistics, the codec alone and ``write_unit``.
The patched variants exist only to measure; they never write a cache anyone reads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numcodecs import Blosc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, RESULTS, WORK, cached_load_images, forward_only, timed_extract  # noqa: E402

from litcache.cache.layout import boundary_name
from litcache.cache.reader import open_cache  # noqa: E402
from litcache.cache.writer import CacheWriter, open_writer  # noqa: E402
from litcache.config import load_pipeline  # noqa: E402
from litcache.data import make_views, to_unit_float  # noqa: E402
from litcache.models.checkpoint import load_model  # noqa: E402

extract_module = sys.modules["litcache.extract.run"]  # the module (litcache.extract is also the function's name)


class InlineWriter:
    """Stands in for extract's background writers: writes each unit at once, in the caller's thread."""

    def __init__(self, cache: CacheWriter, threads: int, max_in_flight: int) -> None:
        self.cache, self.raw_bytes = cache, 0

    def submit(self, unit: int, arrays: dict[str, np.ndarray], stats: np.ndarray) -> None:
        self.cache.write_unit(unit, arrays, stats)

    def ratio(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
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


def unit_parts(teacher_path: str, cfg: Any, rows: int) -> dict[str, float]:
    """Single-threaded milliseconds of one unit's parts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher, _ = load_model(teacher_path)
        teacher.eval()
        images = cached_load_images(cfg.data, "train", rows)
        r = np.arange(rows)
        x = make_views(images, cfg.data, 0, r % rows, r // rows)
        with torch.inference_mode():
            bounds, _ = teacher.forward_boundaries(to_unit_float(x))
            half = [b.half() for b in bounds[1:]]
            arrays = [b.numpy() for b in half]
            codec = Blosc("zstd", 1, Blosc.SHUFFLE, 1 << 20)
            return {
                "forward": median_ms(lambda: teacher.forward_boundaries(to_unit_float(x))),
                "statistics": median_ms(lambda: extract_module.unit_stats(half)),
                "blosc-zstd 1 encode of the boundaries": median_ms(lambda: [codec.encode(a) for a in arrays]),
            }
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default=str(RESULTS / "teachers" / "resnet20-cifar10.pt"))
    ap.add_argument("--images", type=int, default=1536, help="images x 2 views = rows extracted per variant")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.teacher).is_file():
        sys.exit(f"no teacher at {args.teacher}: pass --teacher (a ResNet-20 trained on CIFAR-10)")
    base = [
        f'data.source="{DATA}"',
        "extract.views=2",
        "data.in_memory=true",
    ]  # as before: decoded once, outside the timings
    cfg = load_pipeline("cifar10-resnet20-resnet8", base)
    out = WORK / "breakdown.zarr"
    n = args.images
    timed_extract(cfg, args.teacher, out, n, max_units=1)  # warm-up
    rows_per_unit = open_cache(str(out)).rows_per_unit
    teacher, _ = load_model(args.teacher)
    teacher.eval()
    images = cached_load_images(cfg.data, "train", n)

    def no_write(self: CacheWriter, unit: int, arrays: Any, stats: Any = None) -> None:
        pass

    def no_stats(bounds: list[torch.Tensor]) -> np.ndarray:
        return np.zeros((len(bounds), 3))

    variants: dict[str, tuple[list[str], list[tuple[Any, str, Any]]]] = {
        "default": ([], []),
        "no writes": ([], [(CacheWriter, "write_unit", no_write)]),
        "no writes, no stats": ([], [(CacheWriter, "write_unit", no_write), (extract_module, "unit_stats", no_stats)]),
        "inline writes": ([], [(extract_module, "_UnitWriter", InlineWriter)]),
        "store.codec=none": (["store.codec=none"], []),
        "store.codec=blosc-lz4": (["store.codec=blosc-lz4"], []),
    }
    times: dict[str, list[float]] = {"forward only": [], **{k: [] for k in variants}}
    for rep in range(args.reps):
        times["forward only"].append(forward_only(teacher, images, cfg, rows_per_unit, 2 * n))
        for name, (overrides, patches) in variants.items():
            vcfg = load_pipeline("cifar10-resnet20-resnet8", base + overrides)
            with ExitStack() as stack:
                for obj, attr, value in patches:
                    stack.enter_context(patched(obj, attr, value))
                times[name].append(timed_extract(vcfg, args.teacher, out, n)["seconds"])
        print(f"rep {rep + 1}/{args.reps} done", flush=True)
    forward = statistics.median(times["forward only"])
    units = -(-2 * n // rows_per_unit)
    print(f"\n{2 * n} rows, {units} units of {rows_per_unit} rows, {torch.get_num_threads()} torch threads")
    print(f"{'variant':<24} {'median s':>9} {'ratio':>6} {'ms/unit over forward':>21}  repeats")
    for name, ts in times.items():
        m = statistics.median(ts)
        extra = (m - forward) / units * 1e3
        print(f"{name:<24} {m:>9.2f} {m / forward:>6.3f} {extra:>21.1f}  {[round(t, 2) for t in ts]}")
    print("\none unit's parts, single-threaded (ms):")
    for name, ms in unit_parts(args.teacher, cfg, rows_per_unit).items():
        print(f"  {name:<40} {ms:7.1f}")
    timed_extract(cfg, args.teacher, out, n)  # the parts below time the default store settings
    cache = open_writer(str(out))
    assert isinstance(cache, CacheWriter)
    arrays = {name: np.asarray(cache.array(name)[:rows_per_unit]) for name in cache.data_arrays()}
    print(f"  {'write_unit (encode, checksum, store)':<40} {median_ms(lambda: cache.write_unit(0, arrays)):7.1f}")
    stored = sum(int(cache.array(boundary_name(k)).nbytes_stored()) for k in range(1, cache.num_sections + 1))
    print(f"  boundary bytes stored per unit: {stored / units / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
