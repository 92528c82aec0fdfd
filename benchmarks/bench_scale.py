"""The scale stage: ``storage_at_scale``, the bytes a cache row takes at 224 px with ResNet-50 boundaries, measured
under three store settings, and what they come to for ImageNet-1k's training set x 10 views."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_models import MODEL_TEACHERS, model_teacher
from common import log, rmtree, timed_extract
from harness import Bench

from litcache.cache.reader import open_cache
from litcache.cache.summary import summarize
from litcache.config import DataConfig
from litcache.data import make_views, to_unit_float
from litcache.models.checkpoint import load_model, save_model

IMAGENET_TRAIN_IMAGES = 1_281_167  # ImageNet-1k (ILSVRC-2012) training set
VIEWS = 10  # the views a 10-epoch student reads
TB = 1e12
RAW_INPUT_BYTES = 3 * 224 * 224  # one 224-px uint8 view, uncompressed
STORES = {  # label -> store settings
    "float16": {"bits": 0},  # the store before quantisation: float16, 7 mantissa bits, Blosc-zstd
    "default": {},  # 4-bit codes, views stored
    "no-input": {"input": "crc32"},  # 4-bit codes, views made again from the data (a CRC-32 a row)
}
TARGET_BYTES_PER_ELEMENT = 0.5


def row_bytes(cache_path: Any) -> dict[str, Any]:
    """Stored bytes a row takes, in all and by part (boundaries, logits, the view, everything else)."""
    s = summarize(open_cache(str(cache_path)))
    rows, arrays = s["rows"], s["arrays"]

    def part(name: str) -> str:
        top = name.split("/")[0]
        return {"boundary": "boundaries", "logits": "logits", "input": "input"}.get(top, "other")

    parts = {"boundaries": 0, "logits": 0, "input": 0, "other": 0}
    for name, arr in arrays.items():
        parts[part(name)] += arr["stored_bytes"]
    elements = sum(math.prod(shape) for shape in s["boundary_shapes"])
    return {
        "rows": rows,
        "bytes_per_row": sum(parts.values()) / rows,
        "bytes_per_row_by_part": {k: v / rows for k, v in parts.items()},
        "boundary_elements_per_row": elements,
        "boundary_bytes_per_element": s["boundary_bytes_per_element"],
    }


@torch.no_grad()
def at_224(bench: Bench, teacher: str, data: DataConfig) -> str:
    """The teacher (trained at 32 px) with its BatchNorm statistics measured again on 64 views at 224 px, saved
    beside it: run at 224 px with its 32-px statistics, its last stage's outputs overflow float16."""
    path = Path(teacher).with_suffix(".bn224.pt")
    if path.is_file():
        return str(path)
    model, meta = load_model(teacher)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the cumulative average over the batches below
    model.train()
    images = bench.images
    for start in range(0, 64, 16):
        r = np.arange(start, start + 16) % len(images)
        model(to_unit_float(make_views(images, data, 0, r, np.zeros_like(r))))
    save_model(model.eval(), path, **{**meta, "note": "BatchNorm statistics from 64 views at 224 px"})
    return str(path)


def projected_tb(bytes_per_row: float) -> float:
    return bytes_per_row * IMAGENET_TRAIN_IMAGES * VIEWS / TB


def bench_scale(bench: Bench) -> None:
    """storage_at_scale: one small 224-px cache of ResNet-50 boundaries under each of STORES; bytes per row, and
    the projection to ImageNet-1k x 10 views."""
    label = "torchvision resnet50"
    spec, overrides = MODEL_TEACHERS[label]
    data = dataclasses.replace(bench.data, transform="random-resized-crop", size=224)
    teacher = at_224(bench, model_teacher(bench, label, spec, overrides), data)  # the models stage's teacher
    images = bench.size["scale_images"]
    extract = dataclasses.replace(bench.cfg.extract, views=1, batch_size=32)
    rows: dict[str, Any] = {}
    for name, store in STORES.items():
        cfg = bench.cfg.replace(data=data, extract=extract, store=dataclasses.replace(bench.cfg.store, **store))
        out = bench.work / "scale.zarr"
        timed_extract(cfg, teacher, out, images)
        row = row_bytes(out)
        rmtree(out)
        row["store"] = dataclasses.asdict(cfg.store)
        row["projected_tb"] = projected_tb(row["bytes_per_row"])
        # upscaled CIFAR-10 views compress far better than photos; with the view counted uncompressed (an upper
        # bound: lossless codecs save little on photos), the projection a real data set would not exceed
        stored_input = row["bytes_per_row_by_part"]["input"]
        raw_input = RAW_INPUT_BYTES if stored_input else 0
        row["projected_tb_raw_input"] = projected_tb(row["bytes_per_row"] - stored_input + raw_input)
        rows[name] = row
        log(
            f"storage at scale, {name}: {row['bytes_per_row'] / 1e3:.0f} kB/row "
            f"({row['boundary_bytes_per_element']:.3f} B/boundary element) -> {row['projected_tb']:.2f} TB "
            f"({row['projected_tb_raw_input']:.2f} TB with views as stored photos would take)"
        )
    default = rows["default"]
    bench.results["storage_at_scale"] = {
        "value": default["projected_tb_raw_input"],
        "unit": "TB",
        "target": f"default <= {TARGET_BYTES_PER_ELEMENT} B/boundary element",
        "met": default["boundary_bytes_per_element"] <= TARGET_BYTES_PER_ELEMENT,
        "stores": rows,
        "teacher": f"{label}, {Path(teacher).name} (trained briefly at 32 px; BatchNorm statistics from 224 px)",
        "images": images,
        "projection": f"bytes per row x {IMAGENET_TRAIN_IMAGES:,} ImageNet-1k training images x {VIEWS} views",
        "note": "rows are CIFAR-10 images upscaled to 224 px by random-resized-crop, one view each; value: the "
        "default store's projection with each stored view counted at its raw 150,528 bytes (what photos take, "
        "near enough: lossless codecs save little on them); projected_tb counts the views as they compressed "
        "here (upscaled CIFAR-10 compresses far better than photos)",
    }
