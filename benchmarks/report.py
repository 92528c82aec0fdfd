"""What benchmarks/run.py records beside its keys (the machine and the library measured) and the table it prints."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import torch
import zarr
from common import ROOT

import litcache
from litcache.device import resolve_device

TABLE_KEYS = (
    "extract_overhead",
    "bytes_per_element",
    "stream_vs_raw",
    "stream_vs_consumption",
    "cached_vs_online_epoch",
    "students_cost_ratio",
    "teacher_free_memory",
    "stream_vs_memory",
    "storage_at_scale",
)


def git_state() -> dict[str, Any]:
    """The library version measured: HEAD and whether litcache/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "litcache"], cwd=ROOT, capture_output=True, text=True)
        return {"git_commit": head.strip() or None, "litcache_dirty": bool(dirty.stdout.strip())}
    except OSError:
        return {"git_commit": None, "litcache_dirty": None}


def machine() -> dict[str, Any]:
    """Where the run happens: the library version, CPUs and threads, platform, device, versions, load."""
    return {
        **git_state(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "device": str(resolve_device("auto")),
        "torch": torch.__version__,
        "zarr": zarr.__version__,
        "litcache": litcache.__version__,
        "loadavg_start": os.getloadavg(),
    }


def print_table(results: dict[str, Any]) -> None:
    """The targets, then the model_teachers and codec_table rows, of those keys ``results`` holds."""
    print(f"\n{'key':<24} {'value':>10}  {'target':<22} {'met':<5}")
    for key in TABLE_KEYS:
        if key in results:
            r = results[key]
            unit = {"teacher_free_memory": " MB", "storage_at_scale": " TB"}.get(key, "")
            print(f"{key:<24} {r['value']:>10.3f}{unit:<4}{r['target']:<22} {str(r['met']):<5}")
    if "model_teachers" in results:
        print(f"\n{'model_teachers':<44} {'extract/fwd':>11} {'B/elem':>7} {'fwd ms/row':>10}")
        for row in results["model_teachers"]["value"]:
            print(
                f"{row['teacher']:<44} {row['extract_overhead']:>11.3f} {row['bytes_per_element']:>7.3f} "
                f"{row['forward_ms_per_row']:>10.2f}"
            )
    if "codec_table" in results:
        print(f"\n{'codec_table (float16)':<50} {'B/elem':>7} {'write MB/s':>11} {'read MB/s':>10} {'rel max err':>12}")
        for row in results["codec_table"]["value"]:
            print(
                f"{row['codec']:<50} {row['bytes_per_element']:>7.3f} {row['write_MBps']:>11.0f} "
                f"{row['read_MBps']:>10.0f} {row['max_abs_error_rel_to_absmax']:>12.2e}"
            )
