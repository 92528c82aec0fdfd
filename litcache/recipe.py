"""Whole runs: a pipeline end to end (``litcache run``) and the newcomer's ``litcache quickstart``.

Each step is one library call the CLI also exposes; this module only orders them, times them, and collects
a results table. One cache serves every student the pipeline names.

A run folder follows the output policy (:mod:`litcache.outputs`): its marker records the run's settings, and the
same command run again with the same settings resumes it (a finished stage is skipped, an interrupted one
continues), while other settings are refused, naming what differs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from litcache.cache.reader import manifest_at, open_cache
from litcache.cache.summary import summarize
from litcache.config import PipelineConfig, save_resolved
from litcache.data import check_source, split_classes
from litcache.errors import LitcacheError, OutputError
from litcache.extract.run import extract
from litcache.models import build_model
from litcache.models.checkpoint import load_teacher
from litcache.outputs import claim_folder, say, write_text
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
    "baselines/kd-<name>.pt": "the same student trained by KD only, from the cached logits, same budget (quickstart)",
    "results.json": "every model's accuracy (PSNR and SSIM for image models), parameters, compression, wall time",
    "*.tensorboard/, */tensorboard/": "TensorBoard event files of each training stage (when tensorboard is installed)",
}


# what a run writes into its folder (what --overwrite replaces); a report made inside it is the report's own
RUN_OUTPUTS = ("config.yaml", "teacher.pt*", "cache.zarr", "students", "baselines", "results.json", "README.md")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _differences(was: dict[str, Any], now: dict[str, Any], names: dict[str, str]) -> list[str]:
    """Each setting that differs, as ``name old (now new)``."""
    a, b = _flat(was), _flat(now)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    label = lambda k: names.get(k, k.removeprefix("pipeline."))  # noqa: E731
    return [f"{label(k)} {a.get(k, '(unset)')} (now {b.get(k, '(unset)')})" for k in keys]


def _started(out: Path) -> bool:
    """Whether a run in ``out`` has written anything of its stages (more than its config)."""
    return any(p.name != "config.yaml" for pattern in RUN_OUTPUTS for p in out.glob(pattern))


def _check_inputs(cfg: PipelineConfig, teacher: str | None, limit: int | None) -> None:
    """Refuse, before the run's folder is written, what would stop it later: data that is not there, a teacher
    that is missing, corrupt, holds code or is not the pipeline's ``teacher.model`` (as ``extract`` refuses it)."""
    d = cfg.data
    check_source(d, "train")
    check_source(d, "test")
    if teacher is not None:
        data_classes = lambda: split_classes(d, "train", limit)  # noqa: E731
        load_teacher(teacher, cfg.teacher.model, data_classes, d.mean, d.std, cfg.factories(), require_spec=True)


def student_labels(cfg: PipelineConfig) -> list[tuple[str, Any]]:
    """(label, model spec) of every student the pipeline trains: its name, else ``student<i>``."""
    return [(spec.name or f"student{i}", spec) for i, spec in enumerate(cfg.students or (cfg.train.student,), start=1)]


def one_block_sections_note(cfg: PipelineConfig) -> str | None:
    """A note for students whose every section holds a single block, where LIT's IR stage was measured to teach
    little (README, "When LIT helps"); None when none does, or a student cannot be built here (its stage says why)."""
    names = []
    for label, spec in student_labels(cfg):
        try:
            student = build_model(spec, cfg.data.num_classes or 10, cfg.data.mean, cfg.data.std)
        except LitcacheError:
            continue
        if all(student.section_blocks(k) <= 1 for k in range(1, student.num_sections + 1)):
            names.append(label)
    if not names:
        return None
    return (
        f"note: every section of {', '.join(names)} holds a single block; there LIT's IR stage has little to teach "
        "(ResNet-20 -> ResNet-8: KD only led LIT by 7 points), while with three blocks a section LIT led KD "
        "(README.md, 'When LIT helps')"
    )


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
    overwrite: bool = False,
    command: str = "run",
    show_progress: bool = True,
    kd_baseline: bool = False,
) -> dict[str, Any]:
    """Teacher (trained unless given) -> cache -> every student's sections -> KD pass -> evaluation.

    ``baselines`` adds each student trained from scratch with the same budget (sections + KD epochs), and
    ``kd_baseline`` each student trained by KD only from the cached logits, with that budget too.
    Returns (and writes to ``results.json``) one row per model plus the cache's size. A folder that holds a run of
    ``command`` with the same settings is resumed; with other settings it is refused (``overwrite`` replaces it).
    """
    out = Path(out_dir)
    settings = {
        "pipeline": cfg.to_dict(),
        "teacher": str(Path(teacher).resolve()) if teacher else None,
        "limit": limit,
        "test_limit": test_limit,
        "baselines": baselines,
        **({"kd_baseline": True} if kd_baseline else {}),  # absent unless asked: earlier runs' settings still match
    }
    settings = json.loads(json.dumps(settings))  # as the marker keeps it (tuples are lists there)
    claim = claim_folder(out, command, RUN_OUTPUTS, resume=not overwrite, overwrite=overwrite)
    was = (claim.marker or {}).get("settings")
    if claim.resuming and not _started(out):  # stopped before any stage wrote a thing: nothing to continue
        claim.resuming = False
    elif claim.resuming and was != settings:
        names = {"limit": "--samples" if command == "quickstart" else "--limit", "test_limit": "--test-limit"}
        differs = _differences(was or {}, settings, names | {"teacher": "--teacher", "baselines": "--baselines"})
        raise OutputError(
            f"{out} holds a `litcache {command}` run with other settings: {'; '.join(differs[:4])}"
            f"{f' and {len(differs) - 4} more' if len(differs) > 4 else ''}; run it with the same settings to "
            "continue it, pass --overwrite to replace it, or choose another folder"
        )
    _check_inputs(cfg, teacher, limit)
    if command == "run" and (note := one_block_sections_note(cfg)):
        say(note)
    claim.settings = settings
    claim.take()
    if claim.resuming:
        say(f"resuming the {command} in {out}: finished stages are skipped, an interrupted one continues")
    previous = _previous_results(out) if claim.resuming else {}
    save_resolved(cfg, out / "config.yaml")
    rows: list[dict[str, Any]] = []
    teacher_path = teacher or str(out / "teacher.pt")
    seconds: float | None = 0.0 if teacher is not None else previous.get("teacher")
    if teacher is None and not Path(teacher_path).is_file():
        _, seconds = _timed(
            train_teacher, cfg, teacher_path, limit=limit, resume=claim.resuming, show_progress=show_progress
        )
    elif teacher is None:
        say(f"{teacher_path} is already trained (skipped)")
    cache_url = str(out / "cache.zarr")
    resume = Path(cache_url).exists()
    creating = resume and bool((manifest_at(cache_url) or {}).get("creating"))  # cut short: holds no data
    written, extract_s = _timed(
        extract,
        cfg,
        teacher_path,
        cache_url,
        limit=limit,
        resume=resume and not creating,
        overwrite=creating,
        show_progress=show_progress,
    )
    earlier = previous.get("extract")
    if not written["units_written"] and earlier is not None:
        extract_s = earlier  # nothing extracted this time: the time it took when it was
    cache_summary = summarize(open_cache(cache_url))

    def evaluate_row(name: str, path: str, wall: float | None) -> None:
        result = evaluate_checkpoint(path, cfg, test_limit, show_progress=show_progress)
        metrics = {k: result[k] for k in METRICS if k in result}
        rows.append(
            {"name": name, "model": result["model"], "checkpoint": path, **metrics, "params": result["params"]}
            | {"seconds": wall, "test_samples": result["samples"], "data": result["data"]}
        )

    evaluate_row("teacher", teacher_path, seconds)
    for label, spec in student_labels(cfg):
        base = out / "students" / label
        sec, sec_s = _timed(
            train_sections,
            cfg,
            cache_url,
            base / "sections",
            student=spec,
            resume=True,
            show_progress=show_progress,
        )
        kd, kd_s = _timed(
            train_end_to_end,
            cfg,
            cache_url,
            base / "student.pt",
            sections_dir=base / "sections",
            resume=True,
            show_progress=show_progress,
        )
        trained = sec or kd  # both empty: nothing was left to train, so the time is the one recorded before
        evaluate_row(
            f"lit-{label}", str(base / "student.pt"), sec_s + kd_s if trained else previous.get(f"lit-{label}")
        )
        budget = cfg.train.epochs + cfg.kd.epochs
        if kd_baseline:
            path = out / "baselines" / f"kd-{label}.pt"
            kd_only, s = _timed(
                train_end_to_end,
                cfg,
                cache_url,
                path,
                student=spec,
                epochs=budget,
                resume=True,
                show_progress=show_progress,
            )
            evaluate_row(f"kd-{label}", str(path), s if kd_only else previous.get(f"kd-{label}"))
        if baselines:
            path = out / "baselines" / f"scratch-{label}.pt"
            scratch, s = _timed(
                train_end_to_end,
                cfg,
                cache_url,
                path,
                student=spec,
                labels_only=True,
                epochs=budget,
                resume=True,
                show_progress=show_progress,
            )
            evaluate_row(f"scratch-{label}", str(path), s if scratch else previous.get(f"scratch-{label}"))
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
    write_text(out / "results.json", json.dumps(results, indent=2))
    write_text(
        out / "README.md",
        f"# litcache run: pipeline `{cfg.name}`\n\n"
        + "\n".join(f"- `{name}`: {what}" for name, what in ARTIFACTS.items())
        + "\n\nRe-evaluate any model: `litcache evaluate -m <checkpoint> -d <data>`. Plots and a summary: "
        + f"`litcache report {out} -o {out / 'report'}`.\n",
    )
    return results


def lit_verdict(results: dict[str, Any]) -> list[str]:
    """What a run with both baselines shows, one line a student: whether LIT leads KD only and scratch, in points
    of test accuracy, and where LIT's lead was measured when it does not lead here."""
    rows = {r["name"]: r for r in results["models"]}
    lines = []
    for name, lit in rows.items():
        label = name.removeprefix("lit-")
        kd, scratch = rows.get(f"kd-{label}"), rows.get(f"scratch-{label}")
        if name == label or kd is None or scratch is None or "accuracy" not in lit:
            continue
        a, k, s = (100 * r["accuracy"] for r in (lit, kd, scratch))
        scores = f"LIT {a:.2f} %, KD only {k:.2f} % ({a - k:+.2f} points), scratch {s:.2f} % ({a - s:+.2f})"
        if a > max(k, s):
            lines.append(
                f"{label}: LIT leads on this run: {scores}. One seed; the spread over seeds of this configuration "
                "is in BENCHMARKS.md, 'The quickstart'."
            )
        else:
            lines.append(
                f"{label}: at this budget LIT does not lead on this run: {scores}. Where it does (ResNet-56 -> "
                "ResNet-20, all 50,000 images): BENCHMARKS.md, 'ResNet-56 → ResNet-20'."
            )
    return lines


def _previous_results(out: Path) -> dict[str, float | None]:
    """Seconds per model (and ``extract``) from the results.json of an earlier pass of this run: a stage a resumed
    run finds finished keeps the time it took."""
    try:
        results = json.loads((out / "results.json").read_text())
        seconds = {str(r["name"]): r.get("seconds") for r in results["models"]}
        return seconds | {"extract": results["cache"].get("extract_seconds")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def format_results(results: dict[str, Any]) -> str:
    """The results table as text."""
    metrics = [k for k in METRICS if any(k in r for r in results["models"])]
    head = "".join(f" {k:>9}" for k in metrics)
    lines = [f"{'model':<22} {'architecture':<16} {'params':>10} {'compression':>11}{head} {'train s':>8}"]
    for r in results["models"]:
        values = "".join(f" {r[k]:>9.4f}" if k in r else f" {'':>9}" for k in metrics)
        wall = f"{r['seconds']:>8.1f}" if r.get("seconds") is not None else f"{'?':>8}"
        lines.append(
            f"{r['name']:<22} {r['model'][:16]:<16} {r['params']:>10,} {r['compression']:>10.2f}x{values} {wall}"
        )
    c = results["cache"]
    took = f"{c['extract_seconds']:.1f}s" if c.get("extract_seconds") is not None else "? s"
    lines.append(
        f"\ncache: {c['rows']} rows ({c['views']} views), {c['stored_bytes'] / 1e6:.1f} MB stored, "
        f"extracted in {took} -> {c['url']}"
    )
    return "\n".join(lines)
