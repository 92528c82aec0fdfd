"""The output policy (litcache/outputs.py): what a command may replace, atomic writes, one-line write failures."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from litcache import outputs
from litcache.errors import OutputError
from litcache.outputs import MARKER, append_line, claim_file, claim_folder, keep_lines, keeping, write_bytes, writing

MAKES = ("section-s*.pt", "metrics.jsonl")


class DiskFull:
    """``os.write`` that fails with ENOSPC once ``budget`` bytes went to files under ``folder``: a disk that fills."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path, budget: int) -> None:
        self.folder, self.budget, self.real = str(folder.resolve()), budget, os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(self.folder):
            return self.real(fd, data)
        n = min(len(data), self.budget)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= n
        return self.real(fd, memoryview(data)[:n])


def test_a_folder_of_someone_elses_files_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("mine")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(
            OutputError, match=rf"{tmp_path} exists and holds files litcache did not write \(notes.md\)"
        ):
            claim_folder(tmp_path, "train-sections", MAKES, **flags)
    assert (tmp_path / "notes.md").read_text() == "mine"


def test_a_folder_of_another_command_is_refused(tmp_path: Path) -> None:
    claim_folder(tmp_path / "r", "report", ("report.md",)).take()
    (tmp_path / "r" / "report.md").write_text("a report")
    with pytest.raises(OutputError, match="holds the output of `litcache report`, not of `litcache train-sections`"):
        claim_folder(tmp_path / "r", "train-sections", MAKES, overwrite=True)


def test_own_work_needs_resume_or_overwrite_and_overwrite_removes_only_what_the_command_makes(tmp_path: Path) -> None:
    out = tmp_path / "sections"
    claim = claim_folder(out, "train-sections", MAKES)
    assert not out.exists()  # a claim changes nothing until it is taken
    claim.take()
    assert json.loads((out / MARKER).read_text())["command"] == "train-sections"
    (out / "section-s1.pt").write_bytes(b"weights")
    (out / "my-notes.txt").write_text("the user's")
    with pytest.raises(OutputError, match=r"already holds the output of `litcache train-sections` \(section-s1.pt\)"):
        claim_folder(out, "train-sections", MAKES)
    assert claim_folder(out, "train-sections", MAKES, resume=True).resuming
    again = claim_folder(out, "train-sections", MAKES, overwrite=True)
    assert (out / "section-s1.pt").exists()  # nothing removed before take()
    again.take()
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "my-notes.txt"]
    with pytest.raises(OutputError, match="contradict"):
        claim_folder(out, "train-sections", MAKES, resume=True, overwrite=True)


def test_another_section_beside_the_first_is_not_a_clash(tmp_path: Path) -> None:
    claim_folder(tmp_path, "train-sections", ("section-s1.pt",)).take()
    (tmp_path / "section-s1.pt").write_bytes(b"s1")
    assert not claim_folder(tmp_path, "train-sections", ("section-s2.pt",)).resuming


def test_file_outputs(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "student.pt", tmp_path / "notes.txt"
    theirs.write_text("not a checkpoint")
    own = lambda p: p == mine  # noqa: E731
    with pytest.raises(OutputError, match="is a folder; `litcache kd -o` takes a file path, such as"):
        claim_file(tmp_path, "kd", (".metrics.jsonl",), own, overwrite=True)
    with pytest.raises(OutputError, match="notes.txt exists and is not a checkpoint `litcache kd` wrote"):
        claim_file(theirs, "kd", (".metrics.jsonl",), own, overwrite=True)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        claim_file(theirs / "student.pt", "kd", (), own)
    assert theirs.read_text() == "not a checkpoint"
    (tmp_path / "student.pt.metrics.jsonl").write_text("{}\n")  # what an interrupted run left
    with pytest.raises(OutputError, match="an earlier `litcache kd` run left student.pt.metrics.jsonl; pass --resume"):
        claim_file(mine, "kd", (".metrics.jsonl",), own)
    mine.write_bytes(b"x")
    with pytest.raises(OutputError, match=r"student.pt already exists \(written by `litcache kd`\); pass --resume"):
        claim_file(mine, "kd", (".metrics.jsonl",), own)
    claim_file(mine, "kd", (".metrics.jsonl",), own, overwrite=True).take()
    assert mine.exists() and not (tmp_path / "student.pt.metrics.jsonl").exists()  # replaced when rewritten


def test_a_failed_write_leaves_the_old_file_and_no_temporary_sibling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.pt"
    write_bytes(path, b"old state")
    DiskFull(monkeypatch, tmp_path, budget=5)
    with pytest.raises(OutputError) as exc, writing(path, kept="epoch 1 is kept", then="continue with --resume"):
        write_bytes(path, b"a new state, longer than the space left")
    full = "no space left on device; epoch 1 is kept; free some space, then continue with --resume"
    assert str(exc.value) == f"cannot write {path}: {full}"
    assert path.read_bytes() == b"old state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_ctrl_c_in_a_write_removes_the_temporary_sibling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt) as exc, keeping(tmp_path / "x", lambda: "3 units are kept", "then"):
        write_bytes(tmp_path / "x", b"data")
    assert exc.value.__notes__ == ["3 units are kept"]
    assert list(tmp_path.iterdir()) == []


def test_a_line_that_does_not_fit_is_taken_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "metrics.jsonl"
    append_line(log, json.dumps({"epoch": 0}))
    DiskFull(monkeypatch, tmp_path, budget=4)
    with pytest.raises(OSError, match="No space left"):
        append_line(log, json.dumps({"epoch": 1, "loss": 0.5}))
    assert log.read_text() == '{"epoch": 0}\n'  # not half a record


def test_keep_lines_drops_the_records_of_epochs_trained_again_and_half_lines(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert keep_lines(log, lambda r: r["epoch"] < 2) == 2
    assert log.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'


def test_a_permission_error_says_so(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as exc, writing(tmp_path / "x", then="continue"):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    assert str(exc.value) == (
        f"cannot write {tmp_path / 'x'}: permission denied; make it writable or choose another output path, then "
        "continue"
    )


def test_a_read_only_folder_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)  # as a read-only mount answers
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'out'}: {tmp_path} is not writable"):
        claim_folder(tmp_path / "out", "report", ("report.md",))


def test_a_failure_on_the_temporary_sibling_names_the_file(tmp_path: Path) -> None:
    sibling = str(tmp_path / ".state.pt.x81k2q.tmp")
    said = f"cannot write {tmp_path / 'state.pt'}: no space left on device"
    with pytest.raises(OutputError, match=said), writing(tmp_path / "elsewhere"):
        raise OSError(errno.ENOSPC, "No space left on device", sibling)


def test_a_failed_write_names_its_own_file_whatever_the_stage_was_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    DiskFull(monkeypatch, tmp_path, budget=0)
    state = tmp_path / "train-state-all.pt"
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'section-s2.pt'}: no space left"), writing(state):
        write_bytes(tmp_path / "section-s2.pt", b"weights")
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'metrics.jsonl'}: no space left"), writing(state):
        append_line(tmp_path / "metrics.jsonl", "{}")
