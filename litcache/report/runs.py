"""What a run left on disk, found by walking its folder: training logs, model checkpoints, caches, results.

It reads what ``litcache run`` and ``quickstart`` write (``results.json``, ``students/<name>/sections/``, ...) and
what the separate commands write (a sections folder's ``metrics.jsonl``, ``<checkpoint>.metrics.jsonl`` beside a
teacher or student, a cache folder), so a report works on either, or on any one of those files given alone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litcache.errors import ReportError, UnsafeCheckpointError
from litcache.models.pickles import code_globals, holds_code_message

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
CHECKPOINT_SUFFIXES = (".pt", ".pth")
NOT_MODELS = ("section-s", "train-state")  # a section's weights, a resumable training state: not models
SKIPPED_FOLDERS = ("tensorboard",)
KINDS = ("teacher", "sections", "sections (online)", "kd", "kd-only", "scratch")  # the order of a run's stages


@dataclass
class TrainingLog:
    """One stage's epoch records (``metrics.jsonl``); a file that several ``--section K`` processes shared is
    split into one log per section."""

    path: Path
    label: str  # where it is, relative to the run: "students/resnet8/sections", "student.pt"
    kind: str  # "teacher", "sections", "kd" (the LIT student's KD pass), or a baseline: "kd-only", "scratch"
    records: list[dict[str, Any]]

    def epochs(self, key: str) -> tuple[list[int], list[float]]:
        """(run epoch, value) of every record that has ``key``."""
        rows = [
            (int(r.get("run_epoch", r.get("epoch", i))), float(r[key])) for i, r in enumerate(self.records) if key in r
        ]
        return [x for x, _ in rows], [y for _, y in rows]

    def fields(self) -> set[str]:
        return {k for r in self.records for k in r}

    def seconds(self) -> float:
        """Seconds its epochs took (the loop's own time, without set-up)."""
        return float(sum(r.get("seconds", 0.0) for r in self.records))


@dataclass
class Run:
    """Everything found under one path given to ``litcache report``."""

    label: str
    root: Path
    logs: list[TrainingLog] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)
    results: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def relative(self, path: str | Path) -> str:
        try:
            return str(
                Path(path)
                .resolve()
                .relative_to(self.root.resolve() if self.root.is_dir() else self.root.parent.resolve())
            )
        except ValueError:
            return str(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} line {i} is not JSON ({exc}): is it a litcache metrics file?") from exc
    return records


def _kind(records: list[dict[str, Any]]) -> str:
    mode = next((r["mode"] for r in records if "mode" in r), None)
    return {
        None: "teacher",
        "cached-lit": "sections",
        "online-lit": "sections (online)",
        "lit-kd": "kd",
        "kd": "kd-only",
        "scratch": "scratch",
    }.get(mode, str(mode))


def load_logs(path: Path, label: str) -> list[TrainingLog]:
    """The logs in one metrics file: one, or one per section when ``--section K`` processes shared it."""
    records = read_jsonl(path)
    kind = _kind(records)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(",".join(r.get("sections", [])), []).append(r)
    if len(groups) <= 1:
        return [TrainingLog(path, label, kind, records)]
    return [TrainingLog(path, f"{label} [{tag}]", kind, rs) for tag, rs in groups.items()]


def is_cache_folder(path: Path) -> bool:
    """A Zarr group whose attributes hold a litcache manifest (read from ``zarr.json``, without opening it)."""
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return "litcache" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, json.JSONDecodeError):
        return False


def _is_model_file(path: Path) -> bool:
    return (
        path.suffix in CHECKPOINT_SUFFIXES and not path.name.startswith(NOT_MODELS) and ".train-state" not in path.name
    )


def _metrics_label(run: Run, path: Path) -> str:
    rel = run.relative(path)
    if path.name == METRICS:
        return str(Path(rel).parent) if Path(rel).parent != Path(".") else path.parent.name
    return rel.removesuffix("." + METRICS)


def _add_file(run: Run, path: Path) -> None:
    if path.name == "results.json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "models" in data:
            run.results.append((path, data))
    elif path.name.endswith(METRICS):
        run.logs.extend(load_logs(path, _metrics_label(run, path)))
    elif _is_model_file(path):
        run.checkpoints.append(path)


def find_run(target: str, label: str | None = None) -> Run:
    """What lies at ``target``: a run folder (walked), a cache (a folder or fsspec URL), a metrics file, or a
    checkpoint (with its ``.metrics.jsonl`` beside it)."""
    path = Path(target)
    run = Run(label or path.name.removesuffix(".zarr") or target, path)
    if "://" in target or is_cache_folder(path):
        run.caches.append(target)
        return run
    if path.is_file():
        _add_file(run, path)
        beside = path.with_name(path.name + "." + METRICS)
        if _is_model_file(path) and beside.is_file():
            _add_file(run, beside)
        return run
    if not path.is_dir():
        raise ReportError(f"{target} does not exist: give a run folder, a cache, a metrics.jsonl or a checkpoint")
    for folder, dirs, files in os.walk(path):
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d.startswith(".") or d in SKIPPED_FOLDERS or d.endswith(".tensorboard"):
                continue
            if is_cache_folder(here / d):
                run.caches.append(str(here / d))
            elif not d.endswith(".zarr"):
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            _add_file(run, here / name)
    run.logs.sort(key=lambda lg: (KINDS.index(lg.kind) if lg.kind in KINDS else len(KINDS), lg.label))
    return run


def find_runs(targets: list[str]) -> list[Run]:
    """One :class:`Run` per target, labelled by its name (with its parent's when two names clash)."""
    labels = [Path(t).name.removesuffix(".zarr") or t for t in targets]
    runs = []
    for target, name in zip(targets, labels, strict=True):
        if labels.count(name) > 1:
            name = f"{Path(target).parent.name}/{name}"
        run = find_run(target, name)
        if not (run.logs or run.checkpoints or run.caches or run.results):
            names = code_globals(target) if Path(target).is_file() else []
            if names:  # whatever its name: the sentence every command says of such a file
                raise UnsafeCheckpointError(holds_code_message(target, names))
            raise ReportError(
                f"{target} holds nothing to report: no metrics.jsonl, model checkpoint, results.json or litcache cache"
            )
        runs.append(run)
        log.info("%s: %d logs, %d checkpoints, %d caches", target, len(run.logs), len(run.checkpoints), len(run.caches))
    return runs
