"""Issue 24, end to end: every command under a real SIGINT, every writing command on a real full disk (a tmpfs).

Each command runs in its own process. For Ctrl-C, a hook pauses it at a known point of its work and the test sends
SIGINT there: the message must be one line that says what was kept and the exact command that continues, and that
command must finish. For the full disk, a small tmpfs is filled (a filler file leaves a little room): the message
must be one line, no temporary file may be left, and once the filler is gone the command it names must finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import continue_command, error_line, run

pytestmark = pytest.mark.slow

# runs the command line with one function paused (PAUSE_AT = module:function:nth call) until SIGINT comes
PAUSED = """
import importlib, os, sys, time
module, name, nth = os.environ["PAUSE_AT"].split(":")
target = importlib.import_module(module)
real, calls = getattr(target, name), []
def paused(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(nth):
        open(os.environ["PAUSE_READY"], "w").close()
        time.sleep(300)
    return real(*args, **kwargs)
setattr(target, name, paused)
from litcache.cli.main import main
main(sys.argv[1:], prog_name="litcache")
"""
SMALL = ["stream.workers=0", "log.tensorboard=false", "teacher.epochs=2", "train.epochs=2", "kd.epochs=2"]
QUICK = ["teacher.model=resnet8", "teacher.batch_size=32", "extract.batch_size=32", "stream.batch_size=16"]
QUICK += ["data.num_classes=10", "train.student=resnet8"]


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture
def common(data_dir: Path, index_dir: Path) -> list[str]:
    return ["-d", str(data_dir), "-q", *_sets([*SMALL, f"data.index_dir={json.dumps(str(index_dir))}"])]


def commands(cache: Path, teacher: Path, out: Path) -> dict[str, tuple[list[str], str]]:
    """Each command, and where it is paused: the function (module:name:call) on its way."""
    trainer = "litcache.train.trainer:train_one_epoch"
    return {
        "train-teacher": (
            ["train-teacher", "-o", out / "t.pt", "--limit", "32"],
            "litcache.train.supervised:train_one_epoch:2",
        ),
        "extract": (["extract", "-t", teacher, "-o", out / "c.zarr"], "litcache.extract.run:teacher_rows:2"),
        "train-sections": (["train-sections", "-c", cache, "-o", out / "s"], f"{trainer}:2"),
        "kd": (["kd", "-c", cache, "--from-scratch", "-o", out / "kd.pt"], f"{trainer}:2"),
        "run": (["run", "-t", teacher, "-o", out / "run", "--limit", "32"], f"{trainer}:1"),
        "quickstart": (["quickstart", "-o", out / "qs", "--samples", "100", *_sets(QUICK)], f"{trainer}:1"),
        "evaluate": (["evaluate", "-m", teacher], "litcache.train.supervised:evaluate:1"),
        "report": (["report", cache, "-o", out / "r"], "litcache.report:model_rows:1"),
        "inspect": (["inspect", cache], "litcache.cache.summary:summarize:1"),
        "verify": (["verify", cache], "litcache.cache.verify:verify_cache:1"),
    }


NOTHING_KEPT = ("evaluate", "inspect", "verify")
KEPT = {
    "train-teacher": "epochs 1-1 of 2 are saved in",
    "extract": "4 of 8 units are written and kept in",
    "train-sections": "epochs 1-1 of 2 are saved in",
    "kd": "epochs 1-1 of 2 are saved in",
    "run": "no epoch of 2 had finished",
    "quickstart": "no epoch of 2 had finished",
    "report": "before this run wrote anything",
}
SKIPPED = {
    "train-teacher": "resuming train-teacher: epochs 1-1 of 2",
    "extract": "4 of 8 units are already written (skipped)",
    "train-sections": "resuming train-sections: epochs 1-1 of 2",
    "kd": "resuming kd: epochs 1-1 of 2",
    "run": "cache.zarr: all 4 units are already written (skipped)",
    "quickstart": "teacher.pt is already trained (skipped)",
}


@pytest.mark.parametrize("name", list(commands(Path(), Path(), Path())))
def test_ctrl_c_in_every_command_is_one_line_and_the_command_it_names_continues(
    name: str, cache_path: Path, teacher_path: Path, common: list[str], tmp_path: Path
) -> None:
    args, pause = commands(cache_path, teacher_path, tmp_path / "out")[name]
    ready = tmp_path / "paused"
    env = {**os.environ, "PAUSE_AT": pause, "PAUSE_READY": str(ready), "COLUMNS": "400"}
    cmd = [sys.executable, "-c", PAUSED, *map(str, args), *(common if name != "inspect" else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode in (130, -signal.SIGINT), stderr  # -2: what a shell reports as 130 as well
    lines = stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("Error:")]) == 1 and lines[-1].startswith("Error: "), stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    line = lines[-1]
    assert line.startswith("Error: interrupted (Ctrl-C)")
    assert not list((tmp_path / "out").rglob("*.tmp")) if (tmp_path / "out").exists() else True
    if name in NOTHING_KEPT:
        assert "nothing was written: run it again with `litcache" in line
        return
    assert KEPT[name] in line, line
    result = run(*continue_command(line))
    assert result.exit_code == 0, result.output
    if name in SKIPPED:
        assert SKIPPED[name] in result.output, result.output


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs: a disk that a filler file can fill (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): the patched-writer tests cover it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, room: int) -> Path:
    """A filler file that leaves ``room`` bytes free on ``disk``."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - room))
    return filler


# bytes left free for each command: enough to start, too few to finish
ROOM = {
    "train-teacher": 400_000,
    "extract": 1_500_000,
    "train-sections": 400_000,
    "kd": 400_000,
    "run": 1_200_000,
    "quickstart": 1_200_000,
    "report": 20_000,
}


@pytest.mark.parametrize("name", list(ROOM))
def test_a_full_disk_in_every_writing_command_is_one_line_and_the_command_it_names_finishes(
    name: str, cache_path: Path, teacher_path: Path, common: list[str], disk: Path
) -> None:
    args = commands(cache_path, teacher_path, disk / "out")[name][0]
    filler = _fill(disk, ROOM[name])
    line = error_line(run(*args, *common))
    assert "no space left on device" in line, line
    assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]  # nothing half written
    filler.unlink()
    result = run(*continue_command(line))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", list(ROOM))
def test_a_read_only_disk_is_refused_before_any_work_in_every_writing_command(
    name: str, cache_path: Path, teacher_path: Path, common: list[str], disk: Path
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    args = commands(cache_path, teacher_path, disk / "out")[name][0]
    line = error_line(run(*args, *common))
    assert f"cannot write {disk / 'out'}" in line and f"{disk} is not writable; choose another output path" in line
