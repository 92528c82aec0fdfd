"""What the stages of benchmarks/run.py share: paths, the targets and the record of a key, timing, memoised
images, and the two extraction loops that several stages time (``extract()`` and its forward-only twin)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import resource
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import litcache.extract.run as extract_module
from litcache.config import DataConfig, ModelConfig, PipelineConfig
from litcache.data import ImageSet, load_images, make_views, to_unit_float
from litcache.extract.run import extract

warnings.filterwarnings("ignore", message=".*not in the Zarr version 3 specification.*")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10"
WORK = ROOT / "benchmarks" / "work"
RESULTS = ROOT / "benchmarks" / "results"
STUDENT = "resnet20"
PAD_MB = 400  # teacher_free_memory: the ResNet-110 teacher carries this much unused buffer (benchmarks/padded.py)
PADDED = ModelConfig(
    factory=f"{ROOT / 'benchmarks' / 'padded.py'}:padded_resnet",
    kwargs={"depth": 110, "pad_mb": PAD_MB},
    sections=("layer1", "layer2", "layer3"),
)

TARGETS = {
    "extract_overhead": ("<=", 1.15),
    "bytes_per_element": ("<=", 0.5),  # issue 22: ImageNet-scale caches need at most half a byte an element
    "stream_vs_raw": (">=", 0.9),  # issue 22: the quantised default streams nearly as fast as raw float16
    "stream_vs_consumption": (">=", 3.0),
    "cached_vs_online_epoch": ("<=", 0.6),
    "students_cost_ratio": ("<=", 0.6),
    "stream_vs_memory": ("<=", 1.05),
}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def result(key: str, value: float, **raw: Any) -> dict[str, Any]:
    op, target = TARGETS[key]
    met = value <= target if op == "<=" else value >= target
    return {"value": value, "target": f"{op} {target}", "met": bool(met), **raw}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its reaped children (DataLoader workers, probes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# -- images, decoded once ----------------------------------------------------------------------------------------
_IMAGES: dict[tuple[Any, ...], ImageSet] = {}


def cached_load_images(cfg: DataConfig, split: str = "train", limit: int | None = None) -> ImageSet:
    """load_images, memoised: the benchmark decodes the JPEGs once (always outside the timed regions)."""
    key = (cfg.source, cfg.num_classes, tuple(cfg.mean), tuple(cfg.std), split, limit)
    if key not in _IMAGES:
        _IMAGES[key] = load_images(cfg, split, limit)
    return _IMAGES[key]


extract_module.load_images = cached_load_images  # extract() calls it once per run, before its timed loop


@contextlib.contextmanager
def unmemoised_loading() -> Any:
    """extract() opens its data itself, as a user's run does (stream_vs_memory times the opening too)."""
    extract_module.load_images = load_images
    try:
        yield
    finally:
        extract_module.load_images = cached_load_images


# -- the extraction loops ----------------------------------------------------------------------------------------
@functools.lru_cache
def checkpoint_model(path: str) -> ModelConfig:
    """The model a litcache checkpoint records (read memory-mapped: the padded teacher is 400 MB)."""
    spec = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["model"]
    if spec.get("name"):
        return ModelConfig(name=spec["name"])
    return ModelConfig(factory=spec["factory"], kwargs=dict(spec["kwargs"]), sections=tuple(spec["sections"]))


def timed_extract(cfg: PipelineConfig, teacher: str, out: Path, limit: int, **kw: Any) -> dict[str, Any]:
    """``extract()`` of ``teacher`` into ``out`` (the pipeline's teacher.model set to the checkpoint's, which extract
    requires), timed: the summary plus the whole call's seconds and CPU seconds."""
    cfg = cfg.replace(teacher=dataclasses.replace(cfg.teacher, model=checkpoint_model(str(teacher))))
    rmtree(out)
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = extract(cfg, teacher, str(out), limit=limit, show_progress=False, **kw)
    return {**summary, "call_seconds": time.perf_counter() - started, "call_cpu_seconds": cpu_seconds() - cpu}


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
