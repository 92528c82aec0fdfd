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

from litcache.cache.reader import open_cache
from litcache.cache.summary import summarize
from litcache.config import PipelineConfig, save_resolved
from litcache.extract.run import extract
from litcache.train.supervised import evaluate_checkpoint, train_teacher
from litcache.train.trainer import train_end_to_end, train_sections

log = logging.getLogger(__name__)
METRICS = ("accuracy", "top5", "psnr", "ssim")  # what evaluate_checkpoint may report, in table order

ARTIFACTS = {
    "config.yaml": "the resolved pipeline config of this run",
    "teacher.pt": "the teacher checkpoint (litcache format: architecture + weights, loads with weights_only)",
    "cache.zarr/": "the teacher cache: boundaries, logits, inputs, labels, teacher stem/head (Zarr v3)",
    "students/<name>/sections/": "sections trained from the cache (IR loss, + KD if train.beta > 0), metrics.jsonl",
    "students/<name>/student.pt": "the finished LIT student after the KD pass: a standalone checkpoint",
    "baselines/scratch-<name>.pt": "the same student trained from scratch on the labels (or ground truth), same budget",
    "results.json": "every model's accuracy (PSNR and SSIM for image models), parameters, compression, wall time",
    "*.tensorboard/, */tensorboard/": "TensorBoard event files of each training stage (when tensorboard is installed)",
}


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
        result = evaluate_checkpoint(path, cfg, test_limit, show_progress=show_progress)
        metrics = {k: result[k] for k in METRICS if k in result}
        rows.append(
            {"name": name, "model": result["model"], "checkpoint": path, **metrics, "params": result["params"]}
            | {"seconds": wall, "test_samples": result["samples"], "data": result["data"]}
        )

    evaluate_row("teacher", teacher_path, seconds)
    for i, spec in enumerate(cfg.students or (cfg.train.student,), start=1):
        label = spec.name or f"student{i}"
        base = out / "students" / label
        _, sec_s = _timed(
            train_sections,
            cfg,
            cache_url,
            base / "sections",
            student=spec,
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
        evaluate_row(f"lit-{label}", str(base / "student.pt"), sec_s + kd_s)
        if baselines:
            path = out / "baselines" / f"scratch-{label}.pt"
            budget = cfg.train.epochs + cfg.kd.epochs
            _, s = _timed(
                train_end_to_end,
                cfg,
                cache_url,
                path,
                student=spec,
                labels_only=True,
                epochs=budget,
                show_progress=show_progress,
            )
            evaluate_row(f"scratch-{label}", str(path), s)
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
        + "\n\nRe-evaluate any model: `litcache evaluate -m <checkpoint> -d <data>`. Plots and a summary: "
        + f"`litcache report {out} -o {out / 'report'}`.\n"
    )
    return results


def format_results(results: dict[str, Any]) -> str:
    """The results table as text."""
    metrics = [k for k in METRICS if any(k in r for r in results["models"])]
    head = "".join(f" {k:>9}" for k in metrics)
    lines = [f"{'model':<22} {'architecture':<16} {'params':>10} {'compression':>11}{head} {'train s':>8}"]
    for r in results["models"]:
        values = "".join(f" {r[k]:>9.4f}" if k in r else f" {'':>9}" for k in metrics)
        lines.append(
            f"{r['name']:<22} {r['model'][:16]:<16} {r['params']:>10,} {r['compression']:>10.2f}x{values} "
            f"{r['seconds']:>8.1f}"
        )
    c = results["cache"]
    lines.append(
        f"\ncache: {c['rows']} rows ({c['views']} views), {c['stored_bytes'] / 1e6:.1f} MB stored, "
        f"extracted in {c['extract_seconds']:.1f}s -> {c['url']}"
    )
    return "\n".join(lines)
