"""The performance goals, measured as ratios of things measured side by side in one run.

    python benchmarks/run.py --quick        # 2-5 minutes on a shared 2-core CPU -> benchmarks/results/latest-quick.json
    python benchmarks/run.py                # larger samples and more repeats (tens of minutes) -> results/latest.json

Every key of the JSON maps to ``{"value": ..., "target": ..., "met": ..., <the raw figures it came from>}``;
``machine`` and ``settings`` say where and how it ran. Speed figures may use teachers with random weights;
``bytes_per_element`` and ``codec_table`` use a teacher trained on real CIFAR-10, over real images. Timed pairs
run alternately (A B A B ...) and each figure is the median over its repeats. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_codecs import bench_codecs
from bench_data import bench_data
from bench_extract import bench_extract
from bench_lit import bench_lit
from bench_models import bench_models
from bench_scale import bench_scale
from bench_stream import bench_stream
from common import DATA, RESULTS, STUDENT, log, rmtree
from harness import Bench
from memory_probe import probe_train
from report import machine, print_table
from sizing import REFERENCE_SECONDS_PER_ROW

FULL = RESULTS / "latest.json"  # the full run's record
QUICK = RESULTS / "latest-quick.json"  # a --quick run's, so that a smoke run never replaces the full run's figures
STAGES: dict[str, Callable[[Bench], None]] = {  # in the order they run
    "extract": bench_extract,
    "codecs": bench_codecs,
    "stream": bench_stream,
    "lit": bench_lit,
    "models": bench_models,
    "scale": bench_scale,
    "data": bench_data,
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small samples, few repeats: about 3 minutes on 2 cores")
    ap.add_argument("--data", default=str(DATA), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--teacher", default=None, help="a ResNet-20 trained on CIFAR-10 (default: reuse or train one)")
    ap.add_argument("--only", nargs="+", choices=tuple(STAGES), default=list(STAGES), help="run only these stages")
    ap.add_argument(
        "--output",
        default=None,
        help=f"results JSON (default {FULL.relative_to(RESULTS.parents[1])}, or {QUICK.name} beside it with --quick)",
    )
    ap.add_argument(
        "--store",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a store setting for the extraction and stream stages, e.g. --store bitround_keepbits=0 (repeatable)",
    )
    ap.add_argument("--probe-train", nargs=2, metavar=("CACHE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--probe-teacher", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--probe-device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.output = output_path(args.quick, args.output)
    return args


def output_path(quick: bool, output: str | None) -> Path:
    """Where a run's results go: a --quick run never replaces the full run's file, which BENCHMARKS.md quotes."""
    if output is None:
        return QUICK if quick else FULL
    path = Path(output)
    if quick and path.resolve() == FULL.resolve():
        sys.exit(f"--quick does not write {FULL}: that is the full run's record; give another --output")
    return path


def settings(bench: Bench, args: argparse.Namespace, started: float) -> dict[str, Any]:
    """How the run was made: its mode and sizes, the machine's speed, the stages and the settings measured."""
    return {
        "mode": bench.mode,
        **bench.size,
        "speed_seconds_per_row": bench.t_row,
        "speed_note": "ResNet-20 inference forward at batch 128, measured at start-up; sizes follow from it "
        f"(about {REFERENCE_SECONDS_PER_ROW * 1e3:.0f} ms/row on an idle 2-core CPU)",
        "stages": args.only,
        "extract_batch_size": bench.cfg.extract.batch_size,
        "stream": bench.cfg.stream.__dict__,
        "store": bench.cfg.store.__dict__,
        "student": STUDENT,
        "data": str(args.data),
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    args = parse_args()
    if args.probe_train:
        probe_train(*args.probe_train, args.probe_teacher, args.probe_device)
        return
    if not Path(args.data).exists():
        sys.exit(f"no data at {args.data}: pass --data with CIFAR-10 WebDataset shards")

    started = time.perf_counter()
    bench = Bench(args)
    info = machine()
    log(
        f"{bench.mode} run on {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, {info['device']}; "
        f"ResNet-20 forward {bench.t_row * 1e3:.2f} ms/row (load average {info['loadavg_start'][0]:.1f}) -> "
        + ", ".join(f"{k}={v}" for k, v in bench.size.items())
    )
    for stage, run_stage in STAGES.items():
        if stage in args.only:
            run_stage(bench)
    info["loadavg_end"] = os.getloadavg()
    results = dict(bench.results)
    results["machine"] = info
    results["settings"] = settings(bench, args, started)
    print_table(results)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    rmtree(bench.work / "real.zarr")
    print(f"\nwall {results['settings']['wall_seconds']:.0f}s; wrote {out}")


if __name__ == "__main__":
    main()
