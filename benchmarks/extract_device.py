"""Extraction against forward-only for torchvision's ResNet-50 at 224 px, on whatever device is there, and where
extraction's time goes: device, copy, encode, write. Issue 22, "Ready for a GPU".

    python benchmarks/extract_device.py --threads 1         # cpu: 32 images x 3 reps x 3 stores, about 5 minutes
    python benchmarks/extract_device.py --images 1024 --batch-size 256   # a GPU (not run yet: a few minutes)
    python benchmarks/extract_device.py --input random      # random uint8 images, where the CIFAR-10 shards are not
    python benchmarks/extract_device.py --device cpu --size 64 --images 4 --reps 1 --input random   # smoke: ~1 min

The teacher is torchvision's ``resnet50`` (10 classes) with random weights and BatchNorm statistics from the first
64 views of the data (so activations have a trained network's scale and float16 holds them); its sections are the
four stages litcache's spec of torchvision's ResNets names (``layer1`` ... ``layer4``). The input is, by default,
CIFAR-10 from ``../shared/data/cifar10`` (``--data``; one shard, ``train-0.tar``, is enough for 10,000 images)
upscaled to ``--size`` px by ``data.transform=random-resized-crop``, one view a sample, decoded into memory first;
``--input random`` makes random uint8 images of ``--size`` px instead (an image folder under ``--work``). The device
is ``cuda`` when there is one, else the CPU (``--device`` forces one). On a busy 2-core CPU one torch thread
(``--threads 1``) ran the forward twice as fast as two.

For each store (``--bits``: 4, the default store, 8, and 0, float16 with 7 mantissa bits) it alternates, ``--reps``
times, over the same rows:

- ``extract``: the real ``litcache.extract.extract()``, default settings but the store's bits (its timed loop,
  ``summary["seconds"]``: views made ahead in threads, the forward, quantisation, copies, background writers and
  their final drain);
- ``forward only``: the same loop without the store: the same steps of views (made ahead by the same threads), the
  same batches and memory format, ``forward_boundaries`` in inference mode, a device synchronize at the end;
- ``parts``: the very functions extraction runs (``write_units``, ``encode_unit``, ``CacheWriter.write_unit``), on
  the same steps, one after another in this thread (no overlap), timed between device synchronizes (``PART_NOTES``):
  ``views`` (host), ``device`` = ``teacher_rows`` (upload, forward, cast) + ``per_unit`` (NaN check, quantisation,
  packing, statistics), ``copy`` (device to host), ``encode`` (the store codec: compression), ``write`` =
  ``write_chunks`` (the encoded chunks into the store) + ``write_records`` (checksums, scales, statistics,
  progress record). The parts rewrite the units the extract just wrote, and must write the same checksums and
  statistics, or the script stops.

It prints, per store, the median seconds of both loops and their ratio, the parts in ms a row, and the stored bytes
per boundary element (scales included), and writes ``benchmarks/results/extract_device-<device>.json``. On the CPU
``copy`` is close to 0 and the writer threads share the cores with the forward; on a GPU the forward is short and
the question is whether the rest (per-unit work on the device, views, encode, write on the host) keeps up with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from litcache.cache import _zarr
from litcache.cache.codecs import row_crc32
from litcache.cache.layout import INPUT, INPUT_CRC, PROGRESS, STATS, boundary_name
from litcache.cache.quantize import quant_name
from litcache.cache.reader import Cache, open_cache
from litcache.cache.summary import summarize
from litcache.cache.writer import CacheWriter, open_writer
from litcache.config import ModelConfig, PipelineConfig, StoreConfig, load_pipeline
from litcache.data import iter_views, load_images, make_views, to_unit_float
from litcache.device import resolve_device
from litcache.extract import extract
from litcache.extract.on_device import check_outputs, quantize_unit, teacher_rows, unit_stats
from litcache.extract.run import teacher_memory_format
from litcache.models import build_model
from litcache.models.checkpoint import load_model, save_model
from litcache.models.specs import resolve_spec

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "extract_device"
PIPELINE = "cifar10-torchvision-resnet50"
TEACHER = ModelConfig(factory="torchvision.models:resnet50", kwargs={"num_classes": 10})
SECTIONS = tuple(resolve_spec(TEACHER)["sections"])  # litcache's spec of torchvision's ResNets: layer1 ... layer4
PARTS = ("views", "device", "copy", "encode", "write")
SPLITS = ("teacher_rows", "write_chunks")  # timed inside device and write
SPLIT_NAMES = ("teacher_rows", "per_unit", "write_chunks", "write_records")
CALIBRATION = 64  # views that set the random teacher's BatchNorm statistics
PART_NOTES = {
    "views": "make_views on the host (extract makes them ahead in data.workers threads)",
    "device": "between device synchronizes: teacher_rows (upload of the uint8 views, forward, cast, float16's "
    "mantissa rounding) + per_unit (NaN check, quantize_unit and packing, unit_stats)",
    "copy": "device -> host: .cpu().numpy() of codes and scales (or float16 boundaries) and logits",
    "encode": "the store codec's encode (Blosc-zstd) of every array of each unit, inside write_unit",
    "write": "the rest of CacheWriter.write_unit: write_chunks (the encoded chunks into the store) + write_records "
    "(checksums, the scales' and statistics' arrays, the progress record)",
}

Step = tuple[list[int], list[tuple[int, int]], np.ndarray, np.ndarray]  # units, their row ranges, samples, views


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (a no-op on the CPU): timed regions end only when their work has."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# -- data and teacher ---------------------------------------------------------------------------------------------
def random_images(folder: Path, n: int, size: int) -> Path:
    """An image folder of ``n`` random uint8 RGB images of ``size`` px (one class), made once."""
    from PIL import Image

    images = folder / "train" / "0"
    if images.is_dir() and len(list(images.glob("*.png"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"{i:06d}.png")
    return folder


def pipeline(source: Path, args: argparse.Namespace, device: torch.device, bits: int) -> PipelineConfig:
    """The ResNet-50 pipeline over ``source`` at ``--size`` px, one view a sample, with store.bits = ``bits``."""
    cfg = load_pipeline(
        PIPELINE,
        [
            f'data.source="{source}"',
            "data.transform=random-resized-crop",
            f"data.size={args.size}",
            f"data.eval_resize={max(256, args.size)}",
            "data.in_memory=true",  # decoded once, before the timed loops
            'data.index_dir=""',
            "extract.views=1",
            f"extract.batch_size={args.batch_size}",
            f"extract.device={device}",
            f"store.bits={bits}",
        ],
    )
    return cfg.replace(teacher=dataclasses.replace(cfg.teacher, model=TEACHER))


def calibrated_teacher(cfg: PipelineConfig, images: Any, path: Path) -> Path:
    """torchvision's resnet50, random weights (seed 0), BatchNorm statistics from the first views; kept at ``path``."""
    if path.is_file():
        return path
    torch.manual_seed(0)
    model = build_model(TEACHER, 10, cfg.data.mean, cfg.data.std)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the calibration batches
    model.train()
    n = min(CALIBRATION, len(images))
    with torch.no_grad():
        for s in range(0, n, 16):
            r = np.arange(s, min(s + 16, n))
            model(to_unit_float(make_views(images, cfg.data, cfg.extract.seed, r, np.zeros_like(r))))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model.eval(), path, note=f"random weights (seed 0), BatchNorm statistics from {n} views")
    return path


# -- the loops ----------------------------------------------------------------------------------------------------
def plan(cache: Cache, batch_size: int, samples: int) -> list[Step]:
    """extract()'s steps over every unit: as many whole units as fit ``extract.batch_size`` rows."""
    per_step = max(1, batch_size // cache.rows_per_unit)
    out = []
    for i in range(0, cache.num_units, per_step):
        units = list(range(i, min(i + per_step, cache.num_units)))
        ranges = [cache.unit_rows(u) for u in units]
        rows = np.concatenate([np.arange(s, e) for s, e in ranges])
        out.append((units, ranges, rows % samples, rows // samples))
    return out


def run_extract(cfg: PipelineConfig, teacher: Path, out: Path, images: int, **kw: Any) -> dict[str, Any]:
    """``extract()`` of the first ``images`` samples into a new ``out``: its summary (``seconds``: its loop)."""
    shutil.rmtree(out, ignore_errors=True)
    return extract(cfg, str(teacher), str(out), limit=images, show_progress=False, **kw)


@torch.inference_mode()
def forward_only(teacher: Any, images: Any, cfg: PipelineConfig, steps: list[Step], device: torch.device) -> float:
    """extract()'s loop without the store: views made ahead by the same threads, the forward over each batch."""
    sync, layout, batch = synchronizer(device), teacher_memory_format(cfg), cfg.extract.batch_size
    sync()
    started = time.perf_counter()
    made = iter_views(images, cfg.data, cfg.extract.seed, ((None, s, v) for _, _, s, v in steps))
    with closing(made):
        for _, x in made:
            for start in range(0, len(x), batch):
                xb = to_unit_float(x[start : start + batch].to(device, non_blocking=True))
                teacher.forward_boundaries(xb.contiguous(memory_format=layout))
    sync()
    return time.perf_counter() - started


class TimedCodec:
    """A store codec whose ``encode`` adds its seconds to ``clock[name]``."""

    def __init__(self, codec: Any, name: str, clock: dict[str, float]) -> None:
        self.codec, self.name, self.clock = codec, name, clock

    def encode(self, x: np.ndarray) -> Any:
        started = time.perf_counter()
        out = self.codec.encode(x)
        self.clock[self.name] += time.perf_counter() - started
        return out


def on_device(bounds: list[torch.Tensor], first: int, where: str, store: StoreConfig) -> tuple[dict, np.ndarray]:
    """``encode_unit``'s work before the host copy: the unit's tensors to store (codes and scales, or the cast
    boundaries), still on their device, and their statistics."""
    if not store.bits:
        tensors = {boundary_name(k): b for k, b in enumerate(bounds, start=first)}
        return tensors, unit_stats(bounds, first, where, store.bitround_keepbits)
    tensors, values, steps = {}, [], []
    for k, b in enumerate(bounds, start=first):
        packed, qparams, decoded = quantize_unit(b, store.bits)
        tensors.update({boundary_name(k): packed, quant_name(k): qparams})
        values.append(decoded)
        steps.append(qparams[0])
    return tensors, unit_stats(values, first, where, steps=steps, decoded=store.dtype)


@contextmanager
def timed_store(cache: CacheWriter, clock: dict[str, float], by_array: dict[str, float]) -> Iterator[None]:
    """Within: ``cache``'s codecs add their encode seconds to ``by_array[name]``, and the writes of the encoded
    chunks (``_zarr.write_objects``, one call a unit) theirs to ``clock["write_chunks"]``."""
    codec_of, write_objects = cache.codec, _zarr.write_objects

    def timed_write_objects(items: Any) -> None:
        started = time.perf_counter()
        write_objects(items)
        clock["write_chunks"] += time.perf_counter() - started

    cache.codec = lambda name: None if (c := codec_of(name)) is None else TimedCodec(c, name, by_array)  # type: ignore
    _zarr.write_objects = timed_write_objects
    try:
        yield
    finally:
        _zarr.write_objects = write_objects
        del cache.codec


@torch.inference_mode()
def time_parts(
    cache: CacheWriter, cfg: PipelineConfig, teacher: Any, images: Any, steps: list[Step], device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds of each part over ``steps``, run one after another here, and of ``SPLITS`` within them
    (``teacher_rows`` within ``device``, the chunk writes within ``write``); and the encode seconds by array.

    The same calls as ``write_units`` and ``encode_unit`` (``litcache/extract``), split where the host copy is."""
    sync, store, layout = synchronizer(device), cfg.store, teacher_memory_format(cfg)
    dtype = torch.float16 if store.dtype == "float16" else torch.float32
    first, output = cache.stored_boundaries()[0], cache.output_name
    output_dtype = torch.float32 if output == "logits" else dtype
    bounds_dtype, keepbits = (torch.float32, 0) if store.bits else (dtype, store.bitround_keepbits)
    clock, by_array = dict.fromkeys((*PARTS, *SPLITS), 0.0), defaultdict(float)
    for units, ranges, samples, views in steps:
        started = time.perf_counter()
        x = make_views(images, cfg.data, cfg.extract.seed, samples, views)
        clock["views"] += time.perf_counter() - started
        sync()
        started = time.perf_counter()
        bounds, logits = teacher_rows(
            teacher, x, cfg.extract.batch_size, device, bounds_dtype, layout, keepbits, first, output_dtype
        )
        sync()
        clock["teacher_rows"] += time.perf_counter() - started
        done, offset = [], 0
        for u, (s, e) in zip(units, ranges, strict=True):
            sl = slice(offset, offset + e - s)
            offset += e - s
            where = f" (rows {s}..{e - 1}, unit {u})"
            check_outputs(logits[sl], [b[sl] for b in bounds], first, where, output)
            done.append((u, sl, *on_device([b[sl] for b in bounds], first, where, store)))
        sync()
        copied = time.perf_counter()
        clock["device"] += copied - started
        host = [
            (u, sl, {n: t.cpu().numpy() for n, t in ts.items()}, logits[sl].cpu().numpy(), st) for u, sl, ts, st in done
        ]
        sync()
        clock["copy"] += time.perf_counter() - copied
        for u, sl, arrays, out, stats in host:
            arrays.update(
                {
                    "rows/sample": samples[sl].astype(np.int32),
                    "rows/view": views[sl].astype(np.int32),
                    "rows/label": images.labels[samples[sl]].astype(np.int32),
                    output: out,
                }
            )
            if cache.input_stored:
                arrays[INPUT] = x[sl].numpy()
            else:
                arrays[INPUT_CRC] = row_crc32(x[sl].numpy())
            encoded = sum(by_array.values())
            started = time.perf_counter()
            with timed_store(cache, clock, by_array):
                cache.write_unit(u, arrays, stats)
            seconds, encoding = time.perf_counter() - started, sum(by_array.values()) - encoded
            clock["encode"] += encoding
            clock["write"] += seconds - encoding
    return clock, dict(by_array)


# -- one store ----------------------------------------------------------------------------------------------------
def stored_bytes(out: Path) -> dict[str, Any]:
    """Bytes per boundary element (scales counted), in all and per boundary, and stored bytes a row."""
    s = summarize(open_cache(str(out)))
    rows, arrays = s["rows"], s["arrays"]
    per = {}
    for k, shape in enumerate(s["boundary_shapes"]):
        if boundary_name(k) in arrays:
            b = arrays[boundary_name(k)]["stored_bytes"] + arrays.get(quant_name(k), {}).get("stored_bytes", 0)
            per[boundary_name(k)] = b / (rows * int(np.prod(shape)))
    return {
        "bytes_per_boundary_element": s["boundary_bytes_per_element"],
        "bytes_per_element_by_boundary": per,
        "stored_bytes_per_row": s["stored_bytes"] / rows,
        "input_bytes_per_row": arrays[INPUT]["stored_bytes"] / rows if INPUT in arrays else 0.0,
        "boundary_shapes": s["boundary_shapes"],
    }


def records(cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(cache.array(PROGRESS)[:]), np.asarray(cache.array(STATS)[:])


def measure_store(args: argparse.Namespace, cfg: PipelineConfig, path: Path, device: torch.device) -> dict[str, Any]:
    """extract() against forward-only (alternating), the parts, and the bytes of one store."""
    out = args.work / f"bits{cfg.store.bits}.zarr"
    run_extract(cfg, path, out, args.images, max_units=1)  # warm-up; it also tells the units' size
    cache = open_cache(str(out))
    images = load_images(cfg.data, "train", args.images)  # the split extract() opened (kept per process)
    steps = plan(cache, cfg.extract.batch_size, len(images))
    teacher, _ = load_model(path)
    teacher.to(device).to(memory_format=teacher_memory_format(cfg)).eval()
    times: dict[str, list[float]] = defaultdict(list)
    by_array: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, Any] = {}
    for rep in range(args.reps):
        times["extract"].append(run_extract(cfg, path, out, args.images)["seconds"])
        sizes = sizes or stored_bytes(out)
        times["forward_only"].append(forward_only(teacher, images, cfg, steps, device))
        writer = open_writer(str(out))
        before = records(writer)
        parts, encoded = time_parts(writer, cfg, teacher, images, steps, device)
        after = records(writer)
        if not (np.array_equal(before[0], after[0]) and np.allclose(before[1], after[1], rtol=1e-6)):
            sys.exit(f"bits={cfg.store.bits}: the parts wrote other data than extract() did; fix the script")
        parts["per_unit"] = parts["device"] - parts["teacher_rows"]
        parts["write_records"] = parts["write"] - parts["write_chunks"]
        for p, seconds in parts.items():
            times[p].append(seconds)
        for name, s in encoded.items():
            by_array[name].append(s)
        print(
            f"  bits={cfg.store.bits} rep {rep + 1}/{args.reps}: extract {times['extract'][-1]:.2f} s, "
            f"forward only {times['forward_only'][-1]:.2f} s",
            flush=True,
        )
    shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = args.images
    return {
        "store": dataclasses.asdict(cfg.store),
        "rows": rows,
        "rows_per_unit": cache.rows_per_unit,
        "units": cache.num_units,
        "steps": len(steps),
        "median_extract_s": med["extract"],
        "median_forward_only_s": med["forward_only"],
        "ratio": med["extract"] / med["forward_only"],
        "parts_median_s": {p: med[p] for p in PARTS},
        "parts_ms_per_row": {p: 1e3 * med[p] / rows for p in PARTS},
        "parts_sum_s": sum(med[p] for p in PARTS),
        # device = teacher_rows + per_unit, write = write_chunks + write_records (PART_NOTES)
        "split_ms_per_row": {k: 1e3 * med[k] / rows for k in SPLIT_NAMES},
        "encode_median_s_by_array": {n: statistics.median(v) for n, v in sorted(by_array.items())},
        "seconds": times,
        **sizes,
    }


# -- the run ------------------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict[str, Any]:
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "litcache_dirty": bool(git("status", "--porcelain", "litcache")),  # uncommitted changes were measured
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    ap.add_argument("--images", type=int, default=32, help="images = rows extracted (one view each)")
    ap.add_argument("--batch-size", type=int, default=16, help="extract.batch_size")
    ap.add_argument("--reps", type=int, default=3, help="alternating repeats; medians are reported")
    ap.add_argument("--size", type=int, default=224, help="view side in px")
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 8, 0], help="store.bits of each store (0 = float16)")
    ap.add_argument("--input", choices=("cifar10", "random"), default="cifar10")
    ap.add_argument("--data", type=Path, default=DATA, help="the CIFAR-10 shards (--input cifar10)")
    ap.add_argument("--work", type=Path, default=WORK, help="scratch: caches, the teacher, random images")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/extract_device-<device>.json")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    out_json = args.out or RESULTS / f"extract_device-{device.type}.json"
    if args.input == "cifar10" and not args.data.is_dir():
        sys.exit(f"no CIFAR-10 shards at {args.data}: pass --data PATH, or --input random")
    args.work.mkdir(parents=True, exist_ok=True)
    started, where = time.perf_counter(), machine(device)
    source = (
        args.data.resolve()
        if args.input == "cifar10"
        else random_images(args.work / f"random-{args.size}px", args.images, args.size)
    )
    cfg0 = pipeline(source, args, device, 0)
    images = load_images(cfg0.data, "train", args.images)
    n_cal = min(CALIBRATION, len(images))
    kept = f"resnet50-{source.name}-{zlib.crc32(str(source).encode()):08x}-{args.size}px-bn{n_cal}.pt"
    path = calibrated_teacher(cfg0, images, args.work / kept)
    stores = {}
    for bits in args.bits:
        label = f"bits={bits}" if bits else "float16"
        stores[label] = measure_store(args, pipeline(source, args, device, bits), path, device)
    what = (
        f"CIFAR-10 ({args.data.name}, 32 px)" if args.input == "cifar10" else f"random uint8 images of {args.size} px"
    )
    result = {
        "script": "benchmarks/extract_device.py",
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "device": device.type,
        "teacher": f"torchvision resnet50 (10 classes), random weights, BatchNorm statistics from {n_cal} views",
        "sections": list(SECTIONS),
        "input": f"{what}, views of {args.size} px by random-resized-crop",
        "images": args.images,
        "views": 1,
        "size": args.size,
        "batch_size": args.batch_size,
        "reps": args.reps,
        "parts": PART_NOTES,
        "stores": stores,
        "machine": {**where, "loadavg_end": os.getloadavg()},
        "wall_seconds": time.perf_counter() - started,
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"-> {out_json}")
    return result


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\n{result['images']} rows of {result['input']}, {result['device']}, batch {result['batch_size']}, "
        f"medians of {result['reps']}"
    )
    head = f"{'store':<9} {'extract s':>9} {'fwd s':>7} {'ratio':>6} |" + "".join(f" {p:>7}" for p in PARTS)
    print(head + " ms/row | B/elem")
    for label, s in result["stores"].items():
        parts = "".join(f" {s['parts_ms_per_row'][p]:>7.1f}" for p in PARTS)
        print(
            f"{label:<9} {s['median_extract_s']:>9.2f} {s['median_forward_only_s']:>7.2f} {s['ratio']:>6.3f} |"
            f"{parts}        | {s['bytes_per_boundary_element']:.3f}"
        )
    for label, s in result["stores"].items():
        t = s["split_ms_per_row"]
        print(
            f"{label}: device = teacher_rows {t['teacher_rows']:.1f} + per unit {t['per_unit']:.1f}; write = chunks "
            f"{t['write_chunks']:.1f} + records {t['write_records']:.1f} ms/row"
        )


if __name__ == "__main__":
    main()
