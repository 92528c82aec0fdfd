"""How big each measurement of benchmarks/run.py is: the machine's speed at start-up, and the sizes that follow."""

from __future__ import annotations

import time

import torch
from common import median

from litcache.models import build_model

REFERENCE_SECONDS_PER_ROW = 1e-3  # a ResNet-20 inference forward on an idle 2-core x86 CPU, for the record


def plan(mode: str, t_row: float) -> dict[str, int]:
    """Sizes of this run. The machines are shared and their speed moves by 10x with the load, so each timed
    measurement is sized to take about a budgeted number of seconds at the speed measured at start-up
    (``t_row``: seconds per row of a ResNet-20 inference forward), within fixed bounds. Repeats are fixed."""
    quick = mode == "quick"
    k = 1.0 if quick else 5.0  # the full run's budgets

    def rows(seconds: float, per_row: float, step: int, lo: int, hi: int) -> int:
        return int(min(hi, max(lo, step * round(seconds / per_row / step))))

    views = 2 if quick else 4
    extract_rows = rows(3.0 * k, t_row, 512, 512, 4096 if quick else 16384)  # forward-only pass ~3 s
    return dict(
        views=views,
        images=extract_rows // views,  # x views = rows of each timed extraction, 256 rows a step
        extract_reps=3 if quick else 5,  # extract / forward-only pairs
        stream_rows=rows(3.0 * k, 0.3 * t_row, 1024, 2048, 8192 if quick else 16384),  # (tiled) cache epoch
        stream_reps=3 if quick else 5,
        lit_rows=rows(5.0 * k, 8 * t_row, 256, 256, 1024 if quick else 4096),  # online ResNet-110 epoch ~5 s
        lit_reps=2 if quick else 3,  # cached / online epoch pairs, each epoch in its own subprocess
        # epochs from each cache for teacher_free_memory: a peak RSS moves by +-30 MB from one epoch to the
        # next (how many prefetched batches sit in the main process at the peak), so more than for timing
        memory_reps=2 if quick else 5,
        consume_batches=rows(3.0 * k, 128 * 2.5 * t_row, 1, 3, 20 if quick else 50),  # after a warm-up step
        codec_reps=3 if quick else 5,
        test_images=rows(1.0 * k, t_row, 250, 250, 2000 if quick else 10000),  # the real teacher's accuracy
        # stream_vs_memory: whole extract() calls of >= 1,024 images (several seconds each), 5 pairs: a 5 % target
        # needs more than the load's noise allows with 3 pairs of short calls
        data_images=rows(6.0 * k, views * t_row, 256, 1024, 4096 if quick else 8192),
        data_reps=5,
        teacher_images=2000 if quick else 5000,  # a real teacher trained here when none is at hand
        teacher_epochs=1 if quick else 3,
        scale_images=16 if quick else 128,  # 224-px ResNet-50 rows a store setting (storage_at_scale)
    )


@torch.inference_mode()
def seconds_per_row(device: str) -> float:
    """The machine's speed now: seconds per row of a ResNet-20 inference forward at batch 128."""
    model = build_model("resnet20").to(device).eval()
    x = torch.rand(128, 3, 32, 32, device=device)
    model(x[:32])
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - started)
    return median(times) / len(x)
