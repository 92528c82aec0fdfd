"""Whole runs: a pipeline end to end (``litcache run``) and the newcomer's ``litcache quickstart``.

Each step is one library call the CLI also exposes; this module only orders them, times them, and collects
a results table. One cache serves every student the pipeline names.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from litcache.checkpoint import load_model
from litcache.config import PipelineConfig, save_resolved
from litcache.extract import extract
from litcache.store import open_cache
from litcache.summary import summarize
from litcache.supervised import evaluate_checkpoint, train_teacher
from litcache.train import train_end_to_end, train_sections

log = logging.getLogger(__name__)

ARTIFACTS = {
    "config.yaml": "the resolved pipeline config of this run",
    "teacher.pt": "the teacher checkpoint (litcache format: architecture + weights, loads with weights_only)",
    "cache.zarr/": "the teacher cache: boundaries, logits, inputs, labels, teacher stem/head (Zarr v3)",
    "students/<arch>/sections/": "sections trained from the cache (IR loss, + KD if train.beta > 0), metrics.jsonl",
    "students/<arch>/student.pt": "the finished LIT student after the KD pass: a standalone checkpoint",
    "baselines/scratch-<arch>.pt": "the same student trained from scratch on the labels, same budget",
    "results.json": "every model's accuracy, parameters, compression ratio and wall time",
}


def count_params(path: str | Path) -> int:
    model, _ = load_model(path)
    return sum(p.numel() for p in model.parameters())


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def run_pipeline(
    cfg: PipelineConfig,
    out_dir: str | Path,
    *,
    teacher: str | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    baselines: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Teacher (trained unless given) -> cache -> every student's sections -> KD pass -> evaluation.

    ``baselines`` adds each student trained from scratch with the same budget (sections + KD epochs).
    Returns (and writes to ``results.json``) one row per model plus the cache's size.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out / "config.yaml")
    rows: list[dict[str, Any]] = []
    teacher_path = teacher or str(out / "teacher.pt")
    seconds = 0.0
    if teacher is None and not Path(teacher_path).is_file():
        _, seconds = _timed(train_teacher, cfg, teacher_path, limit=limit, show_progress=show_progress)
    cache_url = str(out / "cache.zarr")
    resume = Path(cache_url).exists()
    _, extract_s = _timed(
        extract, cfg, teacher_path, cache_url, limit=limit, resume=resume, show_progress=show_progress
    )
    cache_summary = summarize(open_cache(cache_url))

    def evaluate_row(name: str, path: str, wall: float) -> None:
        acc = evaluate_checkpoint(path, cfg.data, test_limit, cfg.train.device)
        rows.append(
            {
                "name": name,
                "arch": acc["arch"],
                "checkpoint": path,
                "accuracy": acc["accuracy"],
                "params": count_params(path),
                "seconds": wall,
            }
        )

    evaluate_row("teacher", teacher_path, seconds)
    for arch in cfg.students or (cfg.train.student,):
        base = out / "students" / arch
        _, sec_s = _timed(
            train_sections,
            cfg,
            cache_url,
            base / "sections",
            student_arch=arch,
            resume=True,
            show_progress=show_progress,
        )
        _, kd_s = _timed(
            train_end_to_end,
            cfg,
            cache_url,
            base / "student.pt",
            sections_dir=base / "sections",
            show_progress=show_progress,
        )
        evaluate_row(f"lit-{arch}", str(base / "student.pt"), sec_s + kd_s)
        if baselines:
            path = out / "baselines" / f"scratch-{arch}.pt"
            budget = cfg.train.epochs + cfg.kd.epochs
            _, s = _timed(
                train_end_to_end,
                cfg,
                cache_url,
                path,
                student_arch=arch,
                labels_only=True,
                epochs=budget,
                show_progress=show_progress,
            )
            evaluate_row(f"scratch-{arch}", str(path), s)
    teacher_params = rows[0]["params"]
    for row in rows:
        row["compression"] = teacher_params / row["params"]
    results = {
        "pipeline": cfg.name,
        "models": rows,
        "cache": {
            "url": cache_url,
            "stored_bytes": cache_summary["stored_bytes"],
            "rows": cache_summary["rows"],
            "views": cache_summary["views"],
            "extract_seconds": extract_s,
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "README.md").write_text(
        f"# litcache run: pipeline `{cfg.name}`\n\n"
        + "\n".join(f"- `{name}`: {what}" for name, what in ARTIFACTS.items())
        + "\n\nRe-evaluate any model: `litcache evaluate -m <checkpoint> -d <data>`.\n"
    )
    return results


def format_results(results: dict[str, Any]) -> str:
    """The results table as text."""
    lines = [f"{'model':<22} {'arch':<10} {'params':>9} {'compression':>11} {'accuracy':>9} {'train s':>8}"]
    for r in results["models"]:
        lines.append(
            f"{r['name']:<22} {r['arch']:<10} {r['params']:>9,} {r['compression']:>10.2f}x "
            f"{r['accuracy']:>9.4f} {r['seconds']:>8.1f}"
        )
    c = results["cache"]
    lines.append(
        f"\ncache: {c['rows']} rows ({c['views']} views), {c['stored_bytes'] / 1e6:.1f} MB stored, "
        f"extracted in {c['extract_seconds']:.1f}s -> {c['url']}"
    )
    return "\n".join(lines)
