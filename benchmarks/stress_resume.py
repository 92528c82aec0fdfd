"""Crash safety, measured: kill each stage at random moments with SIGKILL, resume it, compare with a run that was
never interrupted.

    python benchmarks/stress_resume.py                    # 24 extraction trials + 6 of train-sections + 6 of kd
    python benchmarks/stress_resume.py --trials 40 --seed 1

- ``extract``: killed at a uniformly random moment of an uninterrupted run's duration (the process start-up
  included), plus two trials that die inside the final manifest write (just before and just after the store
  call that writes it); then ``extract --resume`` (``--overwrite`` when the kill came before the arrays existed).
  The resumed cache must equal the uninterrupted one array for array (every array of the Zarr group, the
  progress record and statistics included) and in its manifest (the creation time aside).
- ``train-sections`` and ``kd``: killed at a random moment of a 3-epoch run, then ``--resume``; the section
  checkpoints and the student must equal the uninterrupted run's weight for weight. Everything runs on the CPU
  with the same seeds.

Writes ``benchmarks/results/stress_resume.json``: per stage, the trials, how many ended identical, and each
trial's kill time and what it found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "stress"

# dies inside the store call that writes the final manifest (the one that says "complete": true)
KILL_AT_FINAL_MANIFEST = """
import os, signal, sys
import zarr.storage
real = zarr.storage.LocalStore.set
async def set(store, key, value):
    final = key.endswith("zarr.json") and b'"complete": true' in value.to_bytes()
    if final and os.environ["LITCACHE_STRESS_WHEN"] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    await real(store, key, value)
    if final:
        os.kill(os.getpid(), signal.SIGKILL)
zarr.storage.LocalStore.set = set
from litcache.cli.main import main
main(sys.argv[1:])
"""


def litcache(*args: Any, code: str | None = None) -> list[str]:
    """The command line of ``litcache ARGS`` in a fresh interpreter (``code`` runs instead of the entry point)."""
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "litcache"]
    return [*head, *(str(a) for a in args)]


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")


def killed(cmd: list[str], after: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd``, SIGKILL it ``after`` seconds in; its exit code (negative: killed)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: node[...] for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def cache_diff(a: Path, b: Path) -> list[str]:
    """What differs between two caches: arrays (by name and content) and manifests (creation time aside)."""
    ma = {k: v for k, v in zarr.open_group(str(a), mode="r").attrs["litcache"].items() if k != "created"}
    mb = {k: v for k, v in zarr.open_group(str(b), mode="r").attrs["litcache"].items() if k != "created"}
    xa, xb = arrays(a), arrays(b)
    diffs = [f"array {k} only in one" for k in sorted(set(xa) ^ set(xb))]
    diffs += [f"array {k} differs" for k in sorted(set(xa) & set(xb)) if not np.array_equal(xa[k], xb[k])]
    diffs += [f"manifest {k} differs" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
    return diffs


def weights_diff(a: Path, b: Path) -> list[str]:
    sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    if sa.keys() != sb.keys():
        return [f"{a.name}: other parameter names"]
    return [f"{a.name}: {k} differs" for k in sa if not torch.equal(sa[k], sb[k])]


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    run(cmd)
    return time.perf_counter() - started


class Stress:
    def __init__(self, work: Path, data: Path, limit: int, rng: random.Random) -> None:
        self.work, self.data, self.limit, self.rng = work, data, limit, rng
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.common = ["-p", "tiny", "-d", data, "-q"]
        self.teacher = work / "teacher.pt"
        run(litcache("train-teacher", *self.common, "-o", self.teacher, "--limit", limit, "--epochs", 1))
        self.reference = work / "reference.zarr"
        self.extract_seconds = timed(self.extract_cmd(self.reference))

    def extract_cmd(self, out: Path, *extra: Any, code: str | None = None) -> list[str]:
        return litcache(
            "extract", *self.common, "-t", self.teacher, "-o", out, "--limit", self.limit, *extra, code=code
        )

    def finish_extract(self, out: Path) -> None:
        """Resume, or start again when the kill came before the arrays existed (resume says so)."""
        try:
            run(self.extract_cmd(out, "--resume"))
        except RuntimeError as exc:
            if "--overwrite" not in str(exc):
                raise
            run(self.extract_cmd(out, "--overwrite"))

    def extract_trial(self, i: int, when: str | None = None) -> dict[str, Any]:
        out = self.work / f"extract-{i}.zarr"
        if when is None:
            after = self.rng.uniform(0, self.extract_seconds)
            code = killed(self.extract_cmd(out), after)
        else:
            after = None
            code = killed(self.extract_cmd(out, code=KILL_AT_FINAL_MANIFEST), 600, {"LITCACHE_STRESS_WHEN": when})
        if out.exists():
            self.finish_extract(out)
        else:  # killed before it wrote anything
            run(self.extract_cmd(out))
        diffs = cache_diff(self.reference, out)
        shutil.rmtree(out)
        return {"kill_after_s": after, "kill": when or "random", "exit": code, "identical": not diffs, "diffs": diffs}

    def train_trials(self, trials: int) -> dict[str, list[dict[str, Any]]]:
        cache = self.reference
        sets = ["--set", "train.epochs=3", "--set", "kd.epochs=3", "--set", "train.device=cpu"]
        ref = self.work / "train-reference"
        sec_s = timed(litcache("train-sections", *sets, "-c", cache, "-o", ref / "sections", "-q"))
        kd_cmd = litcache("kd", *sets, "-c", cache, "-s", ref / "sections", "-o", ref / "student.pt", "-q")
        kd_s = timed(kd_cmd)
        out: dict[str, list[dict[str, Any]]] = {"train-sections": [], "kd": []}
        for i in range(trials):
            d = self.work / f"train-{i}"
            sections = litcache("train-sections", *sets, "-c", cache, "-o", d / "sections", "-q")
            after = self.rng.uniform(0.2 * sec_s, sec_s)  # past the imports: into the epochs
            code = killed(sections, after)
            run([*sections, "--resume"])
            diffs = [
                x
                for k in (1, 2, 3)
                for x in weights_diff(ref / "sections" / f"section-s{k}.pt", d / "sections" / f"section-s{k}.pt")
            ]
            out["train-sections"].append({"kill_after_s": after, "exit": code, "identical": not diffs, "diffs": diffs})
            kd = litcache("kd", *sets, "-c", cache, "-s", ref / "sections", "-o", d / "student.pt", "-q")
            after = self.rng.uniform(0.2 * kd_s, kd_s)
            code = killed(kd, after)
            run([*kd, "--resume"])
            diffs = weights_diff(ref / "student.pt", d / "student.pt")
            out["kd"].append({"kill_after_s": after, "exit": code, "identical": not diffs, "diffs": diffs})
            shutil.rmtree(d)
        return out


def stress(work: Path, data: Path, limit: int, extract_trials: int, train_trials: int, seed: int) -> dict[str, Any]:
    """Every trial; returns the summary the script writes."""
    s = Stress(work, data, limit, random.Random(seed))
    trials = [s.extract_trial(i) for i in range(extract_trials)]
    trials += [s.extract_trial(extract_trials + j, when) for j, when in enumerate(("before", "after"))]
    result: dict[str, Any] = {"extract": trials, **s.train_trials(train_trials)}
    summary = {stage: {"trials": len(t), "identical": sum(x["identical"] for x in t)} for stage, t in result.items()}
    return {
        "summary": summary,
        "trials": result,
        "settings": {"data": str(data), "samples": limit, "seed": seed, "extract_seconds": s.extract_seconds},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--limit", type=int, default=1000, help="training images (x 2 views = the cache's rows)")
    ap.add_argument("--trials", type=int, default=24, help="extraction trials killed at random moments")
    ap.add_argument("--train-trials", type=int, default=6, help="train-sections and kd trials each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=str(RESULTS / "stress_resume.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    out = stress(WORK, Path(args.data), args.limit, args.trials, args.train_trials, args.seed)
    out["settings"]["wall_seconds"] = time.perf_counter() - started
    Path(args.output).write_text(json.dumps(out, indent=2))
    for stage, s in out["summary"].items():
        print(f"{stage:<16} {s['identical']}/{s['trials']} identical to an uninterrupted run")
    print(f"wall {out['settings']['wall_seconds']:.0f}s; wrote {args.output}")


if __name__ == "__main__":
    main()
