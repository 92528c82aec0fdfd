"""What stage one records: the cache's row arrays, the teacher's frozen parts, the manifest, and the check that a
resumed extraction continues the very cache it finds (``docs/cache-format.md``, invariant 8)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from litcache import __version__
from litcache.cache.layout import FROZEN, INPUT, INPUT_CRC, ArraySpec, boundary_name
from litcache.cache.quantize import PACKING, channel_axis, packed_row_bytes, quant_name
from litcache.cache.writer import CacheWriter
from litcache.config import PipelineConfig, StoreConfig
from litcache.data import ImageSet, transform_spec
from litcache.errors import CacheError
from litcache.models import Probe, SectionedModel
from litcache.models.checkpoint import fingerprint_state

# manifest entries that must agree for --resume to continue a cache
RESUME_KEYS = ("teacher", "data", "views", "seed", "transform", "store", "compute", "arrays", "unit_arrays", "rows")


def teacher_parts(model: SectionedModel) -> dict[str, np.ndarray]:
    """What a student copies from the teacher: every parameter and buffer outside the sections, as small arrays
    ``teacher/frozen/<state-dict key>``."""
    return {f"{FROZEN}/{k}": v.detach().cpu().contiguous().numpy() for k, v in model.frozen_state().items()}


def store_b0(cfg: PipelineConfig, shapes: Probe, input_shape: tuple[int, ...]) -> bool:
    """Whether to store b0 (``extract.b0``; ``auto``: when its row is smaller than the input's, uint8)."""
    if cfg.extract.b0 != "auto":
        return cfg.extract.b0 == "store"
    b0_bytes = int(np.prod(shapes.boundary_shapes[0])) * np.dtype(cfg.store.dtype).itemsize
    return b0_bytes < int(np.prod(input_shape))


def array_specs(input_shape: tuple[int, ...], shapes: Probe, b0: bool, store: StoreConfig) -> list[ArraySpec]:
    """The row arrays: rows, the input (its pixels, or their CRC-32), the stored boundaries (floats, or quantised
    codes as bit fields), the outputs."""
    specs = [
        ArraySpec("rows/sample", (), "int32"),
        ArraySpec("rows/view", (), "int32"),
        ArraySpec("rows/label", (), "int32"),
        ArraySpec(INPUT, input_shape, "uint8") if store.input == "pixels" else ArraySpec(INPUT_CRC, (), "uint32"),
    ]
    for k, shape in enumerate(shapes.boundary_shapes):
        if k == 0 and not b0:
            continue
        if store.bits:
            decoded = int(np.prod(shape)) * np.dtype(store.dtype).itemsize
            specs.append(ArraySpec(boundary_name(k), (packed_row_bytes(shape, store.bits),), "uint8", decoded))
        else:
            specs.append(ArraySpec(boundary_name(k), shape, store.dtype))
    if shapes.output_kind == "logits":
        specs.append(ArraySpec("logits", shapes.output_shape, "float32"))
    else:  # an image model's output, stored at the boundaries' precision
        specs.append(ArraySpec("output", shapes.output_shape, store.dtype))
    return specs


def unit_specs(shapes: Probe, b0: bool, store: StoreConfig) -> list[ArraySpec]:
    """The arrays with one row per unit: each quantised boundary's scales and zero points, (2, channels)."""
    if not store.bits:
        return []
    return [
        ArraySpec(quant_name(k), (2, shape[channel_axis(shape)]), "float32")
        for k, shape in enumerate(shapes.boundary_shapes)
        if k or b0
    ]


def quantization_entry(shapes: Probe, b0: bool, store: StoreConfig) -> dict[str, Any] | None:
    """The manifest's ``quantization``: how readers decode the boundaries (None for float boundaries)."""
    if not store.bits:
        return None
    stored = [k for k in range(len(shapes.boundary_shapes)) if k or b0]
    return {
        "bits": store.bits,
        "packing": PACKING,
        "decoded_dtype": store.dtype,
        "params": {boundary_name(k): quant_name(k) for k in stored},
        "channel_axis": {boundary_name(k): channel_axis(shapes.boundary_shapes[k]) for k in stored},
    }


def build_manifest(
    cfg: PipelineConfig,
    teacher: SectionedModel,
    teacher_path: str,
    images: ImageSet,
    shapes: Probe,
    b0: bool,
    device_type: str,
) -> dict[str, Any]:
    quantization = quantization_entry(shapes, b0, cfg.store)
    return {
        "litcache_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "teacher": {
            "model": teacher.spec,
            "checkpoint": str(teacher_path),
            "fingerprint": fingerprint_state(teacher.state_dict()),
            "num_classes": images.num_classes,
            "sections": list(teacher.section_paths),
            "boundary_shapes": [list(s) for s in shapes.boundary_shapes],
            "b0": "stored" if b0 else "recomputed",
            "output": shapes.output_kind,
            "output_shape": list(shapes.output_shape),
        },
        "data": images.describe(),
        "views": cfg.extract.views,
        "seed": cfg.extract.seed,
        "layout": "view-major: row r = (sample r % samples, view r // samples)",
        "rows": len(images) * cfg.extract.views,
        "transform": transform_spec(cfg.data),
        "store": cfg.to_dict()["store"],
        **({"quantization": quantization} if quantization else {}),
        # without pixels (store.input = crc32, or auto for large views) stage two regenerates each view from the data
        "input": "stored" if cfg.store.input == "pixels" else "regenerated from the data, checked by rows/input_crc",
        # how the numbers were computed: another device, memory format or batch size rounds differently, so a
        # resumed cache must keep them to equal an uninterrupted one bit for bit
        "compute": {
            "device": device_type,
            "channels_last": cfg.extract.channels_last,
            "batch_size": cfg.extract.batch_size,
        },
        "pipeline": cfg.to_dict(),
    }


def check_resumable(cache: CacheWriter, manifest: Mapping[str, Any]) -> None:
    diffs = []
    written_by = cache.manifest.get("litcache_version")
    if written_by != __version__:  # the same settings may compute other numbers
        diffs.append(f"litcache version: the cache was written by {written_by}, this is {__version__}")
    for key in RESUME_KEYS:
        old, new = cache.manifest.get(key), manifest.get(key)
        if key in ("teacher", "data"):
            old = {k: v for k, v in (old or {}).items() if k != "checkpoint"}
            new = {k: v for k, v in (new or {}).items() if k != "checkpoint"}
        if key in ("arrays", "unit_arrays"):
            new = {k: {"row_shape": list(v.row_shape), "dtype": v.dtype} for k, v in (new or {}).items()}  # type: ignore[union-attr]
            old = old or {}
        if old != new:
            diffs.append(f"{key}: cache has {old}, this run has {new}")
    if diffs:
        raise CacheError(
            f"cannot resume {cache.url}: it was extracted with different settings ({'; '.join(diffs)}); resume with "
            "the same settings, or pass --overwrite to start again"
        )
