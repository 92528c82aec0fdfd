"""What the fault tests share: a disk that fills, a file that holds code, and checks that a failure is one line."""

from __future__ import annotations

import errno
import os
import pickle
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from litcache.cli.main import main

CODE_SENTENCE = "holds pickled Python code (loading it would import and run posix.system); litcache never loads code"


class DiskFull:
    """``os.write`` that fails with ENOSPC, as a full disk does, for files ``hit(path)`` picks: from the ``after``-th
    write to them on (0: the first). Every write litcache makes of its outputs goes through ``os.write``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hit: Callable[[str], bool], after: int = 0) -> None:
        self.hit, self.after, self.real, self.seen = hit, after, os.write, 0
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not self.hit(target):
            return self.real(fd, data)
        self.seen += 1
        if self.seen > self.after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(fd, data)


class _RunsCode:
    """A pickle that runs ``touch CANARY`` when loaded without weights_only."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.canary}",))


def code_checkpoint(path: Path, canary: Path, kind: str = "zip") -> Path:
    """A checkpoint whose loading would run ``os.system`` (and create ``canary``): torch's zip format, its legacy
    format (``legacy``), or a plain pickle (``pickle``)."""
    payload = {"format": "litcache-model", "state_dict": _RunsCode(canary)}
    if kind == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=kind == "zip")
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result, code: int = 1) -> str:
    """The one line a failed command printed (after any notices of what a resumed run skipped)."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # click's exit, not an escaped exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.output
    assert not any(line.startswith("Error: ") for line in lines[:-1]), result.output
    assert "<unicode string>" not in result.output and " object at 0x" not in result.output
    return lines[-1]


def continue_command(line: str) -> list[str]:
    """The exact command a message says continues (`litcache ...`), as arguments of ``main``."""
    found = re.findall(r"`(litcache [^`]+)`", line)
    assert found, line
    return shlex.split(found[-1])[1:]


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder): to check that nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}
