"""Crash safety, measured: stop each stage at random moments (SIGKILL, Ctrl-C, a full disk), continue it, compare
with a run that was never interrupted.

    python benchmarks/stress_resume.py   # SIGKILL: 24 extract, 6 train-sections, 6 kd; Ctrl-C, full disk: 6 a stage
    python benchmarks/stress_resume.py --trials 40 --seed 1
    python benchmarks/stress_resume.py --trials 4 --train-trials 2 --sigint-trials 4 --disk-trials 4 --limit 500

- ``extract``: killed at a uniformly random moment of an uninterrupted run's duration (the process start-up
  included), plus two trials that die inside the final manifest write (just before and just after the store
  call that writes it); then ``extract --resume`` (``--overwrite`` when the kill came before the arrays existed).
  The resumed cache must equal the uninterrupted one array for array (every array of the Zarr group, the
  progress record and statistics included) and in its manifest (the creation time aside).
- ``train-sections`` and ``kd``: killed at a random moment of a 3-epoch run, then ``--resume``; the section
  checkpoints and the student must equal the uninterrupted run's weight for weight. Everything runs on the CPU
  with the same seeds.
- Ctrl-C, for every stage (``train-teacher``, ``extract``, ``train-sections``, ``kd``): SIGINT at a random moment of
  an uninterrupted run's duration (a run that ends first is started again, the moment drawn from its own time, up
  to three tries). The message must be one line; the exact command it names is run as it stands, and the result
  must equal the uninterrupted run's.
- A full disk, for every stage: the stage writes to a tmpfs (mounted here; needs root) that a filler file leaves a
  random amount of room on, from nothing to the size of the stage's whole output. The message must be one line, no
  temporary file may be left; then the filler is removed, the command the message names is run, and the result
  must equal the uninterrupted run's.

Writes ``benchmarks/results/stress_resume.json``: per stage, the trials, how many ended identical, and each
trial's kill time and what it found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
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


def interrupted(cmd: list[str], after: float) -> tuple[int, str]:
    """Run ``cmd``, send it SIGINT (Ctrl-C) ``after`` seconds in; its exit code and stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
    return proc.returncode, err


def failed(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd`` to its end; its exit code and stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stderr


def message(stderr: str) -> tuple[bool, str]:
    """Whether a failed command said one line (after any notices), and that line."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    one = len(errors) == 1 and bool(lines) and lines[-1] == errors[0] and "Traceback" not in stderr
    return one, errors[-1] if errors else stderr.strip()[-300:]


def continued(line: str) -> list[str] | None:
    """The command line the message names (`litcache ...`) as arguments, or None."""
    found = re.findall(r"`(litcache [^`]+)`", line)
    return shlex.split(found[-1])[1:] if found else None


def size_of(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


class Disk:
    """A tmpfs at ``mount`` (mounted here: needs root) and a filler file that leaves a chosen room on it."""

    def __init__(self, mount: Path, megabytes: int) -> None:
        self.mount, self.filler = mount, mount / "filler"
        mount.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)], check=False)
        self.mounted = done.returncode == 0

    def fill(self, room: int) -> None:
        stat = os.statvfs(self.mount)
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - room))

    def clear(self) -> None:
        for p in self.mount.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount)], check=False)


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

    # -- Ctrl-C and a full disk, in every stage -------------------------------------------------------------------

    def references(self) -> None:
        """Uninterrupted runs of every stage (3 epochs each for the training ones), timed: what trials compare with."""
        ref, sets = self.work / "stage-reference", ["--set", "train.epochs=3", "--set", "kd.epochs=3", "-q"]
        self.ref, self.sets = ref, sets
        self.seconds = {"train-teacher": timed(self.stage_cmd("train-teacher", ref)), "extract": self.extract_seconds}
        for stage in ("train-sections", "kd"):
            self.seconds[stage] = timed(self.stage_cmd(stage, ref))
        self.sizes = {  # the most a stage writes: its outputs, and its training state (twice the weights)
            "train-teacher": 3 * size_of(ref / "teacher.pt") + size_of(*ref.glob("teacher.pt.*")),
            "extract": size_of(self.reference),
            "train-sections": size_of(ref / "sections"),
            "kd": 3 * size_of(ref / "student.pt") + size_of(*ref.glob("student.pt.*")),
        }

    def stage_cmd(self, stage: str, out: Path) -> list[str]:
        """``stage``'s command with its output under ``out`` (its inputs: the references)."""
        if stage == "train-teacher":
            return litcache(
                "train-teacher", *self.common, "-o", out / "teacher.pt", "--limit", self.limit, "--epochs", 3
            )
        if stage == "extract":
            return self.extract_cmd(out / "cache.zarr")
        cache = ["-p", "tiny", *self.sets, "-c", self.reference]
        if stage == "train-sections":
            return litcache("train-sections", *cache, "-o", out / "sections")
        return litcache("kd", *cache, "-s", self.ref / "sections", "-o", out / "student.pt")

    def stage_diff(self, stage: str, out: Path) -> list[str]:
        """How ``stage``'s result under ``out`` differs from the uninterrupted one."""
        try:
            if stage == "extract":
                return cache_diff(self.reference, out / "cache.zarr")
            if stage == "train-sections":
                files = [f"sections/section-s{k}.pt" for k in (1, 2, 3)]
                return [x for f in files for x in weights_diff(self.ref / f, out / f)]
            name = "teacher.pt" if stage == "train-teacher" else "student.pt"
            return weights_diff(self.ref / name, out / name)
        except Exception as exc:  # a result that is missing or does not load
            return [f"{type(exc).__name__}: {exc}"]

    def finish(self, line: str) -> str | None:
        """Run the command a message names, as it stands; None when it ends well, else why not."""
        args = continued(line)
        if args is None:
            return "the message names no command"
        code, err = failed(litcache(*args))
        return None if code == 0 else f"exit {code}: {message(err)[1]}"

    def sigint_trial(self, stage: str, i: int, tries: int = 3) -> dict[str, Any]:
        """Ctrl-C at a random moment, then the command the message names. A run that ends before the signal (a
        loaded machine's pace varies) is started again, its moment drawn from the time that run took, up to
        ``tries`` times; the last one counts, stopped or not."""
        out = self.work / f"sigint-{stage}-{i}"
        seconds = self.seconds[stage]  # the uninterrupted time, under load
        for attempt in range(1, tries + 1):
            after = self.rng.uniform(0.1, 0.8) * seconds
            started = time.perf_counter()
            code, err = interrupted(self.stage_cmd(stage, out), after)
            if code != 0 or attempt == tries:
                break
            seconds = time.perf_counter() - started  # it finished first: this run's own time, for the next draw
            shutil.rmtree(out, ignore_errors=True)
        one, line = message(err) if code else (True, "")
        # 130, or killed by SIGINT (-2, which a shell reports as 130 too) when Python itself marked the Ctrl-C
        # unhandled (it can, when it lands in C++ code that ran Python code), though litcache said its line
        problem = self.finish(line) if code in (130, -signal.SIGINT) else (None if code == 0 else f"exit {code}")
        diffs = self.stage_diff(stage, out) + ([problem] if problem else [])
        shutil.rmtree(out, ignore_errors=True)
        trial = {"stop_after_s": after, "attempt": attempt, "exit": code, "one_line": one, "message": line[:400]}
        return trial | {"identical": not diffs, "diffs": diffs}

    def disk_trial(self, stage: str, disk: Disk) -> dict[str, Any]:
        """A disk with ``room`` bytes free, then, once there is space, the command the message names."""
        disk.clear()
        out, room = disk.mount / "out", self.rng.randint(0, self.sizes[stage])
        disk.fill(room)
        code, err = failed(self.stage_cmd(stage, out))
        one, line = message(err) if code else (True, "")
        left = [str(p) for p in disk.mount.rglob("*") if p.name.endswith(".tmp")]
        disk.filler.unlink()
        problem = self.finish(line) if code else None
        diffs = self.stage_diff(stage, out) + ([problem] if problem else [])
        trial = {"room_bytes": room, "exit": code, "one_line": one, "message": line[:400], "tmp_left": left}
        return trial | {"identical": not diffs, "diffs": diffs}


STAGES = ("train-teacher", "extract", "train-sections", "kd")


def stress(
    work: Path,
    data: Path,
    limit: int,
    extract_trials: int,
    train_trials: int,
    seed: int,
    sigint_trials: int = 0,
    disk_trials: int = 0,
) -> dict[str, Any]:
    """Every trial; returns the summary the script writes."""
    s = Stress(work, data, limit, random.Random(seed))
    trials = [s.extract_trial(i) for i in range(extract_trials)]
    trials += [s.extract_trial(extract_trials + j, when) for j, when in enumerate(("before", "after"))]
    result: dict[str, Any] = {"extract": trials, **s.train_trials(train_trials)}
    settings: dict[str, Any] = {"data": str(data), "samples": limit, "seed": seed, "extract_seconds": s.extract_seconds}
    if sigint_trials or disk_trials:
        s.references()
        settings |= {"stage_seconds": s.seconds, "stage_bytes": s.sizes}
    for stage in STAGES if sigint_trials else ():
        result[f"sigint {stage}"] = [s.sigint_trial(stage, i) for i in range(sigint_trials)]
    if disk_trials:
        disk = Disk(work / "disk", megabytes=max(s.sizes.values()) // 2**20 + 16)
        try:
            if not disk.mounted:
                settings["disk"] = "not run: a tmpfs cannot be mounted here (needs root)"
            for stage in STAGES if disk.mounted else ():
                result[f"disk-full {stage}"] = [s.disk_trial(stage, disk) for _ in range(disk_trials)]
        finally:
            disk.close()
    summary = {stage: _summary(t) for stage, t in result.items()}
    return {"summary": summary, "trials": result, "settings": settings}


def _summary(trials: list[dict[str, Any]]) -> dict[str, int]:
    out = {"trials": len(trials), "identical": sum(t["identical"] for t in trials)}
    if trials and "one_line" in trials[0]:
        stopped = [t for t in trials if t["exit"] not in (0, None)]
        out |= {"stopped": len(stopped), "one_line": sum(t["one_line"] for t in stopped)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--limit", type=int, default=1000, help="training images (x 2 views = the cache's rows)")
    ap.add_argument("--trials", type=int, default=24, help="extraction trials killed at random moments")
    ap.add_argument("--train-trials", type=int, default=6, help="train-sections and kd trials each")
    ap.add_argument("--sigint-trials", type=int, default=6, help="Ctrl-C trials of each stage")
    ap.add_argument("--disk-trials", type=int, default=6, help="full-disk trials of each stage (a tmpfs: root)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=str(RESULTS / "stress_resume.json"))
    args = ap.parse_args()
    # A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored across exec: every
    # command a Ctrl-C trial started would then run to its end (and Python installs no KeyboardInterrupt). A
    # handler of this process's own is reset to the default in each command it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    out = stress(
        WORK,
        Path(args.data),
        args.limit,
        args.trials,
        args.train_trials,
        args.seed,
        args.sigint_trials,
        args.disk_trials,
    )
    out["settings"]["wall_seconds"] = time.perf_counter() - started
    Path(args.output).write_text(json.dumps(out, indent=2))
    for stage, s in out["summary"].items():
        said = f", {s['one_line']}/{s['stopped']} stopped ones said one line" if "stopped" in s else ""
        if s.get("stopped", s["trials"]) < s["trials"]:
            said += f"; {s['trials'] - s['stopped']} ran to their end first and tested nothing"
        print(f"{stage:<24} {s['identical']}/{s['trials']} identical to an uninterrupted run{said}")
    print(f"wall {out['settings']['wall_seconds']:.0f}s; wrote {args.output}")


if __name__ == "__main__":
    main()
