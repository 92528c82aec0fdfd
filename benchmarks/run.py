"""The performance goals, measured as ratios of things measured side by side in one run.

    python benchmarks/run.py --quick        # 2-5 minutes on a shared 2-core CPU -> benchmarks/results/latest.json
    python benchmarks/run.py                # larger samples and more repeats (tens of minutes on a CPU)

Every key of the JSON maps to ``{"value": ..., "target": ..., "met": ..., <the raw figures it came from>}``;
``machine`` and ``settings`` say where and how it ran. Speed figures may use teachers with random weights;
``bytes_per_element`` and ``codec_table`` use a teacher trained on real CIFAR-10, over real images. Timed pairs
run alternately (A B A B ...) and each figure is the median over its repeats. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

import litcache
import litcache.extract
from litcache.checkpoint import load_model, save_model
from litcache.codec import bitround, build_codecs
from litcache.config import (
    DataConfig,
    ExtractConfig,
    ModelConfig,
    PipelineConfig,
    StoreConfig,
    StreamConfig,
    TeacherConfig,
    TrainConfig,
    load_pipeline,
)
from litcache.data import ImageSet, build_index, find_files, forget_opened, load_images, make_views, to_unit_float
from litcache.extract import extract, resolve_device
from litcache.loop import evaluate
from litcache.models import build_model, describe
from litcache.objective import LitObjective
from litcache.optim import build_optimizer
from litcache.store import FROZEN, ArraySpec, Cache, open_cache
from litcache.stream import ROW, CacheStream
from litcache.students import build_student
from litcache.summary import summarize
from litcache.supervised import train_teacher
from litcache.train import train_sections
from litcache.writer import create_cache

warnings.filterwarnings("ignore", message=".*not in the Zarr version 3 specification.*")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10"
WORK = ROOT / "benchmarks" / "work"
RESULTS = ROOT / "benchmarks" / "results"
STUDENT = "resnet20"
STUDENTS_PER_CACHE = 4  # students_cost_ratio: one extraction serves this many students
PAD_MB = 400  # teacher_free_memory: the ResNet-110 teacher carries this much unused buffer (benchmarks/padded.py)
PADDED = ModelConfig(
    factory=f"{ROOT / 'benchmarks' / 'padded.py'}:padded_resnet",
    kwargs={"depth": 110, "pad_mb": PAD_MB},
    sections=("layer1", "layer2", "layer3"),
)

REFERENCE_SECONDS_PER_ROW = 1e-3  # a ResNet-20 inference forward on an idle 2-core x86 CPU, for the record


def plan(mode: str, t_row: float) -> dict[str, int]:
    """Sizes of this run. The machines are shared and their speed moves by 10x with the load, so each timed
    measurement is sized to take about a budgeted number of seconds at the speed measured at start-up
    (``t_row``: seconds per row of a ResNet-20 inference forward), within fixed bounds. Repeats are fixed."""
    quick = mode == "quick"
    k = 1.0 if quick else 5.0  # the full run's budgets

    def rows(seconds: float, per_row: float, step: int, lo: int, hi: int) -> int:
        return int(min(hi, max(lo, step * round(seconds / per_row / step))))

    views = 2 if quick else 4
    extract_rows = rows(3.0 * k, t_row, 512, 512, 4096 if quick else 16384)  # forward-only pass ~3 s
    return dict(
        views=views,
        images=extract_rows // views,  # x views = rows of each timed extraction, 256 rows a step
        extract_reps=3 if quick else 5,  # extract / forward-only pairs
        stream_rows=rows(3.0 * k, 0.3 * t_row, 1024, 2048, 8192 if quick else 16384),  # (tiled) cache epoch
        stream_reps=3 if quick else 5,
        lit_rows=rows(5.0 * k, 8 * t_row, 256, 256, 1024 if quick else 4096),  # online ResNet-110 epoch ~5 s
        lit_reps=2 if quick else 3,  # cached / online epoch pairs, each epoch in its own subprocess
        # epochs from each cache for teacher_free_memory: a peak RSS moves by +-30 MB from one epoch to the
        # next (how many prefetched batches sit in the main process at the peak), so more than for timing
        memory_reps=2 if quick else 5,
        consume_batches=rows(3.0 * k, 128 * 2.5 * t_row, 1, 3, 20 if quick else 50),  # after a warm-up step
        codec_reps=3 if quick else 5,
        test_images=rows(1.0 * k, t_row, 250, 250, 2000 if quick else 10000),  # the real teacher's accuracy
        # stream_vs_memory: whole extract() calls of >= 1,024 images (several seconds each), 5 pairs: a 5 % target
        # needs more than the load's noise allows with 3 pairs of short calls
        data_images=rows(6.0 * k, views * t_row, 256, 1024, 4096 if quick else 8192),
        data_reps=5,
        teacher_images=2000 if quick else 5000,  # a real teacher trained here when none is at hand
        teacher_epochs=1 if quick else 3,
    )


@torch.inference_mode()
def seconds_per_row(device: str) -> float:
    """The machine's speed now: seconds per row of a ResNet-20 inference forward at batch 128."""
    model = build_model("resnet20").to(device).eval()
    x = torch.rand(128, 3, 32, 32, device=device)
    model(x[:32])
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - started)
    return median(times) / len(x)


TARGETS = {
    "extract_overhead": ("<=", 1.15),
    "bytes_per_element": ("<=", 1.3),
    "stream_vs_raw": (">=", 0.5),
    "stream_vs_consumption": (">=", 3.0),
    "cached_vs_online_epoch": ("<=", 0.6),
    "students_cost_ratio": ("<=", 0.6),
    "stream_vs_memory": ("<=", 1.05),
}
# model_teachers: other kinds of teacher beside the ResNet-20 row, (spec, teacher.* overrides for a short training)
VIT = {"model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4}
MODEL_TEACHERS = {
    "torchvision resnet50": (ModelConfig(factory="torchvision.models:resnet50"), {}),
    "timm vit_tiny (12 blocks, 4 px patches)": (
        ModelConfig(factory="timm:create_model", kwargs=VIT, sections=("blocks.0:4", "blocks.4:8", "blocks.8:12")),
        {"lr": 0.01},  # SGD at the ResNets' 0.1 is not what a ViT trains with
    ),
}
MEMORY_TOLERANCE_MB = 32.0  # teacher_free_memory is "met" when |difference| <= max(this, 5 % of the small one)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def result(key: str, value: float, **raw: Any) -> dict[str, Any]:
    op, target = TARGETS[key]
    met = value <= target if op == "<=" else value >= target
    return {"value": value, "target": f"{op} {target}", "met": bool(met), **raw}


_IMAGES: dict[tuple[Any, ...], ImageSet] = {}


def cached_load_images(cfg: DataConfig, split: str = "train", limit: int | None = None) -> ImageSet:
    """load_images, memoised: the benchmark decodes the JPEGs once (always outside the timed regions)."""
    key = (cfg.source, cfg.num_classes, tuple(cfg.mean), tuple(cfg.std), split, limit)
    if key not in _IMAGES:
        _IMAGES[key] = load_images(cfg, split, limit)
    return _IMAGES[key]


litcache.extract.load_images = cached_load_images  # extract() calls it once per run, before its timed loop


@contextlib.contextmanager
def unmemoised_loading() -> Any:
    """extract() opens its data itself, as a user's run does (stream_vs_memory times the opening too)."""
    litcache.extract.load_images = load_images
    try:
        yield
    finally:
        litcache.extract.load_images = cached_load_images


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its reaped children (DataLoader workers, probes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _training_amount(path: Path) -> float:
    """Epochs x training images a litcache checkpoint records (0 when unknown or unreadable)."""
    try:
        meta = load_model(path)[1]
        return float(meta.get("epochs") or 0) * float(meta.get("samples") or 0)
    except litcache.LitcacheError:
        return 0.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- stage-one helpers -------------------------------------------------------------------------------------------
@torch.inference_mode()
def forward_only(teacher: Any, images: ImageSet, cfg: PipelineConfig, rows_per_unit: int, rows: int) -> float:
    """extract()'s device loop without the cast, copy and write: views + forward_boundaries, same batches and
    the same memory format (``extract.channels_last``)."""
    device = next(teacher.parameters()).device
    layout = torch.channels_last if cfg.extract.channels_last else torch.contiguous_format
    teacher.to(memory_format=layout)
    batch = cfg.extract.batch_size
    units = range(math.ceil(rows / rows_per_unit))
    units_per_step = max(1, batch // rows_per_unit)
    started = time.perf_counter()
    for i in range(0, len(units), units_per_step):
        ranges = [(u * rows_per_unit, min((u + 1) * rows_per_unit, rows)) for u in units[i : i + units_per_step]]
        r = np.concatenate([np.arange(s, e) for s, e in ranges])
        x = make_views(images, cfg.data, cfg.extract.seed, r % len(images), r // len(images))
        for start in range(0, len(x), batch):
            xb = to_unit_float(x[start : start + batch].to(device, non_blocking=True))
            teacher.forward_boundaries(xb.contiguous(memory_format=layout))
    return time.perf_counter() - started


def timed_extract(cfg: PipelineConfig, teacher: str, out: Path, limit: int, **kw: Any) -> dict[str, Any]:
    rmtree(out)
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = extract(cfg, teacher, str(out), limit=limit, show_progress=False, **kw)
    return {**summary, "call_seconds": time.perf_counter() - started, "call_cpu_seconds": cpu_seconds() - cpu}


def tile_cache(src: Cache, url: Path, rows: int, store: StoreConfig) -> Cache:
    """A one-view cache of ``rows`` rows whose chunks are copies of ``src``'s chunks (same bytes, same codecs).

    Real activations, more rows than the run extracted: each of its chunks holds exactly the rows of one chunk
    of ``src``, so it compresses and decodes exactly like ``src``.
    """
    rmtree(url)
    assert src.rows % src.rows_per_unit == 0 and src.rows_per_unit == src.rows_per_chunk
    data = {n: src.array(n)[:] for n in src.data_arrays()}
    manifest = {**src.manifest, "rows": rows, "views": 1, "data": {**src.manifest["data"], "samples": rows}}
    manifest["benchmark"] = f"rows tiled from {src.url} ({src.rows} rows)"
    specs = [ArraySpec(n, tuple(a["row_shape"]), a["dtype"]) for n, a in src.manifest["arrays"].items()]
    small = {f"{FROZEN}/{name}": np.asarray(arr[...]) for name, arr in src.group[FROZEN].arrays()}  # type: ignore[union-attr]
    writer = create_cache(str(url), manifest, specs, store, small)
    assert writer.rows_per_unit == src.rows_per_unit
    for u in range(writer.num_units):
        s, e = writer.unit_rows(u)
        idx = np.arange(s, e) % src.rows
        writer.write_unit(u, {n: x[idx] for n, x in data.items()})
    writer.finish()
    return open_cache(str(url))


# -- stage-two helpers -------------------------------------------------------------------------------------------
def read_memmaps(folder: Path, names: list[str]) -> Callable[..., Any]:
    """Stage: like stream.read_chunks, from uncompressed .npy memmaps (one copy per range, as zarr returns)."""
    opened: dict[int, dict[str, np.ndarray]] = {}

    def stage(src: Any) -> Any:
        pid = os.getpid()
        if pid not in opened:
            opened[pid] = {n: np.load(folder / (n.replace("/", "_") + ".npy"), mmap_mode="r") for n in names}
        arrays = opened[pid]
        for d in src:
            s, e = d["start"], d["stop"]
            out = {n: np.array(arrays[n][s:e]) for n in names}
            out[ROW] = np.arange(s, e, dtype=np.int64)
            yield out

    return stage


class MemmapStream(CacheStream):
    """CacheStream with the cache read swapped for memmaps: same ranges, split, shuffle, batching and loader."""

    def __init__(self, cache: Cache, arrays: list[str], cfg: StreamConfig, folder: Path) -> None:
        super().__init__(cache, arrays, cfg)
        self.folder = folder

    def read_stage(self) -> Callable[..., Any]:
        return read_memmaps(self.folder, self.arrays)


def stream_rate(stream: CacheStream, epoch: int = 0) -> tuple[float, float]:
    """Samples per second over one whole epoch, loader start-up and shut-down included; and CPU s per 1000."""
    started, cpu = time.perf_counter(), cpu_seconds()
    rows = sum(len(b[ROW]) for b in stream.epoch(epoch))
    return rows / (time.perf_counter() - started), (cpu_seconds() - cpu) * 1000 / rows


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image. ru_maxrss would do, except that Linux carries it across exec, so a
    subprocess of a big benchmark process would report its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe_train(cache: str, out: str, teacher: str | None, device: str) -> None:
    """Subprocess body of teacher_free_memory: one train-sections epoch; peak memory as one JSON line.

    The main process's peak is exact (VmHWM); the whole tree (main + DataLoader workers) is sampled every
    100 ms as PSS, so pages the forked workers share with the main process are not counted twice.
    """
    import threading

    import psutil

    me = psutil.Process()
    peak = {"tree_pss_mb": 0.0, "workers_pss_mb": 0.0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                main = me.memory_full_info().pss
                workers = sum(p.memory_full_info().pss for p in me.children(recursive=True))
                peak["tree_pss_mb"] = max(peak["tree_pss_mb"], (main + workers) / 2**20)
                peak["workers_pss_mb"] = max(peak["workers_pss_mb"], workers / 2**20)
            except psutil.Error:  # a worker exiting between listing and reading
                pass
            stop.wait(0.1)

    # the padded teacher's factory is named here, so the online baseline may build it from its checkpoint
    cfg = PipelineConfig(
        teacher=TeacherConfig(model=PADDED), train=TrainConfig(student=ModelConfig(STUDENT), device=device)
    )
    before = _vm_hwm_mb()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.perf_counter()
    recs = train_sections(cfg, cache, out, epochs=1, teacher_path=teacher, show_progress=False)
    seconds = time.perf_counter() - started
    stop.set()
    poller.join()
    print(
        json.dumps(
            {
                "main_peak_rss_mb": _vm_hwm_mb(),
                "main_peak_rss_before_training_mb": before,
                **peak,
                "epoch_seconds": recs[0]["seconds"],
                "call_seconds": seconds,
            }
        )
    )


def run_probe(cache: Path, out: Path, teacher: Path | None, device: str) -> dict[str, Any]:
    rmtree(out)
    cmd = [sys.executable, __file__, "--probe-train", str(cache), str(out), "--probe-device", device]
    if teacher is not None:
        cmd += ["--probe-teacher", str(teacher)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode = "quick" if args.quick else "full"
        self.device = str(resolve_device("auto"))
        self.t_row = seconds_per_row(self.device)
        self.size = plan(self.mode, self.t_row)
        self.work = WORK / "run"
        self.work.mkdir(parents=True, exist_ok=True)
        # the keys before stream_vs_memory measure the in-memory path (decoded once, outside their timings)
        self.data = DataConfig(source=str(args.data), num_classes=10, in_memory=True, index_dir=str(WORK / "index"))
        self.cfg = PipelineConfig(
            data=self.data,
            teacher=TeacherConfig(model=PADDED),  # names the padded teacher's factory, so its checkpoint may build it
            extract=ExtractConfig(views=self.size["views"], device=self.device),
            store=load_pipeline(None, [f"store.{item}" for item in args.store]).store,
            train=TrainConfig(student=ModelConfig(STUDENT), device=self.device),
        )
        self.results: dict[str, Any] = {}

    # shared resources, made on first use ------------------------------------------------------------------------
    @cached_property
    def images(self) -> ImageSet:
        return cached_load_images(self.data, "train", self.size["images"])

    @cached_property
    def real_teacher(self) -> tuple[str, dict[str, Any]]:
        """A ResNet-20 trained on real CIFAR-10: --teacher, else an existing one under work/, else trained now."""
        if self.args.teacher:
            if not Path(self.args.teacher).is_file():
                sys.exit(f"--teacher {self.args.teacher}: no such checkpoint")
            candidates = [Path(self.args.teacher)]
        else:  # the most trained of those at hand (quality.py's teacher included)
            found = [*WORK.glob("teacher-resnet20*.pt"), *WORK.glob("quality/teacher-resnet20*.pt")]
            found += [*(RESULTS / "teachers").glob("resnet20-*.pt")]  # the committed quality teacher
            candidates = sorted(found, key=lambda p: -_training_amount(p))
        info: dict[str, Any] = {"candidates": [str(p.relative_to(ROOT)) for p in candidates if p.is_relative_to(ROOT)]}
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            n, epochs = self.size["teacher_images"], self.size["teacher_epochs"]
            path = WORK / f"teacher-resnet20-{epochs}ep-{n}.pt"
            log(f"training the real teacher: resnet20, {epochs} epoch(s) on {n} CIFAR-10 images -> {path}")
            started = time.perf_counter()
            cfg = self.cfg.replace(teacher=TeacherConfig(model=ModelConfig(name="resnet20")))
            train_teacher(cfg, path, epochs=epochs, limit=n, show_progress=False)
            info["trained_in_this_run_seconds"] = time.perf_counter() - started
        model, meta = load_model(path)
        test = cached_load_images(self.data, "test", self.size["test_images"])
        acc = evaluate(model, test, torch.device("cpu"))["accuracy"]
        info.update(
            path=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            arch=describe(model.spec),
            how_trained=f"litcache.supervised.train_teacher on real CIFAR-10 ({DATA.name} shards): "
            f"{meta.get('epochs')} epoch(s) on {meta.get('samples')} training images",
            checkpoint_meta=meta,
            test_accuracy=acc,
            test_images=len(test),
        )
        log(f"real teacher {path.name}: {info['how_trained']}; test accuracy {acc:.3f} on {len(test)} images")
        return str(path), info

    @cached_property
    def real_cache(self) -> Path:
        """A default-settings cache of the real teacher (the extract_overhead stage leaves its last one here)."""
        out = self.work / "real.zarr"
        if not (out / "zarr.json").exists():
            timed_extract(self.cfg, self.real_teacher[0], out, self.size["images"])
        return out

    # keys ---------------------------------------------------------------------------------------------------------
    def bench_extract(self) -> None:
        """extract_overhead and bytes_per_element: extract() vs its loop without cast/copy/write, ABAB."""
        teacher_path, teacher_info = self.real_teacher
        n, reps = self.size["images"], self.size["extract_reps"]
        rows = n * self.cfg.extract.views
        out = self.work / "real.zarr"
        warm = timed_extract(self.cfg, teacher_path, out, n, max_units=1)  # warm-up: zarr, codecs, threads
        rows_per_unit = open_cache(str(out)).rows_per_unit
        teacher, _ = load_model(teacher_path)
        teacher.to(self.device).eval()
        forward_only(teacher, self.images, self.cfg, rows_per_unit, rows_per_unit)
        ext, base, calls, ext_cpu, base_cpu, nchw = [], [], [], [], [], []
        nchw_cfg = self.cfg.replace(extract=dataclasses.replace(self.cfg.extract, channels_last=False))
        for r in range(reps):
            s = timed_extract(self.cfg, teacher_path, out, n)
            ext.append(s["seconds"])
            calls.append(s["call_seconds"])
            ext_cpu.append(s["call_cpu_seconds"])
            cpu = cpu_seconds()
            base.append(forward_only(teacher, cached_load_images(self.data, "train", n), self.cfg, rows_per_unit, rows))
            base_cpu.append(cpu_seconds() - cpu)
            nchw.append(forward_only(teacher, cached_load_images(self.data, "train", n), nchw_cfg, rows_per_unit, rows))
            log(
                f"extract rep {r + 1}/{reps}: extract {ext[-1]:.2f}s, forward only {base[-1]:.2f}s "
                f"(CPU {ext_cpu[-1]:.2f}s incl. set-up / {base_cpu[-1]:.2f}s)"
            )
        setup = timed_extract(self.cfg, teacher_path, self.work / "setup-only.zarr", n, max_units=0)
        rmtree(self.work / "setup-only.zarr")
        value = median(ext) / median(base)
        self.results["extract_overhead"] = result(
            "extract_overhead",
            value,
            extract_loop_seconds=ext,
            forward_only_seconds=base,
            extract_call_seconds=calls,
            median_extract_s=median(ext),
            median_forward_only_s=median(base),
            channels_last=self.cfg.extract.channels_last,
            forward_only_nchw_seconds=nchw,
            channels_last_speedup=median(nchw) / median(base),
            pairwise_ratios=[a / b for a, b in zip(ext, base, strict=True)],
            call_wall_ratio=median(calls) / median(base),
            extract_call_cpu_seconds=ext_cpu,
            forward_only_cpu_seconds=base_cpu,
            setup_only_call_cpu_seconds=setup["call_cpu_seconds"],
            cpu_ratio=(median(ext_cpu) - setup["call_cpu_seconds"]) / median(base_cpu),
            rows=rows,
            batch_size=self.cfg.extract.batch_size,
            rows_per_unit=rows_per_unit,
            writers=self.cfg.extract.writers,
            queue_units=self.cfg.extract.queue_units,
            device=self.device,
            teacher=teacher_info["arch"] + " (real weights)",
            warmup_units=warm["units_written"],
            note="extract's own timed loop (summary['seconds']: views, forward, cast, background encode+write, "
            "drain) / the same loop with forward_boundaries only (same memory format); call_wall_ratio adds "
            "teacher load, fingerprints, cache creation and finish(); cpu_ratio = CPU seconds of the work (all "
            "threads; extract's set-up, measured by a max_units=0 call, subtracted) / those of the forward-only loop. "
            "Both ratios move with other load: extra threads win CPU from other processes, and OpenMP threads "
            "spin (burning CPU) while their peer is descheduled; compare runs at similar load",
        )
        cache = open_cache(str(out))
        s = summarize(cache)
        bounds = {k: v for k, v in s["arrays"].items() if k.startswith("boundary/")}
        zeros = {k: float(np.mean(cache.array(k)[:] == 0)) for k in bounds}
        self.results["bytes_per_element"] = result(
            "bytes_per_element",
            s["boundary_bytes_per_element"],
            per_boundary={k: v["stored_bytes"] / (np.prod(v["shape"]) or 1) for k, v in bounds.items()},
            zero_fraction=zeros,
            boundary_stored_bytes=sum(v["stored_bytes"] for v in bounds.values()),
            boundary_elements=int(sum(np.prod(v["shape"]) for v in bounds.values())),
            cache_stored_bytes_per_row=s["stored_bytes"] / s["rows"],
            rows=s["rows"],
            views=s["views"],
            store=s["store"],
            boundary_stats=s["boundary_stats"],
            teacher=teacher_info,
        )
        self.__dict__["real_cache"] = out

    def bench_codecs(self) -> None:
        """codec_table: real boundaries, extracted losslessly, rewritten under each codec; bytes/element and MB/s."""
        rows = 1024 if self.mode == "quick" else 4096  # whole chunks: a multiple of 128
        lossless = self.cfg.replace(
            extract=dataclasses.replace(self.cfg.extract, views=1),
            store=dataclasses.replace(self.cfg.store, bitround_keepbits=0),
        )
        source = self.work / "codec-source.zarr"
        timed_extract(lossless, self.real_teacher[0], source, rows)
        src = open_cache(str(source))
        chunk = src.rows_per_chunk
        data = {n: src.array(n)[:] for n in src.data_arrays() if n.startswith("boundary/")}
        raw = sum(x.nbytes for x in data.values())
        elements = sum(x.size for x in data.values())
        settings = [
            ("blosc-zstd-1 shuffle 1MiB", StoreConfig(bitround_keepbits=0)),
            ("blosc-zstd-1 shuffle, Blosc blocks", StoreConfig(blosc_blocksize=0, bitround_keepbits=0)),
            ("blosc-lz4-1 shuffle 1MiB", StoreConfig(codec="blosc-lz4", bitround_keepbits=0)),
            ("zstd-1", StoreConfig(codec="zstd", bitround_keepbits=0)),
            ("zstd-3", StoreConfig(codec="zstd", level=3, bitround_keepbits=0)),
            ("blosc-zstd-1 shuffle 1MiB + bitround 7 (default)", StoreConfig()),
            ("blosc-zstd-1 shuffle 1MiB + bitround 5", StoreConfig(bitround_keepbits=5)),
            ("none", StoreConfig(codec="none", bitround_keepbits=0)),
        ]
        table = []
        folder = self.work / "codecs"
        for label, cfg in settings:
            writes, reads, stored, err_max, err_rms = [], [], 0, 0.0, 0.0
            for rep in range(self.size["codec_reps"]):
                rmtree(folder)
                w = r = 0.0
                stored = 0
                for name, x in data.items():
                    arr = zarr.create_array(
                        str(folder / name),
                        shape=x.shape,
                        chunks=(chunk, *x.shape[1:]),
                        dtype=x.dtype,
                        fill_value=0,
                        **build_codecs(cfg),
                    )
                    t = time.perf_counter()
                    arr[:] = bitround(x, cfg.bitround_keepbits) if cfg.bitround_keepbits else x  # as the writer
                    w += time.perf_counter() - t
                    stored += arr.nbytes_stored()
                    back_arr = zarr.open_array(str(folder / name), mode="r")
                    t = time.perf_counter()
                    back = back_arr[:]
                    r += time.perf_counter() - t
                    if rep == 0 and cfg.bitround_keepbits:
                        x32, d = x.astype(np.float32), back.astype(np.float32) - x.astype(np.float32)
                        err_max = max(err_max, float(np.abs(d).max()) / (float(np.abs(x32).max()) or 1.0))
                        err_rms = max(err_rms, float(np.sqrt(np.mean(d**2) / (np.mean(x32**2) or 1.0))))
                    elif rep == 0 and not np.array_equal(back, x):
                        raise AssertionError(f"codec {label} is not lossless on {name}")
                writes.append(w)
                reads.append(r)
            table.append(
                {
                    "codec": label,
                    "dtype": "float16",
                    "store": {k: getattr(cfg, k) for k in ("codec", "level", "blosc_blocksize", "bitround_keepbits")},
                    "bytes_per_element": stored / elements,
                    "ratio_vs_float16": raw / stored,
                    "write_MBps": raw / 1e6 / median(writes),
                    "read_MBps": raw / 1e6 / median(reads),
                    "write_seconds": writes,
                    "read_seconds": reads,
                    "stored_bytes": stored,
                    "max_abs_error_rel_to_absmax": err_max,
                    "rms_error_rel": err_rms,
                }
            )
            log(
                f"codec {label}: {table[-1]['bytes_per_element']:.3f} B/elem, "
                f"write {table[-1]['write_MBps']:.0f} MB/s, read {table[-1]['read_MBps']:.0f} MB/s"
            )
        rmtree(folder)
        rmtree(source)
        self.results["codec_table"] = {
            "value": table,
            "target": "measured",
            "met": None,
            "raw_bytes": raw,
            "elements": elements,
            "rows": rows,
            "rows_per_chunk": chunk,
            "note": "real ResNet-20 boundaries 1..S of one lossless extraction (float16), written with zarr to "
            "local disk, same chunks as the cache; MB/s of decoded bytes through zarr's codec pipeline (the stream "
            "decodes whole chunks itself, faster); errors are max over boundaries (lossy rows only)",
        }

    def bench_stream(self) -> None:
        """stream_vs_raw and stream_vs_consumption."""
        src = open_cache(str(self.real_cache))
        cache = tile_cache(src, self.work / "stream.zarr", self.size["stream_rows"], self.cfg.store)
        student = build_student(cache, STUDENT, seed=0)
        tc = self.cfg.train
        sections = list(range(1, cache.num_sections + 1))
        objective = LitObjective(student, sections, 0.0, tc.temperature, tc.label_weight, tc.soft_weight)
        names = objective.required_arrays()
        folder = self.work / "memmaps"
        rmtree(folder)
        folder.mkdir(parents=True)
        for n in names:
            np.save(folder / (n.replace("/", "_") + ".npy"), cache.array(n)[:])
        rates: dict[str, list[float]] = {k: [] for k in ("cache_w2", "raw_w2", "cache_w0", "raw_w0")}
        cpu: dict[str, list[float]] = {k: [] for k in rates}
        for workers in (2, 0):
            cfg = StreamConfig(workers=workers)
            streams = {"cache": CacheStream(cache, names, cfg), "raw": MemmapStream(cache, names, cfg, folder)}
            if workers:
                stream_rate(streams["cache"]), stream_rate(streams["raw"])  # warm-up: page cache, first fork
            for _ in range(self.size["stream_reps"]):
                for kind, stream in streams.items():
                    rate, cpu_k = stream_rate(stream)
                    rates[f"{kind}_w{workers}"].append(rate)
                    cpu[f"{kind}_w{workers}"].append(cpu_k)
            log(
                f"stream, {workers} workers: cache {median(rates[f'cache_w{workers}']):.0f}/s, "
                f"raw memmap {median(rates[f'raw_w{workers}']):.0f}/s (CPU s per 1000 rows "
                f"{median(cpu[f'cache_w{workers}']):.2f} / {median(cpu[f'raw_w{workers}']):.2f})"
            )
        stream_cfg = StreamConfig()
        cache_rate = median(rates["cache_w2"])
        common = dict(
            rows_per_epoch=cache.samples,
            batch_size=stream_cfg.batch_size,
            shuffle_buffer=stream_cfg.shuffle_buffer,
            arrays=names,
            rows_per_chunk=cache.rows_per_chunk,
            cache_stored_bytes_per_row=summarize(cache)["stored_bytes"] / cache.rows,
            decoded_bytes_per_row=sum(cache.array(n).nbytes // cache.rows for n in names),
            cache_note=f"{cache.rows} rows tiled from the real {src.rows}-row cache (chunk copies)",
        )
        self.results["stream_vs_raw"] = result(
            "stream_vs_raw",
            cache_rate / median(rates["raw_w2"]),
            cache_samples_per_s=rates["cache_w2"],
            raw_samples_per_s=rates["raw_w2"],
            workers=2,
            in_process_ratio=median(rates["cache_w0"]) / median(rates["raw_w0"]),
            in_process_cache_samples_per_s=rates["cache_w0"],
            in_process_raw_samples_per_s=rates["raw_w0"],
            cpu_seconds_per_1000_rows={k: median(v) for k, v in cpu.items()},
            cpu_seconds_per_1000_rows_raw=cpu,
            note="whole epochs incl. loader start-up; raw = the same CacheStream pipeline and DataLoader with the "
            "read stage swapped for np.load(mmap_mode='r') of uncompressed .npy (page cache warm); in_process = "
            "workers=0; CPU includes the DataLoader workers",
            **common,
        )
        # consumption: train-sections' step over in-memory batches (LitObjective fwd+bwd+step, all sections)
        batches = list(
            itertools.islice(
                CacheStream(cache, names, StreamConfig(workers=0)).epoch(0), self.size["consume_batches"] + 1
            )
        )
        trainable = [p for p in student.parameters() if p.requires_grad]
        optimizer = build_optimizer(trainable, tc.lr, tc.momentum, tc.weight_decay, tc.optimizer)
        device = torch.device(self.device)
        objective.to(device)
        student.set_train_mode()
        times = []
        for b in batches:
            t = time.perf_counter()
            parts = objective({k: v.to(device) for k, v in b.items()})
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()
            _ = {k: float(v.detach()) for k, v in parts.items()}  # train_one_epoch logs every part
            times.append(time.perf_counter() - t)
        step_s = median(times[1:])  # the first step is a warm-up
        consume_rate = stream_cfg.batch_size / step_s
        log(f"consumption: {consume_rate:.0f} samples/s ({STUDENT}, all sections); stream {cache_rate:.0f}/s")
        self.results["stream_vs_consumption"] = result(
            "stream_vs_consumption",
            cache_rate / consume_rate,
            cache_samples_per_s=rates["cache_w2"],
            stream_workers=2,
            consume_samples_per_s=consume_rate,
            step_seconds=times[1:],
            warmup_step_seconds=times[0],
            student=STUDENT,
            sections=objective.sections,
            beta=0.0,
            device=self.device,
            note="stream and consumer measured separately (on a 2-core CPU they would also share the cores)",
            **common,
        )
        rmtree(folder)
        rmtree(self.work / "stream.zarr")

    @cached_property
    def big_teacher(self) -> str:
        """ResNet-110 with random convolutions and PAD_MB of unused buffer in a section (a heavy teacher, the same
        boundaries); BN statistics from 64 real images keep float16 in range."""
        torch.manual_seed(0)
        model = build_model(PADDED, 10, self.data.mean, self.data.std)
        note = f"random weights, {PAD_MB} MB unused buffer; BN stats from 64 images"
        return self.calibrated(model, "teacher-resnet110-random.pt", note)

    def calibrated(self, model: Any, name: str, note: str) -> str:
        """``model`` (random weights) saved under ``name`` with BN statistics from 64 real images."""
        path = self.work / name
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the calibration batch
        model.train()
        x = make_views(self.images, self.data, 0, np.arange(64), np.zeros(64, dtype=np.int64))
        with torch.no_grad():
            model(to_unit_float(x))
        save_model(model.eval(), path, note=note)
        return str(path)

    def bench_data(self) -> None:
        """stream_vs_memory: extract() from the shards, streamed ÷ the in-memory path, whole calls, ABAB."""
        torch.manual_seed(0)
        model = build_model("resnet20", 10, self.data.mean, self.data.std)
        teacher = self.calibrated(model, "teacher-resnet20-random.pt", "random weights; BN stats from 64 images")
        n, reps = self.size["data_images"], self.size["data_reps"]
        memory = self.cfg
        streamed = self.cfg.replace(data=dataclasses.replace(self.data, in_memory=False))
        started = time.perf_counter()
        index = build_index(find_files(streamed.data, "train"))  # the one-off pass, timed for the record
        index_seconds = time.perf_counter() - started
        load_images(streamed.data, "train")  # keeps the index in index_dir, as a first run would
        out = self.work / "data.zarr"
        runs: dict[str, list[dict[str, Any]]] = {"streamed": [], "in_memory": []}
        with unmemoised_loading():
            for cfg in (streamed, memory):  # warm-up: page cache, threads
                forget_opened()
                timed_extract(cfg, teacher, out, n, max_units=1)
            for r in range(reps):
                for kind, cfg in (("streamed", streamed), ("in_memory", memory)):
                    forget_opened()  # the in-memory call decodes its images, as a user's run does
                    runs[kind].append(timed_extract(cfg, teacher, out, n))
                log(
                    f"data rep {r + 1}/{reps}: streamed {runs['streamed'][-1]['call_seconds']:.2f}s, "
                    f"in memory {runs['in_memory'][-1]['call_seconds']:.2f}s"
                )
        rmtree(out)
        forget_opened()
        call = {k: [x["call_seconds"] for x in v] for k, v in runs.items()}
        loop = {k: [x["seconds"] for x in v] for k, v in runs.items()}
        cpu = {k: [x["call_cpu_seconds"] for x in v] for k, v in runs.items()}
        self.results["stream_vs_memory"] = result(
            "stream_vs_memory",
            median(call["streamed"]) / median(call["in_memory"]),
            call_seconds=call,
            loop_seconds=loop,
            loop_ratio=median(loop["streamed"]) / median(loop["in_memory"]),
            call_cpu_seconds=cpu,
            cpu_ratio=median(cpu["streamed"]) / median(cpu["in_memory"]),
            pairwise_ratios=[a / b for a, b in zip(call["streamed"], call["in_memory"], strict=True)],
            index_build_seconds=index_seconds,
            index_samples=len(index),
            images=n,
            views=self.cfg.extract.views,
            rows=n * self.cfg.extract.views,
            decoding_threads=self.data.workers,
            teacher="resnet20 (random weights, BN statistics from 64 real images)",
            device=self.device,
            note="whole extract() calls from the real CIFAR-10 shards, alternating: streamed (decodes each row's "
            "sample in its unit, data.workers threads ahead of the teacher) vs data.in_memory=true (decodes the "
            "n images into one array first, also with data.workers threads, then views from memory); the sample "
            "index is built once before (index_build_seconds: one pass over all 50,000 training images) and read "
            "from its sidecar by both; loop = extract's timed loop only (the in-memory decoding is outside it)",
        )

    def bench_lit(self) -> None:
        """cached_vs_online_epoch, students_cost_ratio and teacher_free_memory (ResNet-110 -> ResNet-20)."""
        n = self.size["lit_rows"]
        one_view = self.cfg.replace(extract=ExtractConfig(views=1, device=self.device))
        cache110, cache20 = self.work / "r110.zarr", self.work / "r20.zarr"
        # extraction of the ResNet-110 cache, alternating with its forward-only loop (as extract_overhead)
        t110, _ = load_model(self.big_teacher, trusted={PADDED.factory})
        t110.to(self.device).eval()
        images = cached_load_images(self.data, "train", n)
        ext110, fwd110 = [], []
        for r in range(self.size["lit_reps"]):
            ext110.append(timed_extract(one_view, self.big_teacher, cache110, n)["seconds"])
            if r == 0 or self.mode == "full":  # informative only: one pair in quick runs
                fwd110.append(forward_only(t110, images, one_view, open_cache(str(cache110)).rows_per_unit, n))
        ext20 = timed_extract(one_view, self.real_teacher[0], cache20, n)
        log(
            f"extract {n} rows: resnet110 {median(ext110):.1f}s (forward only {median(fwd110):.1f}s), "
            f"resnet20 {ext20['seconds']:.1f}s"
        )
        if "extract_overhead" in self.results:  # the paper's teacher: more compute per cached element
            self.results["extract_overhead"]["resnet110_teacher"] = {
                "ratio": median(ext110[: len(fwd110)]) / median(fwd110),
                "extract_loop_seconds": ext110[: len(fwd110)],
                "forward_only_seconds": fwd110,
                "rows": n,
                "weights": "random",
            }
        # every epoch runs in a fresh subprocess (the same for all three), which also gives its peak memory
        probes: dict[str, list[dict[str, Any]]] = {
            "cached_resnet110": [],
            "online_resnet110": [],
            "cached_resnet20": [],
        }
        runs = {
            "cached_resnet110": (cache110, None),
            "online_resnet110": (cache110, Path(self.big_teacher)),
            "cached_resnet20": (cache20, None),
        }
        for r in range(max(self.size["lit_reps"], self.size["memory_reps"])):
            done = []
            for kind, (cache, teacher) in runs.items():
                if r >= self.size["lit_reps" if kind == "online_resnet110" else "memory_reps"]:
                    continue  # the online epochs are for timing only
                probes[kind].append(run_probe(cache, self.work / "probe", teacher, self.device))
                done.append(f"{kind} {probes[kind][-1]['epoch_seconds']:.1f}s")
            log(f"LIT epoch rep {r + 1}: " + ", ".join(done))
        cached = [p["epoch_seconds"] for p in probes["cached_resnet110"]]
        online = [p["epoch_seconds"] for p in probes["online_resnet110"]]
        c, o = median(cached), median(online)
        pair = dict(
            teacher=f"resnet110 (random weights, {PAD_MB} MB unused buffer)",
            student=STUDENT,
            rows_per_epoch=n,
            batch_size=self.cfg.stream.batch_size,
            device=self.device,
        )
        self.results["cached_vs_online_epoch"] = result(
            "cached_vs_online_epoch",
            c / o,
            cached_epoch_seconds=cached,
            online_epoch_seconds=online,
            note="train_sections(epochs=1), each in a fresh subprocess, alternating; the epoch record's seconds "
            "(loader start-up included, process start-up not): all sections, IR loss, beta=0; online via "
            "teacher_path",
            **pair,
        )
        s = STUDENTS_PER_CACHE
        ext_s = median(ext110)
        self.results["students_cost_ratio"] = result(
            "students_cost_ratio",
            (ext_s + s * c) / (s * o),
            students=s,
            extraction_seconds_per_view=ext_s,
            extraction_seconds_per_row=ext_s / n,
            extraction_seconds_repeats=ext110,
            cached_epoch_seconds=c,
            online_epoch_seconds=o,
            formula="per epoch E: (E views x rows x extraction_s_per_row + students x E x cached_epoch) / "
            "(students x E x online_epoch); E cancels",
            computed_from="extract() of one view of these rows and the median epoch times measured in this run",
            **pair,
        )
        peak = {k: median([p["main_peak_rss_mb"] for p in v]) for k, v in probes.items()}
        tree = {k: median([p["tree_pss_mb"] for p in v]) for k, v in probes.items()}
        diff = peak["cached_resnet110"] - peak["cached_resnet20"]
        tol = max(MEMORY_TOLERANCE_MB, 0.05 * peak["cached_resnet20"])
        log(
            "peak RSS of train-sections: "
            + ", ".join(
                f"{k} {peak[k]:.0f} MB (tree PSS {tree[k]:.0f} MB)"
                for k in ("cached_resnet110", "cached_resnet20", "online_resnet110")
            )
        )
        online_excess = peak["online_resnet110"] - peak["cached_resnet110"]
        self.results["teacher_free_memory"] = {
            "value": diff,
            "unit": "MB",
            "target": f"~ 0 (|difference| <= {tol:.0f} MB), online >= cached + {0.8 * PAD_MB:.0f} MB",
            # the second condition shows the probe can see a teacher: were the teacher loaded by cached training,
            # the difference would be about PAD_MB, far beyond the tolerance
            "met": abs(diff) <= tol and online_excess >= 0.8 * PAD_MB,
            "teacher_mb": {"resnet110_padded": 7 + PAD_MB, "resnet20": 1},
            "online_minus_cached_mb": online_excess,
            "margin_mb": online_excess - abs(diff),
            "ratio": peak["cached_resnet110"] / peak["cached_resnet20"],
            "main_peak_rss_mb": peak,
            "tree_peak_pss_mb": tree,
            "tree_difference_mb": tree["cached_resnet110"] - tree["cached_resnet20"],
            "probes": probes,
            "student": STUDENT,
            "rows": n,
            "main_peak_rss_before_training_mb": {
                k: median([p["main_peak_rss_before_training_mb"] for p in v]) for k, v in probes.items()
            },
            "note": "train_sections(epochs=1), each in a fresh subprocess; value = difference of the training "
            f"process's peak RSS (VmHWM) with the resnet110 (+{PAD_MB} MB unused buffer) vs the resnet20 cache "
            "(medians); tree = main + DataLoader workers, PSS sampled every 100 ms; online_resnet110 = the padded "
            "teacher in memory: online_minus_cached_mb is what holding it costs",
        }
        for p in (cache110, cache20, self.work / "lit-cached", self.work / "lit-online", self.work / "probe"):
            rmtree(p)

    def model_teacher(self, label: str, spec: ModelConfig, teacher_overrides: dict[str, Any]) -> str:
        """A short-trained teacher of ``spec`` on real CIFAR-10 (kept under work/ for later runs)."""
        n, epochs = self.size["teacher_images"], self.size["teacher_epochs"]
        path = WORK / f"teacher-{label.split()[1]}-{epochs}ep-{n}.pt"
        if not path.is_file():
            log(f"training {label}: {epochs} epoch(s) on {n} CIFAR-10 images -> {path}")
            cfg = self.cfg.replace(teacher=TeacherConfig(model=spec, **teacher_overrides))
            train_teacher(cfg, path, epochs=epochs, limit=n, show_progress=False)
        return str(path)

    def bench_models(self) -> None:
        """model_teachers: extract_overhead and bytes_per_element of a torchvision and a timm teacher, beside the
        ResNet-20 row of this run (the extract stage)."""
        n, reps = self.size["images"] // 2, self.size["extract_reps"]
        rows_table = []
        if "extract_overhead" in self.results:
            eo, bpe = self.results["extract_overhead"], self.results["bytes_per_element"]
            rows_table.append(
                {
                    "teacher": "CIFAR resnet20 (the extract stage's row)",
                    "extract_overhead": eo["value"],
                    "bytes_per_element": bpe["value"],
                    "rows": eo["rows"],
                    "forward_ms_per_row": 1e3 * eo["median_forward_only_s"] / eo["rows"],
                    "training": eo["teacher"],
                }
            )
        for label, (spec, overrides) in MODEL_TEACHERS.items():
            path = self.model_teacher(label, spec, overrides)
            cfg = self.cfg.replace(teacher=TeacherConfig(model=spec))
            out = self.work / "model.zarr"
            timed_extract(cfg, path, out, n, max_units=1)  # warm-up
            cache = open_cache(str(out))
            rows, rows_per_unit = n * cfg.extract.views, cache.rows_per_unit
            teacher, meta = load_model(path)
            teacher.to(self.device).eval()
            images = cached_load_images(self.data, "train", n)
            ext, base = [], []
            for _ in range(reps):
                ext.append(timed_extract(cfg, path, out, n)["seconds"])
                base.append(forward_only(teacher, images, cfg, rows_per_unit, rows))
            s = summarize(open_cache(str(out)))
            rows_table.append(
                {
                    "teacher": label,
                    "extract_overhead": median(ext) / median(base),
                    "bytes_per_element": s["boundary_bytes_per_element"],
                    "rows": rows,
                    "forward_ms_per_row": 1e3 * median(base) / rows,
                    "extract_loop_seconds": ext,
                    "forward_only_seconds": base,
                    "boundary_shapes": s["boundary_shapes"],
                    "b0": s["teacher"]["b0"],
                    "training": f"{meta.get('epochs')} epoch(s) on {meta.get('samples')} CIFAR-10 images",
                }
            )
            row = rows_table[-1]
            log(
                f"{label}: extract/forward {row['extract_overhead']:.3f}, {row['bytes_per_element']:.3f} B/elem, "
                f"forward {row['forward_ms_per_row']:.1f} ms/row"
            )
            rmtree(out)
        self.results["model_teachers"] = {
            "value": rows_table,
            "target": "measured",
            "met": None,
            "note": "extract() vs its forward-only loop (ABAB, medians) and stored bytes per boundary element under "
            "the default store settings, real CIFAR-10 images at 32 px; the torchvision and timm teachers are "
            "trained briefly here (activation statistics, and so compressibility, depend on training)",
        }


def git_state() -> dict[str, Any]:
    """The library version measured: HEAD and whether litcache/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "litcache"], cwd=ROOT, capture_output=True, text=True)
        return {"git_commit": head.strip() or None, "litcache_dirty": bool(dirty.stdout.strip())}
    except OSError:
        return {"git_commit": None, "litcache_dirty": None}


def machine() -> dict[str, Any]:
    return {
        **git_state(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "device": str(resolve_device("auto")),
        "torch": torch.__version__,
        "zarr": zarr.__version__,
        "litcache": litcache.__version__,
        "loadavg_start": os.getloadavg(),
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'key':<24} {'value':>10}  {'target':<22} {'met':<5}")
    for key in (
        "extract_overhead",
        "bytes_per_element",
        "stream_vs_raw",
        "stream_vs_consumption",
        "cached_vs_online_epoch",
        "students_cost_ratio",
        "teacher_free_memory",
        "stream_vs_memory",
    ):
        if key in results:
            r = results[key]
            unit = " MB" if key == "teacher_free_memory" else ""
            print(f"{key:<24} {r['value']:>10.3f}{unit:<3}{r['target']:<22} {str(r['met']):<5}")
    if "model_teachers" in results:
        print(f"\n{'model_teachers':<44} {'extract/fwd':>11} {'B/elem':>7} {'fwd ms/row':>10}")
        for row in results["model_teachers"]["value"]:
            print(
                f"{row['teacher']:<44} {row['extract_overhead']:>11.3f} {row['bytes_per_element']:>7.3f} "
                f"{row['forward_ms_per_row']:>10.2f}"
            )
    if "codec_table" in results:
        print(f"\n{'codec_table (float16)':<50} {'B/elem':>7} {'write MB/s':>11} {'read MB/s':>10} {'rel max err':>12}")
        for row in results["codec_table"]["value"]:
            print(
                f"{row['codec']:<50} {row['bytes_per_element']:>7.3f} {row['write_MBps']:>11.0f} "
                f"{row['read_MBps']:>10.0f} {row['max_abs_error_rel_to_absmax']:>12.2e}"
            )


STAGES = ("extract", "codecs", "stream", "lit", "models", "data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small samples, few repeats: about 3 minutes on 2 cores")
    ap.add_argument("--data", default=str(DATA), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--teacher", default=None, help="a ResNet-20 trained on CIFAR-10 (default: reuse or train one)")
    ap.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES), help="run only these stages")
    ap.add_argument("--output", default=str(RESULTS / "latest.json"))
    ap.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a store setting for the extraction and stream stages, e.g. --store bitround_keepbits=0 (repeatable)",
    )
    ap.add_argument("--probe-train", nargs=2, metavar=("CACHE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--probe-teacher", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--probe-device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_train:
        probe_train(*args.probe_train, args.probe_teacher, args.probe_device)
        return
    if not Path(args.data).exists():
        sys.exit(f"no data at {args.data}: pass --data with CIFAR-10 WebDataset shards")

    started = time.perf_counter()
    bench = Bench(args)
    info = machine()
    log(
        f"{bench.mode} run on {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, {info['device']}; "
        f"ResNet-20 forward {bench.t_row * 1e3:.2f} ms/row (load average {info['loadavg_start'][0]:.1f}) -> "
        + ", ".join(f"{k}={v}" for k, v in bench.size.items())
    )
    for stage in STAGES:
        if stage in args.only:
            getattr(bench, f"bench_{stage}")()
    info["loadavg_end"] = os.getloadavg()
    results = dict(bench.results)
    results["machine"] = info
    results["settings"] = {
        "mode": bench.mode,
        **bench.size,
        "speed_seconds_per_row": bench.t_row,
        "speed_note": "ResNet-20 inference forward at batch 128, measured at start-up; sizes follow from it "
        f"(about {REFERENCE_SECONDS_PER_ROW * 1e3:.0f} ms/row on an idle 2-core CPU)",
        "stages": args.only,
        "extract_batch_size": bench.cfg.extract.batch_size,
        "stream": bench.cfg.stream.__dict__,
        "store": bench.cfg.store.__dict__,
        "student": STUDENT,
        "data": str(args.data),
        "wall_seconds": time.perf_counter() - started,
    }
    print_table(results)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    rmtree(bench.work / "real.zarr")
    print(f"\nwall {results['settings']['wall_seconds']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
