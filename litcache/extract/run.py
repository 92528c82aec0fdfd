"""Stage one: run the teacher once over every (sample, view) and cache what it computes.

The device loop only computes: it builds the views of a batch of units, runs the teacher in inference mode
(one forward that returns every boundary), casts to the storage dtype and hands the arrays to a pool of
writer threads behind a bounded semaphore. Encoding and writing happen there, so the device does not wait on
the disk, and at most ``extract.queue_units`` units are ever in flight, so memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any

import numpy as np
import torch

from litcache.cache.codecs import row_crc32
from litcache.cache.layout import INPUT, INPUT_CRC
from litcache.cache.reader import filesystem, manifest_at
from litcache.cache.writer import CacheWriter, create_cache, open_writer, prepare_output
from litcache.config import PipelineConfig
from litcache.data import ImageSet, iter_views, load_images, split_classes
from litcache.device import resolve_device
from litcache.errors import CacheError, CompatibilityError
from litcache.extract.manifest import (
    array_specs,
    build_manifest,
    check_resumable,
    store_b0,
    teacher_parts,
    unit_specs,
)
from litcache.extract.on_device import check_outputs, encode_unit, teacher_rows
from litcache.models import Probe, SectionedModel, probe
from litcache.models.checkpoint import load_teacher
from litcache.outputs import check_parent, hint, say
from litcache.progress import progress_bar

log = logging.getLogger(__name__)
Encoded = tuple[dict[str, np.ndarray], np.ndarray]  # one unit's stored boundaries (and scales), their statistics


class _UnitWriter:
    """Writer threads behind a bounded semaphore; the first error stops the run.

    The compression ratio for the progress bar comes from a sample of units (the first few, then every 16th):
    a size look-up per unit would cost the writers more than it tells.
    """

    def __init__(self, cache: CacheWriter, threads: int, max_in_flight: int) -> None:
        self.cache = cache
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="litcache-writer")
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self.futures: list[Future[None]] = []
        self.lock = threading.Lock()
        self.raw_bytes = 0
        self.sampled_raw = 0
        self.sampled_stored = 0
        self.written = 0

    def _write(self, unit: int, arrays: dict[str, np.ndarray], encode: Callable[[], Encoded]) -> None:
        try:
            boundaries, stats = encode()
            arrays = {**arrays, **boundaries}
            self.cache.write_unit(unit, arrays, stats)
            raw = sum(a.nbytes for a in arrays.values())
            with self.lock:
                self.raw_bytes += raw
                self.written += 1
                sample = self.written <= 4 or self.written % 16 == 0
            if sample:
                stored = self.cache.stored_bytes_of_unit(unit)
                with self.lock:
                    self.sampled_raw += raw
                    self.sampled_stored += stored
        finally:
            self.slots.release()

    def ratio(self) -> float:
        with self.lock:
            return self.sampled_raw / max(self.sampled_stored, 1)

    def submit(self, unit: int, arrays: dict[str, np.ndarray], encode: Callable[[], Encoded]) -> None:
        """Write ``arrays`` and the boundaries ``encode()`` gives (with their statistics) as unit ``unit``."""
        self.raise_first_error()
        self.slots.acquire()
        self.futures.append(self.pool.submit(self._write, unit, arrays, encode))

    def raise_first_error(self) -> None:
        for f in self.futures:
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        self.futures = [f for f in self.futures if not f.done()]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.raise_first_error()


def teacher_memory_format(cfg: PipelineConfig) -> torch.memory_format:
    return torch.channels_last if cfg.extract.channels_last else torch.contiguous_format


def load_teacher_and_data(
    cfg: PipelineConfig, teacher_path: str, limit: int | None, device: torch.device
) -> tuple[SectionedModel, ImageSet, Probe]:
    """The teacher on ``device`` in the configured memory format, the training split it is checked against, and
    what a forward of the teacher on that data's input shape shows.

    The teacher is the pipeline's ``teacher.model``: a checkpoint that records another model (factory, kwargs or
    section paths) is refused, naming both."""
    d = cfg.data
    # the data is read once the checkpoint has been (a missing file fails first); the loader keeps decoded splits
    data_classes = lambda: split_classes(d, "train", limit)  # noqa: E731
    teacher = load_teacher(
        teacher_path, cfg.teacher.model, data_classes, d.mean, d.std, cfg.factories(), require_spec=True
    )
    images = load_images(d, "train", limit)
    teacher.to(device).to(memory_format=teacher_memory_format(cfg)).eval()
    shapes = probe(teacher, images.input_shape)
    if shapes.output_kind == "image":
        return teacher, images, shapes
    classes = shapes.output_shape[0]
    above = np.flatnonzero(images.labels >= classes)
    if len(above) or (cfg.data.num_classes and cfg.data.num_classes != classes):
        at = f" ({images.where(int(above[0]))} has label {images.labels[above[0]]})" if len(above) else ""
        raise CompatibilityError(
            f"teacher {teacher_path} has {classes} classes, data {images.identity} has {images.num_classes}{at}"
        )
    return teacher, dataclasses.replace(images, num_classes=classes), shapes  # a --limit subset may lack top labels


def open_output(
    cfg: PipelineConfig,
    teacher_path: str,
    out: str,
    limit: int | None,
    resume: bool,
    overwrite: bool,
    storage_options: Mapping[str, Any] | None,
    device: torch.device,
    compute_device: str | None = None,
) -> tuple[CacheWriter, SectionedModel, ImageSet]:
    """Create the cache at ``out`` (or reopen it to resume); the teacher and data loaded on the way.

    ``compute_device``: the type of device the units are computed on, when not ``device`` (dask's workers).
    """
    if "://" not in out:  # a local output whose folder cannot be made or written is refused before any work
        check_parent(out)
    if overwrite and not resume:  # only a litcache cache may be deleted, and only once the inputs have loaded
        _refuse_foreign(out, storage_options)
    resuming = False if overwrite else prepare_output(out, resume, overwrite, storage_options)
    teacher, images, shapes = load_teacher_and_data(cfg, teacher_path, limit, device)
    b0 = store_b0(cfg, shapes, images.input_shape)
    specs = array_specs(images.input_shape, shapes, b0, cfg.store)
    per_unit = unit_specs(shapes, b0, cfg.store)
    manifest = build_manifest(cfg, teacher, teacher_path, images, shapes, b0, compute_device or device.type)
    if overwrite:  # delete only once the teacher and the data have loaded: a typo must not cost a cache
        resuming = prepare_output(out, resume, overwrite, storage_options)
    if resuming:
        cache = open_writer(out, storage_options)
        check_resumable(
            cache, {**manifest, "arrays": {s.name: s for s in specs}, "unit_arrays": {s.name: s for s in per_unit}}
        )
    else:
        cache = create_cache(out, manifest, specs, cfg.store, teacher_parts(teacher), storage_options, per_unit)
    return cache, teacher, images


def _refuse_foreign(out: str, storage_options: Mapping[str, Any] | None) -> None:
    """Refuse, before any work, to ``--overwrite`` an output that is not a litcache cache."""
    fs, path = filesystem(out, storage_options)
    if fs.exists(path) and not (fs.isdir(path) and not fs.ls(path)) and manifest_at(out, storage_options) is None:
        raise CacheError(
            f"{out} exists and is not a litcache cache; litcache never overwrites it: choose another output path"
        )


def write_units(
    cache: CacheWriter,
    cfg: PipelineConfig,
    teacher: SectionedModel,
    images: ImageSet,
    device: torch.device,
    units: list[int],
    show_progress: bool,
) -> dict[str, Any]:
    """Compute and write ``units`` of ``cache``: views, teacher forward, hand-off to the writer threads."""
    memory_format = teacher_memory_format(cfg)
    dtype = torch.float16 if cfg.store.dtype == "float16" else torch.float32
    first = cache.stored_boundaries()[0]
    output_dtype = torch.float32 if cache.output_name == "logits" else dtype
    # quantised boundaries are quantised from the teacher's float32; float ones are cast and rounded as it computes
    bounds_dtype, keepbits = (torch.float32, 0) if cfg.store.bits else (dtype, cfg.store.bitround_keepbits)
    units_per_step = max(1, cfg.extract.batch_size // cache.rows_per_unit)
    writer = _UnitWriter(cache, cfg.extract.writers, cfg.extract.queue_units)
    rows_todo = sum(e - s for s, e in map(cache.unit_rows, units))
    started = time.perf_counter()

    def steps() -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:  # views are made a step ahead, in threads
        for i in range(0, len(units), units_per_step):
            ranges = [cache.unit_rows(u) for u in units[i : i + units_per_step]]
            rows = np.concatenate([np.arange(s, e) for s, e in ranges])
            samples, views = rows % len(images), rows // len(images)
            yield (units[i : i + units_per_step], ranges, samples, views), samples, views

    inputs = closing(iter_views(images, cfg.data, cfg.extract.seed, steps()))
    with progress_bar(total=rows_todo, desc="extract", unit="row", enabled=show_progress) as bar, inputs as made:
        try:
            for (step_units, ranges, samples, views), x in made:
                bounds, logits = teacher_rows(
                    teacher,
                    x,
                    cfg.extract.batch_size,
                    device,
                    bounds_dtype,
                    memory_format,
                    keepbits,
                    first,
                    output_dtype,
                )
                offset = 0
                for u, (s, e) in zip(step_units, ranges, strict=True):
                    sl = slice(offset, offset + e - s)
                    offset += e - s
                    where = f" (rows {s}..{e - 1}, unit {u})"
                    check_outputs(logits[sl], [b[sl] for b in bounds], first, where, cache.output_name)
                    arrays = {
                        "rows/sample": samples[sl].astype(np.int32),
                        "rows/view": views[sl].astype(np.int32),
                        "rows/label": images.labels[samples[sl]].astype(np.int32),
                        cache.output_name: logits[sl].cpu().numpy(),
                    }
                    if cache.input_stored:
                        arrays[INPUT] = x[sl].numpy()
                    else:
                        arrays[INPUT_CRC] = row_crc32(x[sl].numpy())
                    # on a GPU the boundaries are encoded (quantised) there, before the copy to the host; on the
                    # CPU, by the writer threads, beside the teacher's next step
                    encode = functools.partial(encode_unit, [b[sl] for b in bounds], first, where, cfg.store)
                    if device.type != "cpu":
                        encode = functools.partial(lambda done: done, encode())
                    writer.submit(u, arrays, encode)
                bar.update(len(samples))
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(MBps=f"{writer.raw_bytes / elapsed / 1e6:.1f}", ratio=f"{writer.ratio():.2f}")
        finally:
            writer.close()
    return {
        "units_written": len(units),
        "rows_written": rows_todo,
        "seconds": time.perf_counter() - started,
        "raw_bytes": writer.raw_bytes,
        "ratio": writer.ratio(),  # raw / stored over the sampled units
    }


def finish_run(cache: CacheWriter, out: str, written: dict[str, Any]) -> dict[str, Any]:
    """Finish the cache when every unit is written; the run's summary."""
    complete = bool(cache.done_units().all())
    if complete:
        cache.finish()
    return {
        "cache": out,
        "rows": cache.rows,
        "units_total": cache.num_units,
        "complete": complete,
        "stored_bytes": cache.stored_bytes(),
        **written,
    }


def extract(
    cfg: PipelineConfig,
    teacher_path: str,
    out: str,
    *,
    limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_units: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Extract a cache of ``cfg.extract.views`` views of the training split into ``out``.

    ``max_units`` stops after writing that many units (a time-boxed job; ``resume=True`` continues).
    Returns a summary: rows and units written, seconds, raw and stored bytes, and whether the cache is complete.
    """
    device = resolve_device(cfg.extract.device)
    try:
        cache, teacher, images = open_output(cfg, teacher_path, out, limit, resume, overwrite, storage_options, device)
    except KeyboardInterrupt as exc:
        note_creation(exc, out, storage_options)
        raise
    todo = [int(u) for u in np.flatnonzero(~cache.done_units())]
    say_skipped(out, cache.num_units - len(todo), cache.num_units)
    if max_units is not None:
        todo = todo[:max_units]
    log.info("%s: %d of %d units to write", out, len(todo), cache.num_units)
    try:
        written = write_units(cache, cfg, teacher, images, device, todo, show_progress)
    except KeyboardInterrupt as exc:  # the units in flight were finished by the writers: say what is kept
        exc.add_note(units_kept(cache, out))
        raise
    return finish_run(cache, out, written)


def note_creation(exc: KeyboardInterrupt, out: str, storage_options: Mapping[str, Any] | None) -> None:
    """Ctrl-C while the cache's arrays were being created: it holds no data, and --resume would refuse it."""
    try:
        creating = bool((manifest_at(out, storage_options) or {}).get("creating"))
    except Exception:  # whatever is there, the note is only a help
        creating = False
    if creating:
        exc.add_note(f"{out} was cut short while its arrays were being created and holds no data")
        exc.add_note(hint("extract", "--overwrite"))


def say_skipped(out: str, done: int, total: int) -> None:
    """Tell the user what a resumed extraction skips."""
    if done == total:
        say(f"resuming {out}: all {total} units are already written (skipped)")
    elif done:
        say(f"resuming {out}: {done} of {total} units are already written (skipped)")


def units_kept(cache: CacheWriter, out: str) -> str:
    """What an interrupted extraction keeps, for its message."""
    done = int(cache.done_units().sum())
    return f"{done} of {cache.num_units} units are written and kept in {out}"
