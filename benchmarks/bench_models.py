"""The models stage: ``model_teachers``, extract_overhead and bytes_per_element of a torchvision and a timm
teacher, beside the ResNet-20 row of the extract stage, each with its per-boundary figures (``per_boundary``:
bytes an element, relative RMS error, encode MB/s on one core; :mod:`boundary_report`)."""

from __future__ import annotations

from typing import Any

from boundary_report import ENCODE_NOTE, boundary_report
from common import WORK, cached_load_images, forward_only, log, median, rmtree, timed_extract
from harness import Bench

from litcache.cache.reader import open_cache
from litcache.cache.summary import summarize
from litcache.config import ModelConfig, TeacherConfig
from litcache.models.checkpoint import load_model
from litcache.train.supervised import train_teacher

# other kinds of teacher beside the ResNet-20 row, (spec, teacher.* overrides for a short training)
VIT = {"model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4}
MODEL_TEACHERS = {
    "torchvision resnet50": (ModelConfig(factory="torchvision.models:resnet50"), {}),
    "timm vit_tiny (12 blocks, 4 px patches)": (
        ModelConfig(factory="timm:create_model", kwargs=VIT, sections=("blocks.0:4", "blocks.4:8", "blocks.8:12")),
        {"lr": 0.01},  # SGD at the ResNets' 0.1 is not what a ViT trains with
    ),
}


def model_teacher(bench: Bench, label: str, spec: ModelConfig, teacher_overrides: dict[str, Any]) -> str:
    """A short-trained teacher of ``spec`` on real CIFAR-10 (kept under work/ for later runs)."""
    n, epochs = bench.size["teacher_images"], bench.size["teacher_epochs"]
    path = WORK / f"teacher-{label.split()[1]}-{epochs}ep-{n}.pt"
    if not path.is_file():
        log(f"training {label}: {epochs} epoch(s) on {n} CIFAR-10 images -> {path}")
        cfg = bench.cfg.replace(teacher=TeacherConfig(model=spec, **teacher_overrides))
        train_teacher(cfg, path, epochs=epochs, limit=n, resume=True, show_progress=False)  # an interrupted one goes on
    return str(path)


ERROR_ROWS = 256  # rows a teacher recomputes for the per-boundary error (whole units from the first)


def resnet20_row(bench: Bench) -> dict[str, Any]:
    """The extract stage's ResNet-20 row, from its extract_overhead and bytes_per_element, and the per-boundary
    figures of its cache."""
    eo, bpe = bench.results["extract_overhead"], bench.results["bytes_per_element"]
    teacher, _ = load_model(bench.real_teacher[0])
    per_boundary = boundary_report(open_cache(str(bench.real_cache)), teacher, rows=ERROR_ROWS)
    return {
        "teacher": "CIFAR resnet20 (the extract stage's row)",
        "extract_overhead": eo["value"],
        "bytes_per_element": bpe["value"],
        "rows": eo["rows"],
        "forward_ms_per_row": 1e3 * eo["median_forward_only_s"] / eo["rows"],
        "training": eo["teacher"],
        "per_boundary": per_boundary,
    }


def measure_teacher(bench: Bench, label: str, spec: ModelConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """One row: extract() vs its forward-only loop (ABAB, medians) and the stored bytes per boundary element."""
    n, reps = bench.size["images"] // 2, bench.size["extract_reps"]
    path = model_teacher(bench, label, spec, overrides)
    cfg = bench.cfg.replace(teacher=TeacherConfig(model=spec))
    out = bench.work / "model.zarr"
    timed_extract(cfg, path, out, n, max_units=1)  # warm-up
    cache = open_cache(str(out))
    rows, rows_per_unit = n * cfg.extract.views, cache.rows_per_unit
    teacher, meta = load_model(path)
    teacher.to(bench.device).eval()
    images = cached_load_images(bench.data, "train", n)
    ext, base = [], []
    for _ in range(reps):
        ext.append(timed_extract(cfg, path, out, n)["seconds"])
        base.append(forward_only(teacher, images, cfg, rows_per_unit, rows))
    cache = open_cache(str(out))
    s = summarize(cache)
    row = {
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
        "per_boundary": boundary_report(cache, teacher, rows=ERROR_ROWS),
    }
    log(
        f"{label}: extract/forward {row['extract_overhead']:.3f}, {row['bytes_per_element']:.3f} B/elem, "
        f"forward {row['forward_ms_per_row']:.1f} ms/row"
    )
    rmtree(out)
    return row


def bench_models(bench: Bench) -> None:
    """model_teachers: extract_overhead and bytes_per_element of a torchvision and a timm teacher, beside the
    ResNet-20 row of this run (the extract stage)."""
    rows_table = [resnet20_row(bench)] if "extract_overhead" in bench.results else []
    for label, (spec, overrides) in MODEL_TEACHERS.items():
        rows_table.append(measure_teacher(bench, label, spec, overrides))
    bench.results["model_teachers"] = {
        "value": rows_table,
        "target": "measured",
        "met": None,
        "note": "extract() vs its forward-only loop (ABAB, medians) and stored bytes per boundary element under "
        "the default store settings, real CIFAR-10 images at 32 px; the torchvision and timm teachers are "
        "trained briefly here (activation statistics, and so compressibility, depend on training); per_boundary: "
        + ENCODE_NOTE,
    }
