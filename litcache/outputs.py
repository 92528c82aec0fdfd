"""The output policy of every litcache command that writes, in one place (``docs/reliability.md``, "Outputs").

1. **Refused before any work.** An output that exists and is not this command's own work is refused in one line
   that names it, before the command loads its inputs. litcache never writes into it, ``--overwrite`` or not.
2. **Own work is marked.** A folder is a command's own when it holds the marker that command wrote
   (``.litcache-output.json``, naming the command); a file when it says so itself (a litcache checkpoint records
   the command that wrote it); a cache by its manifest (:func:`litcache.cache.writer.prepare_output`). Existing own
   work is continued with ``--resume`` or replaced with ``--overwrite``, and refused without either.
3. **``--overwrite`` replaces only what the command makes**: the names it writes (``makes``), nothing else in the
   folder, and only once the command's inputs have loaded (a typo must not cost a result).
4. **Atomic files.** A file is written to a temporary sibling and renamed over its path; the sibling is removed on
   every exit path (an error, a full disk, Ctrl-C). A line appended to a log is undone if its write fails.
5. **One line.** A write that fails (no space left, no permission, a read-only file system) is an
   :class:`~litcache.errors.OutputError` naming the file, what was kept and how to continue.

Messages say how to continue as `` `litcache COMMAND ... --resume` ``; the command line replaces that with the
exact command. :func:`say` tells the user what a resumed run skipped (the command line prints it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litcache.errors import OutputError

MARKER = ".litcache-output.json"
MARKER_FORMAT = "litcache-output"
notices = logging.getLogger("litcache.notice")
_UMASK = os.umask(0o022)  # read once (os.umask sets it as it reads it: set it back at once)
os.umask(_UMASK)

_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large"}
_DENIED = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
_PATHS = {errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EISDIR: "it is a folder"}


def say(message: str) -> None:
    """Tell the user something about their outputs (what a resumed run skipped, what was kept)."""
    notices.info(message)


def hint(command: str, flag: str = "--resume") -> str:
    """How to continue, as messages write it (the command line puts the exact command in its place)."""
    return f"`litcache {command} ... {flag}`" if flag else f"`litcache {command} ...`"


def failure(path: str | Path, exc: OSError, kept: str = "", then: str = "") -> str:
    """One line for a write to ``path`` that failed with ``exc``: why, what was ``kept``, what to do ``then``."""
    where = exc.filename if isinstance(exc.filename, str) and exc.filename else str(path)
    sibling = re.fullmatch(r"\.(.+)\.[^./]+\.tmp", os.path.basename(where))
    if sibling:  # the temporary sibling of a file: name the file
        where = os.path.join(os.path.dirname(where), sibling.group(1))
    code = exc.errno or 0
    reason = _FULL.get(code) or _DENIED.get(code) or _PATHS.get(code) or exc.strerror or str(exc)
    if code in _FULL:
        todo = "free some space"
    elif code in _DENIED:
        todo = "make it writable or choose another output path"
    else:
        todo = "fix that"
    parts = [f"cannot write {where}: {reason}"]
    if kept:
        parts.append(kept)
    parts.append(f"{todo}, then {then}" if then else todo)
    return "; ".join(parts)


@contextlib.contextmanager
def writing(path: str | Path, kept: str | Callable[[], str] = "", then: str = "") -> Iterator[None]:
    """Turn an OS error while writing ``path`` into a one-line :class:`OutputError`; ``kept`` (or a function that
    says it when asked) and ``then`` go into the message."""
    try:
        yield
    except OSError as exc:
        raise OutputError(failure(path, exc, kept() if callable(kept) else kept, then)) from exc


@contextlib.contextmanager
def keeping(path: str | Path, kept: Callable[[], str], then: str) -> Iterator[None]:
    """Around a command's work: a write that fails is an :class:`OutputError` that says what was ``kept()`` and
    what to do ``then``; Ctrl-C carries what was kept as a note on the ``KeyboardInterrupt``, for the command line
    to say."""
    try:
        with writing(path, kept, then):
            yield
    except KeyboardInterrupt as exc:
        with contextlib.suppress(Exception):
            exc.add_note(kept())
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed onto ``path`` when the block ends without an error, and
    removed on every exit path (an error, Ctrl-C)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # as an ordinary file (mkstemp makes it private)
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]  # a short write, then the error (ENOSPC) on the next one


def write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (and durably: fsync before the rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path), atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OS error of a write to an open file (which names none) names ``path``, for the message."""
    try:
        yield
    except OSError as exc:
        if not exc.filename:
            exc.filename = str(path)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode())


def append_line(path: str | Path, line: str) -> None:
    """Append one line with one write (safe beside other processes appending); a write that fails (a full disk)
    leaves the file as it was."""
    with _naming(Path(path)):
        _append(path, (line.rstrip("\n") + "\n").encode())


def _append(path: str | Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def keep_lines(path: str | Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the JSON-lines file ``path`` (atomically) with only the records ``keep`` accepts; returns how many
    were dropped. A resumed stage drops the records of the epochs it trains again."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if _parses(line) and keep(json.loads(line))]
    if len(kept) != len(lines):
        write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False  # half a line a killed process left: dropped


# -- claims: what a command may do with the path it was given ---------------------------------------------------


@dataclass
class Claim:
    """A command's right to write ``path``, granted before its work starts; :meth:`take` makes the changes
    (creates the folder and its marker, removes what ``--overwrite`` replaces) once its inputs have loaded."""

    path: Path
    command: str
    folder: bool
    resuming: bool = False
    replaced: list[Path] = field(default_factory=list)  # removed by take(): own work that --overwrite replaces
    marker: dict[str, Any] | None = None  # a folder's marker as found (None: no marker yet)
    settings: dict[str, Any] | None = None  # recorded in the marker (a run's settings)

    def take(self) -> None:
        then = f"start again with {hint(self.command, '--overwrite' if self.replaced else '')}"
        with writing(self.path, then=then):
            (self.path if self.folder else self.path.parent).mkdir(parents=True, exist_ok=True)
            for p in self.replaced:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            if self.folder and (self.marker is None or self.settings is not None):
                record: dict[str, Any] = {"format": MARKER_FORMAT, "command": self.command, "created": _now()}
                if self.settings is not None:
                    record["settings"] = self.settings
                write_text(self.path / MARKER, json.dumps(record, indent=2) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_flags(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise OutputError("--resume and --overwrite contradict each other: choose one")


def check_parent(path: str | Path) -> None:
    """Refuse, before any work, an output whose folder cannot be made or written: its nearest existing ancestor
    is a file, or not writable."""
    path = Path(path).expanduser()
    above = path.parent if str(path.parent) else Path(".")
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise OutputError(f"cannot write {path}: {above} is a file, not a folder; choose another output path")
    if not os.access(above, os.W_OK):
        raise OutputError(f"cannot write {path}: {above} is not writable; choose another output path")


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of an output folder, or None (no marker, or not litcache's)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == MARKER_FORMAT else None


def _names(paths: Sequence[Path], root: Path) -> str:
    rel = [str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in paths]
    return ", ".join(rel[:3]) + (f" and {len(rel) - 3} more" if len(rel) > 3 else "")


def _own_advice(resumable: bool) -> str:
    return (
        "pass --resume to continue it, or --overwrite to replace it" if resumable else "pass --overwrite to replace it"
    )


def claim_folder(
    path: str | Path,
    command: str,
    makes: Sequence[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = True,
) -> Claim:
    """The policy for an output folder: ``makes`` are the glob patterns (relative to it) of what this invocation
    writes. Refuses a file, a folder that holds files without this command's marker, or (without ``resume`` or
    ``overwrite``) one that already holds what this invocation makes. Changes nothing: see :meth:`Claim.take`."""
    _check_flags(resume, overwrite)
    path = Path(path).expanduser()
    check_parent(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder: give `litcache {command}` a new or empty folder")
    entries = sorted(path.iterdir()) if path.is_dir() else []
    claim = Claim(path, command, folder=True)
    if not entries:
        return claim
    claim.marker = read_marker(path)
    if claim.marker is None:
        raise OutputError(
            f"{path} exists and holds files litcache did not write ({_names(entries, path)}); litcache never writes "
            f"into it: give `litcache {command}` a new or empty folder"
        )
    if claim.marker.get("command") != command:
        raise OutputError(
            f"{path} holds the output of `litcache {claim.marker.get('command')}`, not of `litcache {command}`: "
            "choose another folder"
        )
    own = sorted({p for pattern in makes for p in path.glob(pattern)})
    if not own:  # nothing of this invocation's yet (another --section K, or a run that stopped early)
        return claim
    if resume:
        claim.resuming = True
    elif overwrite:
        claim.replaced = own
    else:
        raise OutputError(
            f"{path} already holds the output of `litcache {command}` ({_names(own, path)}); {_own_advice(resumable)}"
        )
    return claim


def claim_file(
    path: str | Path,
    command: str,
    sidecars: Sequence[str],
    is_own: Callable[[Path], bool],
    *,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = True,
    example: str = "model.pt",
) -> Claim:
    """The policy for an output file and its ``sidecars`` (suffixes added to its name: ``.metrics.jsonl``, ...).
    ``is_own(path)`` says whether an existing file is this command's work. Changes nothing: see :meth:`Claim.take`.
    With ``overwrite`` the sidecars are removed by :meth:`Claim.take`; the file itself is replaced (atomically)
    when the new one is written."""
    _check_flags(resume, overwrite)
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{path} is a folder; `litcache {command} -o` takes a file path, such as {path / example}")
    check_parent(path)
    side = [p for p in (path.with_name(path.name + s) for s in sidecars) if p.exists() or p.is_symlink()]
    claim = Claim(path, command, folder=False)
    if path.exists():
        if not is_own(path):
            raise OutputError(
                f"{path} exists and is not a checkpoint `litcache {command}` wrote; litcache never overwrites it: "
                "choose another output path"
            )
        what = f"{path} already exists (written by `litcache {command}`)"
    elif side:
        what = f"an earlier `litcache {command}` run left {_names(side, path.parent)}"
    else:
        return claim
    if resume:
        claim.resuming = True
    elif overwrite:
        claim.replaced = side
    else:
        raise OutputError(f"{what}; {_own_advice(resumable)}")
    return claim


__all__ = [
    "MARKER",
    "Claim",
    "append_line",
    "atomic_path",
    "check_parent",
    "claim_file",
    "claim_folder",
    "failure",
    "hint",
    "keep_lines",
    "keeping",
    "read_marker",
    "say",
    "write_bytes",
    "write_text",
    "writing",
]
