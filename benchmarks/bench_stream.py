"""The stream stage: ``stream_vs_raw`` (the cache stream against the same pipeline over uncompressed memmaps) and
``stream_vs_consumption`` (the cache stream against train-sections' step over batches already in memory)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import STUDENT, cpu_seconds, log, median, result, rmtree
from harness import Bench

from litcache.cache.layout import FROZEN, STATS, ArraySpec
from litcache.cache.reader import Cache, open_cache
from litcache.cache.summary import summarize
from litcache.cache.writer import create_cache
from litcache.config import StoreConfig, StreamConfig
from litcache.train.objective import LitObjective
from litcache.train.optim import build_optimizer
from litcache.train.stream import ROW, CacheStream
from litcache.train.students import build_student


def tile_cache(src: Cache, url: Path, rows: int, store: StoreConfig) -> Cache:
    """A one-view cache of ``rows`` rows whose chunks are copies of ``src``'s chunks (same bytes, same codecs).

    Real activations, more rows than the run extracted: each of its chunks holds exactly the rows of one chunk
    of ``src``, so it compresses and decodes exactly like ``src``.
    """
    rmtree(url)
    assert src.rows % src.rows_per_unit == 0 and src.rows_per_unit == src.rows_per_chunk
    data = {n: src.array(n)[:] for n in src.data_arrays()}
    per_unit = {n: src.array(n)[:] for n in src.unit_arrays()}  # a quantised boundary's scales
    manifest = {**src.manifest, "rows": rows, "views": 1, "data": {**src.manifest["data"], "samples": rows}}
    manifest["benchmark"] = f"rows tiled from {src.url} ({src.rows} rows)"
    specs = [ArraySpec(n, tuple(a["row_shape"]), a["dtype"]) for n, a in src.manifest["arrays"].items()]
    unit_specs = [ArraySpec(n, tuple(a["row_shape"]), a["dtype"]) for n, a in src.manifest["unit_arrays"].items()]
    small = {f"{FROZEN}/{name}": np.asarray(arr[...]) for name, arr in src.group[FROZEN].arrays()}  # type: ignore[union-attr]
    # the same rows per chunk as the source (its specs are as stored: packed codes when quantised)
    store = dataclasses.replace(store, chunk_mb=(src.rows_per_chunk + 0.5) * max(s.row_bytes for s in specs) / 2**20)
    writer = create_cache(str(url), manifest, specs, store, small, unit_specs=unit_specs)
    assert writer.rows_per_unit == src.rows_per_unit
    stats = np.asarray(src.array(STATS)[:])
    for u in range(writer.num_units):
        s, e = writer.unit_rows(u)
        idx = np.arange(s, e) % src.rows
        unit = u % src.num_units  # the source unit these rows are copies of
        arrays = {n: x[idx] for n, x in data.items()} | {n: x[unit] for n, x in per_unit.items()}
        writer.write_unit(u, arrays, stats[unit])
    writer.finish()
    return open_cache(str(url))


def read_memmaps(folder: Path, names: list[str]) -> Callable[..., Any]:
    """Stage: like stream.read_chunks, from uncompressed .npy memmaps (one copy per range, as zarr returns)."""
    opened: dict[int, dict[str, np.ndarray]] = {}

    def stage(src: Any) -> Any:
        pid = os.getpid()
        if pid not in opened:
            opened[pid] = {n: np.load(folder / (n.replace("/", "_") + ".npy"), mmap_mode="r") for n in names}
        arrays = opened[pid]
        for d in src:
            s, e = d["start"], d["stop"]
            out = {n: np.array(arrays[n][s:e]) for n in names}
            out[ROW] = np.arange(s, e, dtype=np.int64)
            yield out

    return stage


class MemmapStream(CacheStream):
    """CacheStream with the cache read swapped for memmaps: same ranges, split, shuffle, batching and loader."""

    def __init__(self, cache: Cache, arrays: list[str], cfg: StreamConfig, folder: Path) -> None:
        super().__init__(cache, arrays, cfg)
        self.folder = folder
        self.quantized = {}  # the memmaps hold values: nothing to dequantise after the shuffle

    def read_stage(self) -> Callable[..., Any]:
        return read_memmaps(self.folder, self.arrays)


def save_memmaps(cache: Cache, names: list[str], folder: Path) -> None:
    """The arrays ``names`` of ``cache``, decoded, as the .npy files MemmapStream reads."""
    rmtree(folder)
    folder.mkdir(parents=True)
    for n in names:
        np.save(folder / (n.replace("/", "_") + ".npy"), cache.read([n], 0, cache.rows)[n])


def main_cpu_seconds() -> float:
    """CPU time of this process alone (the DataLoader's main process: re-batching, dequantising)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def stream_rate(stream: CacheStream, epoch: int = 0) -> tuple[float, float, float]:
    """Samples per second over one whole epoch, loader start-up and shut-down included; CPU s per 1000 rows of
    all processes, and of the main process alone."""
    started, cpu, main = time.perf_counter(), cpu_seconds(), main_cpu_seconds()
    rows = sum(len(b[ROW]) for b in stream.epoch(epoch))
    seconds = time.perf_counter() - started
    return rows / seconds, (cpu_seconds() - cpu) * 1000 / rows, (main_cpu_seconds() - main) * 1000 / rows


def shipped_bytes_per_row(stream: CacheStream) -> int:
    """Bytes a row takes from the read stage through the shuffle and the DataLoader (codes and scales for a
    quantised boundary, values for raw)."""
    unit = stream.cache.rows_per_unit
    arrays = next(stream.read_stage()(iter([{"start": 0, "stop": unit}])))
    return sum(np.ascontiguousarray(x).nbytes for x in arrays.values()) // unit


def time_streams(
    cache: Cache, names: list[str], folder: Path, reps: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Samples/s, CPU s per 1000 rows (all processes) and main-process CPU s per 1000 rows of the cache and the
    memmap streams, alternating, with 2 then 0 workers; keyed ``cache_w2``, ``raw_w2``, ``cache_w0``, ``raw_w0``."""
    rates: dict[str, list[float]] = {k: [] for k in ("cache_w2", "raw_w2", "cache_w0", "raw_w0")}
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    main_cpu: dict[str, list[float]] = {k: [] for k in rates}
    for workers in (2, 0):
        cfg = StreamConfig(workers=workers)
        streams = {"cache": CacheStream(cache, names, cfg), "raw": MemmapStream(cache, names, cfg, folder)}
        if workers:
            stream_rate(streams["cache"]), stream_rate(streams["raw"])  # warm-up: page cache, first fork
        for _ in range(reps):
            for kind, stream in streams.items():
                rate, cpu_k, main_k = stream_rate(stream)
                rates[f"{kind}_w{workers}"].append(rate)
                cpu[f"{kind}_w{workers}"].append(cpu_k)
                main_cpu[f"{kind}_w{workers}"].append(main_k)
        log(
            f"stream, {workers} workers: cache {median(rates[f'cache_w{workers}']):.0f}/s, "
            f"raw memmap {median(rates[f'raw_w{workers}']):.0f}/s (CPU s per 1000 rows "
            f"{median(cpu[f'cache_w{workers}']):.2f} / {median(cpu[f'raw_w{workers}']):.2f}, of which the main "
            f"process {median(main_cpu[f'cache_w{workers}']):.2f} / {median(main_cpu[f'raw_w{workers}']):.2f})"
        )
    return rates, cpu, main_cpu


def time_consumption(bench: Bench, cache: Cache, student: Any, objective: LitObjective) -> list[float]:
    """Seconds of train-sections' step (LitObjective fwd+bwd+step, all sections) over in-memory batches; the
    first is a warm-up."""
    names = objective.required_arrays()
    batches = list(
        itertools.islice(CacheStream(cache, names, StreamConfig(workers=0)).epoch(0), bench.size["consume_batches"] + 1)
    )
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, bench.cfg.train)
    device = torch.device(bench.device)
    objective.to(device)
    student.set_train_mode()
    times = []
    for b in batches:
        t = time.perf_counter()
        parts = objective({k: v.to(device) for k, v in b.items()})
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        _ = {k: float(v.detach()) for k, v in parts.items()}  # train_one_epoch logs every part
        times.append(time.perf_counter() - t)
    return times


def bench_stream(bench: Bench) -> None:
    """stream_vs_raw and stream_vs_consumption."""
    src = open_cache(str(bench.real_cache))
    cache = tile_cache(src, bench.work / "stream.zarr", bench.size["stream_rows"], bench.cfg.store)
    student = build_student(cache, STUDENT, seed=0)
    tc = bench.cfg.train
    sections = list(range(1, cache.num_sections + 1))
    objective = LitObjective(
        student,
        sections,
        beta=0.0,
        temperature=tc.temperature,
        label_weight=tc.label_weight,
        soft_weight=tc.soft_weight,
    )
    names = objective.required_arrays()
    folder = bench.work / "memmaps"
    save_memmaps(cache, names, folder)
    rates, cpu, main_cpu = time_streams(cache, names, folder, bench.size["stream_reps"])
    shipped = {
        "cache": shipped_bytes_per_row(CacheStream(cache, names, StreamConfig())),
        "raw": shipped_bytes_per_row(MemmapStream(cache, names, StreamConfig(), folder)),
    }
    stream_cfg = StreamConfig()
    cache_rate = median(rates["cache_w2"])
    common = dict(
        rows_per_epoch=cache.samples,
        batch_size=stream_cfg.batch_size,
        shuffle_buffer=stream_cfg.shuffle_buffer,
        arrays=names,
        rows_per_chunk=cache.rows_per_chunk,
        cache_stored_bytes_per_row=summarize(cache)["stored_bytes"] / cache.rows,
        decoded_bytes_per_row=sum(x.nbytes for x in cache.read(names, 0, 1).values()),
        cache_note=f"{cache.rows} rows tiled from the real {src.rows}-row cache (chunk copies)",
    )
    bench.results["stream_vs_raw"] = result(
        "stream_vs_raw",
        cache_rate / median(rates["raw_w2"]),
        cache_samples_per_s=rates["cache_w2"],
        raw_samples_per_s=rates["raw_w2"],
        workers=2,
        in_process_ratio=median(rates["cache_w0"]) / median(rates["raw_w0"]),
        in_process_cache_samples_per_s=rates["cache_w0"],
        in_process_raw_samples_per_s=rates["raw_w0"],
        cpu_seconds_per_1000_rows={k: median(v) for k, v in cpu.items()},
        cpu_seconds_per_1000_rows_raw=cpu,
        main_process_cpu_seconds_per_1000_rows={k: median(v) for k, v in main_cpu.items()},
        shipped_bytes_per_row=shipped,
        note="whole epochs incl. loader start-up; raw = the same CacheStream pipeline and DataLoader with the "
        "read stage swapped for np.load(mmap_mode='r') of uncompressed .npy (page cache warm); in_process = "
        "workers=0; CPU includes the DataLoader workers; the cache's quantised boundaries cross the DataLoader "
        "as codes (shipped_bytes_per_row) and are dequantised in the main process",
        **common,
    )
    times = time_consumption(bench, cache, student, objective)
    step_s = median(times[1:])  # the first step is a warm-up
    consume_rate = stream_cfg.batch_size / step_s
    log(f"consumption: {consume_rate:.0f} samples/s ({STUDENT}, all sections); stream {cache_rate:.0f}/s")
    bench.results["stream_vs_consumption"] = result(
        "stream_vs_consumption",
        cache_rate / consume_rate,
        cache_samples_per_s=rates["cache_w2"],
        stream_workers=2,
        consume_samples_per_s=consume_rate,
        step_seconds=times[1:],
        warmup_step_seconds=times[0],
        student=STUDENT,
        sections=objective.sections,
        beta=0.0,
        device=bench.device,
        note="stream and consumer measured separately (on a 2-core CPU they would also share the cores)",
        **common,
    )
    rmtree(folder)
    rmtree(bench.work / "stream.zarr")
