"""One train-sections epoch in a fresh subprocess, reporting its time and peak memory (the lit stage's probe).

``run_probe`` starts ``benchmarks/run.py --probe-train CACHE OUT``, whose body is :func:`probe_train`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import PADDED, STUDENT, rmtree

from litcache.config import ModelConfig, PipelineConfig, TeacherConfig, TrainConfig
from litcache.train.trainer import train_sections

RUN_SCRIPT = Path(__file__).resolve().with_name("run.py")


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image. ru_maxrss would do, except that Linux carries it across exec, so a
    subprocess of a big benchmark process would report its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe_train(cache: str, out: str, teacher: str | None, device: str) -> None:
    """Subprocess body of teacher_free_memory: one train-sections epoch; peak memory as one JSON line.

    The main process's peak is exact (VmHWM); the whole tree (main + DataLoader workers) is sampled every
    100 ms as PSS, so pages the forked workers share with the main process are not counted twice.
    """
    import threading

    import psutil

    me = psutil.Process()
    peak = {"tree_pss_mb": 0.0, "workers_pss_mb": 0.0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                main = me.memory_full_info().pss
                workers = sum(p.memory_full_info().pss for p in me.children(recursive=True))
                peak["tree_pss_mb"] = max(peak["tree_pss_mb"], (main + workers) / 2**20)
                peak["workers_pss_mb"] = max(peak["workers_pss_mb"], workers / 2**20)
            except psutil.Error:  # a worker exiting between listing and reading
                pass
            stop.wait(0.1)

    # the padded teacher's factory is named here, so the online baseline may build it from its checkpoint
    cfg = PipelineConfig(
        teacher=TeacherConfig(model=PADDED), train=TrainConfig(student=ModelConfig(STUDENT), device=device)
    )
    before = _vm_hwm_mb()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.perf_counter()
    recs = train_sections(cfg, cache, out, epochs=1, teacher_path=teacher, show_progress=False)
    seconds = time.perf_counter() - started
    stop.set()
    poller.join()
    print(
        json.dumps(
            {
                "main_peak_rss_mb": _vm_hwm_mb(),
                "main_peak_rss_before_training_mb": before,
                **peak,
                "epoch_seconds": recs[0]["seconds"],
                "call_seconds": seconds,
            }
        )
    )


def run_probe(cache: Path, out: Path, teacher: Path | None, device: str) -> dict[str, Any]:
    """:func:`probe_train` in a fresh subprocess; its JSON line, parsed."""
    rmtree(out)
    cmd = [sys.executable, str(RUN_SCRIPT), "--probe-train", str(cache), str(out), "--probe-device", device]
    if teacher is not None:
        cmd += ["--probe-teacher", str(teacher)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"memory probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
