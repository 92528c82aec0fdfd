"""The state one run of benchmarks/run.py shares between its stages: its sizes, its pipeline config, the results
so far, and the resources several stages use (the images, the real teacher and its cache), made on first use."""

from __future__ import annotations

import argparse
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import DATA, PADDED, RESULTS, ROOT, STUDENT, WORK, cached_load_images, log, timed_extract
from sizing import plan, seconds_per_row

import litcache
from litcache.config import (
    DataConfig,
    ExtractConfig,
    ModelConfig,
    PipelineConfig,
    TeacherConfig,
    TrainConfig,
    load_pipeline,
)
from litcache.data import ImageSet, make_views, to_unit_float
from litcache.device import resolve_device
from litcache.models import describe
from litcache.models.checkpoint import load_model, save_model
from litcache.train.loop import evaluate
from litcache.train.supervised import train_teacher


def _training_amount(path: Path) -> float:
    """Epochs x training images a litcache checkpoint records (0 when unknown or unreadable)."""
    try:
        meta = load_model(path)[1]
        return float(meta.get("epochs") or 0) * float(meta.get("samples") or 0)
    except litcache.LitcacheError:
        return 0.0


class Bench:
    """One run: ``args`` as parsed, ``size`` (from :func:`sizing.plan`), ``cfg`` and ``results`` (key -> record)."""

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

    @cached_property
    def images(self) -> ImageSet:
        return cached_load_images(self.data, "train", self.size["images"])

    @cached_property
    def real_teacher(self) -> tuple[str, dict[str, Any]]:
        """A ResNet-20 trained on real CIFAR-10: --teacher, else an existing one under work/, else trained now."""
        candidates = self._teacher_candidates()
        info: dict[str, Any] = {"candidates": [str(p.relative_to(ROOT)) for p in candidates if p.is_relative_to(ROOT)]}
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            path, info["trained_in_this_run_seconds"] = self._train_real_teacher()
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

    def _teacher_candidates(self) -> list[Path]:
        """--teacher, else the checkpoints at hand, the most trained first (quality.py's teacher included)."""
        if self.args.teacher:
            if not Path(self.args.teacher).is_file():
                sys.exit(f"--teacher {self.args.teacher}: no such checkpoint")
            return [Path(self.args.teacher)]
        found = [*WORK.glob("teacher-resnet20*.pt"), *WORK.glob("quality/teacher-resnet20*.pt")]
        found += [*(RESULTS / "teachers").glob("resnet20-*.pt")]  # the committed quality teacher
        return sorted(found, key=lambda p: -_training_amount(p))

    def _train_real_teacher(self) -> tuple[Path, float]:
        """A ResNet-20 trained now on real CIFAR-10 (kept under work/ for later runs), and the seconds it took."""
        n, epochs = self.size["teacher_images"], self.size["teacher_epochs"]
        path = WORK / f"teacher-resnet20-{epochs}ep-{n}.pt"
        log(f"training the real teacher: resnet20, {epochs} epoch(s) on {n} CIFAR-10 images -> {path}")
        started = time.perf_counter()
        cfg = self.cfg.replace(teacher=TeacherConfig(model=ModelConfig(name="resnet20")))
        train_teacher(cfg, path, epochs=epochs, limit=n, resume=True, show_progress=False)  # an interrupted one goes on
        return path, time.perf_counter() - started

    @cached_property
    def real_cache(self) -> Path:
        """A default-settings cache of the real teacher (the extract_overhead stage leaves its last one here)."""
        out = self.work / "real.zarr"
        if not (out / "zarr.json").exists():
            timed_extract(self.cfg, self.real_teacher[0], out, self.size["images"])
        return out

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
