"""The data stage: ``stream_vs_memory``, whole extract() calls from the shards, streamed against the in-memory
path, alternating (ABAB)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from common import log, median, result, rmtree, timed_extract, unmemoised_loading
from harness import Bench

from litcache.config import PipelineConfig
from litcache.data import build_index, find_files, forget_opened, load_images
from litcache.models import build_model


def time_calls(
    configs: dict[str, PipelineConfig], teacher: str, out: Path, n: int, reps: int
) -> dict[str, list[dict[str, Any]]]:
    """``reps`` whole extract() calls under each of ``configs`` (kind -> config), alternating, each opening and
    decoding its data as a user's run does; one summary per call."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in configs}
    with unmemoised_loading():
        for cfg in configs.values():  # warm-up: page cache, threads
            forget_opened()
            timed_extract(cfg, teacher, out, n, max_units=1)
        for r in range(reps):
            for kind, cfg in configs.items():
                forget_opened()  # the in-memory call decodes its images, as a user's run does
                runs[kind].append(timed_extract(cfg, teacher, out, n))
            log(
                f"data rep {r + 1}/{reps}: streamed {runs['streamed'][-1]['call_seconds']:.2f}s, "
                f"in memory {runs['in_memory'][-1]['call_seconds']:.2f}s"
            )
    return runs


def bench_data(bench: Bench) -> None:
    """stream_vs_memory: extract() from the shards, streamed ÷ the in-memory path, whole calls, ABAB."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10, bench.data.mean, bench.data.std)
    teacher = bench.calibrated(model, "teacher-resnet20-random.pt", "random weights; BN stats from 64 images")
    n, reps = bench.size["data_images"], bench.size["data_reps"]
    streamed = bench.cfg.replace(data=dataclasses.replace(bench.data, in_memory=False))
    started = time.perf_counter()
    index = build_index(find_files(streamed.data, "train"))  # the one-off pass, timed for the record
    index_seconds = time.perf_counter() - started
    load_images(streamed.data, "train")  # keeps the index in index_dir, as a first run would
    out = bench.work / "data.zarr"
    runs = time_calls({"streamed": streamed, "in_memory": bench.cfg}, teacher, out, n, reps)
    rmtree(out)
    forget_opened()
    call = {k: [x["call_seconds"] for x in v] for k, v in runs.items()}
    loop = {k: [x["seconds"] for x in v] for k, v in runs.items()}
    cpu = {k: [x["call_cpu_seconds"] for x in v] for k, v in runs.items()}
    bench.results["stream_vs_memory"] = result(
        "stream_vs_memory",
        median(call["streamed"]) / median(call["in_memory"]),
        call_seconds=call,
        loop_seconds=loop,
        loop_ratio=median(loop["streamed"]) / median(loop["in_memory"]),
        call_cpu_seconds=cpu,
        cpu_ratio=median(cpu["streamed"]) / median(cpu["in_memory"]),
        pairwise_ratios=[a / b for a, b in zip(call["streamed"], call["in_memory"], strict=True)],
        index_build_seconds=index_seconds,
        index_samples=len(index),
        images=n,
        views=bench.cfg.extract.views,
        rows=n * bench.cfg.extract.views,
        decoding_threads=bench.data.workers,
        teacher="resnet20 (random weights, BN statistics from 64 real images)",
        device=bench.device,
        note="whole extract() calls from the real CIFAR-10 shards, alternating: streamed (decodes each row's "
        "sample in its unit, data.workers threads ahead of the teacher) vs data.in_memory=true (decodes the "
        "n images into one array first, also with data.workers threads, then views from memory); the sample "
        "index is built once before (index_build_seconds: one pass over all 50,000 training images) and read "
        "from its sidecar by both; loop = extract's timed loop only (the in-memory decoding is outside it)",
    )
