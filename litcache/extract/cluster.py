"""Extraction on a dask.distributed cluster: one worker per GPU, each task a range of whole units.

The driver creates the cache (or reopens it to resume) exactly as ``extract`` does, then maps tasks over the
units still to write. Every task opens the cache itself, skips the units whose progress record says they are
written (so a retried or repeated task writes nothing twice) and writes the rest; units are whole chunks or
whole shards, so no two tasks ever touch one stored object. The driver marks the cache complete last.

Each worker loads the teacher and opens the data once (its sample index: the sidecar in ``data.index_dir``
when the workers share it, else built by the worker) and checks both against the manifest: a worker that sees
other data or another teacher refuses to write, instead of mixing two extractions in one cache. Workers
decode only the samples of their units.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from litcache.cache.writer import CacheWriter, open_writer
from litcache.config import PipelineConfig
from litcache.data import ImageSet
from litcache.device import resolve_device
from litcache.errors import CacheError, CompatibilityError
from litcache.extract.run import (
    finish_run,
    load_teacher_and_data,
    note_creation,
    open_output,
    say_skipped,
    units_kept,
    write_units,
)
from litcache.models import SectionedModel
from litcache.models.checkpoint import fingerprint_state
from litcache.progress import progress_bar

log = logging.getLogger(__name__)

# per worker process: (teacher path, limit, pipeline) -> the teacher, the data and their fingerprints
_LOADED: dict[tuple[str, int | None, str], tuple[SectionedModel, ImageSet, str, str]] = {}


def _device_type(name: str) -> str:
    """The type of device ``extract.device`` means on the worker that runs this."""
    return resolve_device(name).type


def extract_units(
    units: list[int],
    cfg_dict: dict[str, Any],
    teacher_path: str,
    out: str,
    limit: int | None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The task: write those of ``units`` that are not written yet; returns what it wrote."""
    cfg = PipelineConfig.from_dict(cfg_dict)
    device = resolve_device(cfg.extract.device)
    key = (teacher_path, limit, json.dumps(cfg_dict, sort_keys=True))
    cache = open_writer(out, storage_options)
    assert isinstance(cache, CacheWriter)
    if key not in _LOADED:
        teacher, images, _ = load_teacher_and_data(cfg, teacher_path, limit, device)
        _LOADED[key] = teacher, images, fingerprint_state(teacher.state_dict()), images.fingerprint()
    teacher, images, teacher_fp, data_fp = _LOADED[key]
    if teacher_fp != cache.manifest["teacher"]["fingerprint"]:
        raise CompatibilityError(
            f"a dask worker loaded teacher {teacher_path} with other weights than the cache {cache.url} was "
            "created with: give every worker the same checkpoint"
        )
    if data_fp != cache.manifest["data"]["fingerprint"]:
        raise CompatibilityError(
            f"a dask worker read other training data ({images.identity}) than the cache {cache.url} was created "
            "from: give every worker the same data.source"
        )
    if device.type != cache.manifest["compute"]["device"]:
        raise CompatibilityError(
            f"a dask worker computes on {device.type}, the cache {cache.url} on {cache.manifest['compute']['device']}: "
            "the numbers would differ between units; give every worker the same kind of device"
        )
    done = cache.done_units()
    todo = [u for u in units if not done[u]]
    written = write_units(cache, cfg, teacher, images, device, todo, show_progress=False)
    return {**written, "skipped": len(units) - len(todo), "device": str(device)}


def extract_on_dask(
    cfg: PipelineConfig,
    teacher_path: str,
    out: str,
    client: Any,
    *,
    limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    units_per_task: int = 16,
    retries: int = 2,
    storage_options: Mapping[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """``extract`` with the units spread over the workers of ``client`` (a ``distributed.Client``).

    The paths (teacher, data, ``out``) must mean the same to every worker: a shared file system or an
    object store. A task that fails is retried ``retries`` times; finished units are never rewritten.
    """
    import distributed

    if units_per_task < 1:
        raise CacheError(f"units_per_task must be >= 1, got {units_per_task}")
    # the driver only creates the cache: it needs the teacher's shapes and fingerprint, not a GPU; the manifest
    # records the workers' device type, which every task checks
    workers_device = client.submit(_device_type, cfg.extract.device, pure=False).result()
    try:
        cache, _, _ = open_output(
            cfg, teacher_path, out, limit, resume, overwrite, storage_options, resolve_device("cpu"), workers_device
        )
    except KeyboardInterrupt as exc:
        note_creation(exc, out, storage_options)
        raise
    todo = [int(u) for u in np.flatnonzero(~cache.done_units())]
    say_skipped(out, cache.num_units - len(todo), cache.num_units)
    tasks = [todo[i : i + units_per_task] for i in range(0, len(todo), units_per_task)]
    workers = len(client.scheduler_info().get("workers", {}))
    log.info("%s: %d units in %d tasks on %d dask workers", out, len(todo), len(tasks), workers)
    started = time.perf_counter()
    futures = client.map(
        extract_units,
        tasks,
        cfg_dict=cfg.to_dict(),
        teacher_path=teacher_path,
        out=out,
        limit=limit,
        storage_options=dict(storage_options) if storage_options else None,
        retries=retries,
        pure=False,
    )
    results = []
    rows = sum(e - s for s, e in map(cache.unit_rows, todo))
    with progress_bar(total=rows, desc=f"extract ({workers} workers)", unit="row", enabled=show_progress) as bar:
        try:
            for future in distributed.as_completed(futures):
                result = future.result()  # a task that failed after its retries stops the run
                results.append(result)
                bar.update(result["rows_written"])
        except BaseException as exc:
            client.cancel(futures)  # what is written stays written: --resume continues from there
            if isinstance(exc, KeyboardInterrupt):
                exc.add_note(units_kept(cache, out))
            raise
    written = {
        "units_written": sum(r["units_written"] for r in results),
        "rows_written": sum(r["rows_written"] for r in results),
        "seconds": time.perf_counter() - started,
        "raw_bytes": sum(r["raw_bytes"] for r in results),
        "ratio": float(np.mean([r["ratio"] for r in results if r["units_written"]] or [0.0])),
        "tasks": len(tasks),
        "workers": workers,
    }
    return finish_run(cache, out, written)
