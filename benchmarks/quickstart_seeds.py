"""The quickstart's configuration on several seeds: the spread that BENCHMARKS.md, "The quickstart", records.

First ``litcache quickstart`` itself, as a new user runs it (the shipped ResNet-56 teacher, a ResNet-20 student,
its default --samples), timed: its results.json and wall time go to ``results/quickstart-run.json``. Then the same
configuration through ``benchmarks/quality.py`` on ``--seeds`` (LIT = ``cached-lit``: IR sections, then the KD
pass, as the quickstart trains it; ``kd``: KD only; ``scratch``), on the same first --samples training images,
scored on the whole test set: ``results/quickstart.json`` and its ``.meta.json``. quality.py's ``runs.json`` in
the work folder resumes a run cut short, and a seed added later adds to it.

    python benchmarks/quickstart_seeds.py                       # the timed quickstart, then seeds 0 1 2
    python benchmarks/quickstart_seeds.py --seeds 0 --samples 500 --work /tmp/qs --results /tmp/qs   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from litcache.assets import QUICKSTART_TEACHER, asset_path
from litcache.cli.run import QUICKSTART_SAMPLES
from litcache.config import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def timed_quickstart(args: argparse.Namespace) -> None:
    """``litcache quickstart`` exactly as the README gives it, with --data and --samples; wall time and load."""
    out = Path(args.work) / "quickstart"
    cmd = ["litcache", "quickstart", "--data", args.data, "--samples", str(args.samples), "-o", str(out)]
    cmd += ["--overwrite", "-q"]
    print("$", " ".join(cmd), flush=True)
    load, started = os.getloadavg(), time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(done.stdout, flush=True)
    record = {
        "command": " ".join(cmd),
        "wall_seconds": wall,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "output": done.stdout,
        "results": json.loads((out / "results.json").read_text()),
    }
    path = Path(args.results) / "quickstart-run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"quickstart: {wall:.0f} s wall (load average {load[0]:.1f} at the start); wrote {path}", flush=True)


def seeds(args: argparse.Namespace) -> None:
    """The quickstart's students through quality.py, every seed."""
    cfg = load_pipeline("quickstart")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--pipeline", "quickstart"]
    cmd += ["--teacher", str(asset_path(QUICKSTART_TEACHER)), "--data", args.data, "--limit", str(args.samples)]
    cmd += ["--ir-epochs", str(cfg.train.epochs), "--kd-epochs", str(cfg.kd.epochs), "--views", str(cfg.extract.views)]
    cmd += ["--variants", "cached-lit", "kd", "scratch", "--seeds", *map(str, args.seeds)]
    cmd += ["--work", str(Path(args.work) / "seeds"), "--output", str(Path(args.results) / "quickstart.json")]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--samples", type=int, default=QUICKSTART_SAMPLES, help="the quickstart's --samples")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "quickstart"))
    ap.add_argument("--results", default=str(RESULTS), help="where quickstart.json and quickstart-run.json go")
    ap.add_argument("--skip-timed-run", action="store_true", help="only the seeds (the timed run is kept from before)")
    args = ap.parse_args()
    if not args.skip_timed_run:
        timed_quickstart(args)
    seeds(args)


if __name__ == "__main__":
    main()
