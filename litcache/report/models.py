"""The models of a run: which they are, how big, how accurate, how long they took, and where each number came from.

Sizes are always counted here, from the model's architecture (weights do not change them). Accuracy (or PSNR and
SSIM) comes from ``results.json`` when ``litcache run`` or ``quickstart`` wrote one, else from an evaluation the
report runs when given test data, else it is left out and the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from litcache.cache.reader import Cache
from litcache.errors import LitcacheError, UnsafeCheckpointError
from litcache.models import SectionedModel, build_model, describe
from litcache.models.checkpoint import fingerprint_state, load_model
from litcache.models.registry import check_trusted
from litcache.progress import progress_bar
from litcache.report.runs import METRICS, Run, read_jsonl
from litcache.report.sizes import measure

log = logging.getLogger(__name__)
SCORES = ("accuracy", "top5", "psnr", "ssim")  # what an evaluation reports, in table order
Evaluate = Callable[[str], dict[str, Any]]


@dataclass
class ModelRow:
    run: str
    name: str
    role: str  # "teacher", "student", or "model" (a checkpoint that could not be read)
    architecture: str = "?"
    checkpoint: str | None = None
    params: int | None = None
    params_outside_sections: int | None = None
    macs: int | None = None
    size_source: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    score_source: str = ""
    seconds: float | None = None
    seconds_source: str = ""
    compression: float | None = None  # the run's teacher's parameters / this model's
    mac_reduction: float | None = None  # the run's teacher's MACs / this model's
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _matches(recorded: str, found: Path, run: Run) -> bool:
    """Whether the checkpoint path a results.json recorded is the file found (the run may have moved since)."""
    if Path(recorded).exists() and Path(recorded).resolve() == found.resolve():
        return True
    tail = Path(run.relative(found)).parts
    return Path(recorded).parts[-len(tail) :] == tail


def _teacher_from_cache(cache: Cache, trusted: Collection[str]) -> SectionedModel:
    m = cache.manifest
    check_trusted(m["teacher"]["model"], trusted, f"the manifest of cache {cache.url}")
    return build_model(m["teacher"]["model"], m["teacher"]["num_classes"])


def _load(row: ModelRow, path: Path, trusted: Collection[str], named: bool) -> SectionedModel | None:
    """The model at ``path``; one found in a run that does not load is noted in its row, one the user ``named`` (or
    a file that holds code, anywhere) is refused, as every command refuses it."""
    try:
        model, meta = load_model(path, trusted)
    except UnsafeCheckpointError:
        raise
    except LitcacheError as exc:
        if named:
            raise
        row.notes.append(f"not loaded: {exc}")
        return None
    if row.role == "model":  # found on disk, not named by a results.json
        row.role = "student" if "mode" in meta else "teacher"  # `litcache kd` writes a mode; train-teacher does not
    return model


def _candidates(run: Run) -> list[tuple[ModelRow, dict[str, Any] | None, Path | None]]:
    """Every model of the run: the rows of its results.json, then checkpoints no results row names."""
    out: list[tuple[ModelRow, dict[str, Any] | None, Path | None]] = []
    claimed: set[Path] = set()
    for results_path, results in run.results:
        for rec in results["models"]:
            found = next((p for p in run.checkpoints if _matches(str(rec.get("checkpoint", "")), p, run)), None)
            path = found or (Path(rec["checkpoint"]) if rec.get("checkpoint") else None)
            if found is not None:
                claimed.add(found)
            role = "teacher" if rec["name"] == "teacher" else "student"
            row = ModelRow(run.label, rec["name"], role, checkpoint=str(path) if path else None)
            out.append((row, {**rec, "_results": str(results_path)}, path))
    for path in run.checkpoints:
        if path not in claimed:
            out.append((ModelRow(run.label, run.relative(path), "model", checkpoint=str(path)), None, path))
    return out


def _scores_from_results(row: ModelRow, rec: dict[str, Any]) -> None:
    row.scores = {k: float(rec[k]) for k in SCORES if k in rec}
    if row.scores:
        where = f" on {rec['data']}" if rec.get("data") else ""
        samples = f", {rec['test_samples']} test samples" if rec.get("test_samples") else ""
        row.score_source = f"{rec['_results']} (evaluated by litcache run{where}{samples})"
    if rec.get("seconds") is not None:
        row.seconds = float(rec["seconds"])
        row.seconds_source = f"{rec['_results']} (wall time of its training stages)"


def _seconds_from_log(row: ModelRow, path: Path) -> None:
    beside = path.with_name(path.name + "." + METRICS)
    if row.seconds is None and beside.is_file():
        records = read_jsonl(beside)
        row.seconds = float(sum(r.get("seconds", 0.0) for r in records))
        row.seconds_source = f"{beside} (sum of its epochs' seconds; earlier stages not included)"


def _row(
    row: ModelRow,
    rec: dict[str, Any] | None,
    path: Path | None,
    caches: Sequence[Cache],
    input_shape: Sequence[int],
    trusted: Collection[str],
    evaluate: Evaluate | None,
    named: bool = False,
) -> ModelRow:
    """One model's size, scores and seconds, each with its source (``named``: the checkpoint is a report target)."""
    fingerprints = {c.manifest["teacher"]["fingerprint"]: c for c in caches}
    model = _load(row, path, trusted, named) if path is not None and path.is_file() else None
    if model is None and row.role == "teacher" and caches:  # a teacher given as a plain state dict, or moved
        try:
            model = _teacher_from_cache(caches[0], trusted)
            row.notes.append(f"architecture from the manifest of {caches[0].url}")
        except LitcacheError as exc:
            row.notes.append(f"no architecture: {exc}")
    if model is not None:
        row.architecture = describe(model.spec)
        if row.role == "teacher" and path is not None and path.is_file():
            cache = fingerprints.get(fingerprint_state(model.state_dict()))
            if cache is not None:
                row.notes.append(f"the teacher of cache {cache.url} (same weights fingerprint)")
        size = measure(model, input_shape)
        row.params, row.params_outside_sections, row.macs = size.params, size.params_outside_sections, size.macs
        row.size_source = "counted by litcache report from the architecture"
    elif rec is not None and rec.get("params"):
        row.params, row.architecture = int(rec["params"]), str(rec.get("model", "?"))
        row.size_source = f"{rec['_results']} (parameters only)"
    if rec is not None:
        _scores_from_results(row, rec)
    if not row.scores and evaluate is not None and path is not None and path.is_file():
        try:
            result = evaluate(str(path))
        except LitcacheError as exc:
            row.notes.append(f"not evaluated: {exc}")
        else:
            row.scores = {k: float(result[k]) for k in SCORES if k in result}
            row.score_source = (
                f"evaluated by litcache report on {result.get('data', 'the test split')}, "
                f"{result.get('samples')} test samples"
            )
    if path is not None:
        _seconds_from_log(row, path)
    return row


def model_rows(
    run: Run,
    caches: Sequence[Cache],
    input_shape: Sequence[int],
    *,
    trusted: Collection[str] = (),
    evaluate: Evaluate | None = None,
    show_progress: bool = True,
) -> list[ModelRow]:
    """The run's models with sizes, scores and times; its caches' teacher when no checkpoint of it is in the run."""
    candidates = _candidates(run)
    with progress_bar(total=len(candidates), desc=f"models of {run.label}", unit="model", enabled=show_progress) as bar:
        rows = []
        for row, rec, path in candidates:
            rows.append(_row(row, rec, path, caches, input_shape, trusted, evaluate, named=path == run.root))
            bar.update(1)
    if caches and not any(r.role == "teacher" for r in rows):
        row = ModelRow(run.label, "teacher (from the cache)", "teacher")
        try:
            model = _teacher_from_cache(caches[0], trusted)
        except LitcacheError as exc:
            row.notes.append(f"no architecture: {exc}")
        else:
            row.architecture = describe(model.spec)
            size = measure(model, input_shape)
            row.params, row.params_outside_sections, row.macs = size.params, size.params_outside_sections, size.macs
            row.size_source = f"counted by litcache report from the architecture in the manifest of {caches[0].url}"
        rows.insert(0, row)
    return rows


def add_ratios(rows: list[ModelRow]) -> None:
    """Compression (parameters) and MAC reduction against the teacher of each row's run, else the first teacher."""
    teachers = [r for r in rows if r.role == "teacher" and r.params]
    for row in rows:
        teacher = next((t for t in teachers if t.run == row.run), teachers[0] if teachers else None)
        if teacher is None or teacher.params is None:
            continue
        if row.params:
            row.compression = teacher.params / row.params
        if row.macs and teacher.macs:
            row.mac_reduction = teacher.macs / row.macs
