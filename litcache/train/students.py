"""Students built to fit a cache, and the section checkpoints ``train-sections`` writes and ``kd`` assembles.

A student copies every parameter and buffer outside its sections from the teacher (the cache holds them as
``teacher/frozen/<key>``) and freezes them, as LIT does; only its sections train. Its sections must be as many as
the teacher's, with the same boundary shapes, which :func:`build_student` checks and explains.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from litcache.cache.reader import Cache
from litcache.errors import CheckpointError, CompatibilityError, ConfigError
from litcache.models import SectionedModel, build_model, check_compatible, describe, probe, resolve_spec
from litcache.models.checkpoint import atomic_torch_save, read_weights_file
from litcache.models.registry import check_trusted
from litcache.outputs import read_marker

SECTION_FORMAT = "litcache-section"
SECTION_VERSION = 2


def frozen_state(cache: Cache) -> dict[str, torch.Tensor]:
    """The teacher's parameters and buffers outside its sections, as the cache holds them."""
    return {name: torch.from_numpy(value) for name, value in cache.frozen_arrays().items()}


def build_student(cache: Cache, spec: Any, *, copy_teacher_parts: bool = True, seed: int = 0) -> SectionedModel:
    """A student of the model ``spec`` names that fits the cache; with ``copy_teacher_parts`` (LIT), everything
    outside its sections is the teacher's, frozen. Baselines start from a fresh initialisation instead."""
    m = cache.manifest
    torch.manual_seed(seed)
    frozen = frozen_state(cache)  # read once: the normalisation and, below, the weights
    mean, std = frozen["normalize.mean"].flatten().tolist(), frozen["normalize.std"].flatten().tolist()
    try:
        student = build_model(spec, m["teacher"]["num_classes"], mean, std)
    except ConfigError as exc:
        raise CompatibilityError(str(exc)) from exc
    name, teacher = f"student {describe(student.spec)}", "the cached teacher"
    shapes = probe(student, m["data"]["input_shape"])
    check_compatible(
        cache.boundary_shapes(), shapes.boundary_shapes, teacher, name, m["teacher"]["sections"], student.section_paths
    )
    expected = (m["teacher"]["output"], list(m["teacher"]["output_shape"]))
    if (shapes.output_kind, list(shapes.output_shape)) != expected:
        raise CompatibilityError(
            f"{name} outputs {shapes.output_kind} of shape {list(shapes.output_shape)}, {teacher} {expected[0]} of "
            f"shape {expected[1]}"
        )
    if copy_teacher_parts:
        student.load_frozen(frozen, source=teacher)
    return student


def cache_identity(cache: Cache) -> dict[str, str]:
    m = cache.manifest
    return {"teacher": m["teacher"]["fingerprint"], "data": m["data"]["fingerprint"]}


def save_section(student: SectionedModel, k: int, path: Path, cache: Cache, **meta: Any) -> None:
    """Section ``k``'s weights, with the student's model spec and the identity of the cache it learned from."""
    atomic_torch_save(
        {
            "format": SECTION_FORMAT,
            "version": SECTION_VERSION,
            "model": student.spec,
            "section": k,
            "state_dict": {n: t.detach().cpu() for n, t in student.section_state(k).items()},
            "cache": cache_identity(cache),
            "meta": meta,
        },
        path,
    )


def section_file(sections_dir: Path, k: int) -> Path:
    return sections_dir / f"section-s{k}.pt"


def assemble_student(cache: Cache, sections_dir: str | Path, trusted: Collection[str] = ()) -> SectionedModel:
    """The student whose sections were trained into ``sections_dir`` (by one or several processes).

    ``trusted``: model factories outside litcache, torchvision and timm that the section files may name (the
    pipeline's own).
    """
    return assemble(cache, sections_dir, trusted)[0]


def assemble(cache: Cache, sections_dir: str | Path, trusted: Collection[str] = ()) -> tuple[SectionedModel, int]:
    """The assembled student, and the run epoch its sections' training reached (the latest of them)."""
    sections_dir = Path(sections_dir)
    if sections_dir.is_file():
        raise CheckpointError(
            f"{sections_dir} is a file, not a sections folder: give --student-sections the folder "
            "`litcache train-sections -o` wrote"
        )
    if not sections_dir.is_dir():
        raise CheckpointError(f"no sections folder {sections_dir}: run `litcache train-sections -o {sections_dir}`")
    paths = [section_file(sections_dir, k) for k in range(1, cache.num_sections + 1)]
    if not any(p.is_file() for p in paths) and (read_marker(sections_dir) or {}).get("command") != "train-sections":
        raise CheckpointError(
            f"{sections_dir} holds no section checkpoints (section-s1.pt, ...): give --student-sections the folder "
            "`litcache train-sections -o` wrote"
        )
    records = []
    for k, path in enumerate(paths, start=1):
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: train it with `litcache train-sections --section {k} -o {sections_dir}`"
            )
        rec = read_weights_file(path)  # a corrupt, foreign or code-holding file is refused in one line
        if not isinstance(rec, dict) or rec.get("format") != SECTION_FORMAT or rec.get("version") != SECTION_VERSION:
            raise CheckpointError(f"{path} is not a section checkpoint of this litcache version: train it again")
        if rec["cache"] != cache_identity(cache):
            raise CompatibilityError(f"{path} was trained from another cache (teacher or data differ)")
        records.append(rec)
    specs = {describe(r["model"]) for r in records}
    if len(specs) != 1:
        raise CompatibilityError(f"sections in {sections_dir} belong to different models: {sorted(specs)}")
    spec = resolve_spec(records[0]["model"])
    check_trusted(spec, trusted, f"section checkpoint {section_file(sections_dir, 1)}")
    student = build_student(cache, spec)
    for k, rec in enumerate(records, start=1):
        own = student.section_state(k)
        if set(own) != set(rec["state_dict"]):
            raise CompatibilityError(f"{section_file(sections_dir, k)} does not hold section {k} of {describe(spec)}")
        student.load_state_dict(rec["state_dict"], strict=False)
    meta = [r.get("meta", {}) for r in records]
    return student, max(int(m.get("next_epoch", m.get("epochs", 0))) for m in meta)
