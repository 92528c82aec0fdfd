"""Issue 24: every command refuses what it must not touch before any work, and every failure is one line.

Fast representatives of each fault (in-process); tests/test_faults_slow.py drives every command into a real SIGINT
and a real full disk.
"""

from __future__ import annotations

import io
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from faults import CODE_SENTENCE, DiskFull, code_checkpoint, continue_command, error_line, listing, run

import litcache.extract.run as extract_run
import litcache.train.trainer as trainer
from litcache import build_model, save_model
from litcache.models.checkpoint import load_model

TINY = ["--set", "stream.workers=0", "--set", "log.tensorboard=false", "--set", "store.bits=0", "-q"]  # as cache_path


@pytest.fixture
def data_args(data_dir: Path, index_dir: Path) -> list[str]:
    return ["-d", str(data_dir), "--set", f"data.index_dir={json.dumps(str(index_dir))}", *TINY]


def writers(cache: Path, teacher: Path) -> dict[str, list[str]]:
    """Every command that writes, with the inputs it needs (its output comes last, after -o)."""
    return {
        "train-teacher": ["train-teacher", "--limit", "16"],
        "extract": ["extract", "-t", str(teacher), "--limit", "16"],
        "train-sections": ["train-sections", "-c", str(cache)],
        "kd": ["kd", "-c", str(cache), "--from-scratch"],
        "run": ["run", "-t", str(teacher), "--limit", "16"],
        "quickstart": ["quickstart", "--samples", "100"],
        "report": ["report", str(cache)],
    }


FILE_OUTPUTS = ("train-teacher", "kd")


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
@pytest.mark.parametrize("command", list(writers(Path(), Path())))
def test_a_users_file_or_folder_is_refused_before_any_work(
    command: str, flags: list[str], cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "mine").mkdir()
    for name in ("config.yaml", "metrics.jsonl", "README.md", "results.json", "report.md"):
        (tmp_path / "mine" / name).write_text(f"my {name}")
    before = listing(tmp_path)
    for target in ("notes.txt", "mine"):
        args = writers(cache_path, teacher_path)[command]
        line = error_line(run(*args, *data_args, "-o", tmp_path / target, *flags))
        assert str(tmp_path / target) in line
        is_file_command = command in FILE_OUTPUTS
        if target == "mine" and is_file_command:
            assert "is a folder; `litcache" in line
        elif target == "notes.txt" and not is_file_command and command != "extract":
            assert "is a file, not a folder" in line
        else:
            assert "litcache never" in line
    assert listing(tmp_path) == before  # nothing written, nothing left beside them


def test_own_output_is_replaced_only_with_overwrite(cache_path: Path, data_args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "kd.pt"
    args = ["kd", "-c", cache_path, "--from-scratch", *data_args, "-o", out]
    assert run(*args).exit_code == 0
    first = out.read_bytes()
    line = error_line(run(*args))
    assert f"{out} already exists (written by `litcache kd`)" in line and "--overwrite" in line
    assert out.read_bytes() == first
    assert run(*args, "--overwrite", "--set", "kd.seed=1").exit_code == 0
    assert out.read_bytes() != first
    assert len((tmp_path / "kd.pt.metrics.jsonl").read_text().splitlines()) == 1  # the old run's log went with it


# where a user's own file may sit beside or inside each command's output, which --overwrite must leave alone
BESIDE = {
    "train-teacher": "t.pt.notes",
    "train-sections": "out/notes.txt",
    "kd": "t.pt.notes",
    "report": "out/notes.txt",
}


@pytest.mark.parametrize("command", ["train-teacher", "extract", "train-sections", "kd", "report"])
def test_each_command_replaces_its_own_output_only_with_overwrite_and_nothing_else(
    command: str, cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    out = tmp_path / ("t.pt" if command in FILE_OUTPUTS else "out")
    args = [*writers(cache_path, teacher_path)[command], *data_args, "-o", out]
    assert run(*args).exit_code == 0
    mine = tmp_path / BESIDE[command] if command in BESIDE else None
    if mine is not None:
        mine.write_text("the user's")
    before = listing(tmp_path)
    line = error_line(run(*args))
    assert str(out) in line and "--overwrite" in line, line
    assert listing(tmp_path) == before  # refused: nothing changed
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert mine is None or mine.read_text() == "the user's"  # only what the command made was replaced
    assert not [p for p in tmp_path.rglob("*.tmp")]


def checkpoint_readers(
    bad: Callable[[Path], object], cache: Path, data_args: list[str], tmp_path: Path
) -> dict[str, list[str | Path]]:
    """Every command that reads a checkpoint, given the file ``bad`` writes (as its teacher, model, sections or
    training state); their outputs under ``tmp_path / "out"``."""
    sections, out = tmp_path / "sections", tmp_path / "out"
    sections.mkdir()
    for path in [tmp_path / "given.pt", tmp_path / "t.pt.train-state.pt"] + [
        sections / f"section-s{k}.pt" for k in (1, 2, 3)
    ]:
        bad(path)
    given = tmp_path / "given.pt"
    return {
        "evaluate": ["evaluate", "-m", given, *data_args],
        "report": ["report", given, "-o", out, *data_args],
        "inspect": ["inspect", given],
        "extract": ["extract", "-t", given, "-o", out / "c.zarr", *data_args],
        "verify": ["verify", cache, "--teacher", given, *data_args],
        "train-sections": ["train-sections", "-c", cache, "--teacher", given, "-o", out / "s", *data_args],
        "kd": ["kd", "-c", cache, "-s", sections, "-o", out / "kd.pt", *data_args],
        "run": ["run", "-t", given, "-o", out / "run", "--limit", "16", *data_args],
        "train-teacher": ["train-teacher", "-o", tmp_path / "t.pt", "--resume", "--limit", "16", *data_args],
    }


def test_a_file_that_holds_code_is_refused_by_every_command_in_the_same_words(
    cache_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    canary = tmp_path / "code-ran"
    commands = checkpoint_readers(lambda path: code_checkpoint(path, canary), cache_path, data_args, tmp_path)
    said = {}
    for name, args in commands.items():
        line = error_line(run(*args))
        assert CODE_SENTENCE in line, (name, line)
        said[name] = line.split(" holds ", 1)[1]
    assert said["report"] == said["evaluate"] == said["inspect"]  # the same sentence
    assert not canary.exists()  # nothing ran
    assert not (tmp_path / "out").exists()  # nothing begun


FOREIGN = {
    "foreign": lambda path: torch.save({"weights": [1, 2, 3]}, path),  # a PyTorch file, not a checkpoint
    "truncated": lambda path: path.write_bytes(_whole_checkpoint()[:5000]),
    "text": lambda path: path.write_text("my notes"),
}


def _whole_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save(build_model("resnet8").net.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_foreign_or_truncated_checkpoint_is_one_line_in_every_command_that_reads_one(
    kind: str, cache_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    commands = checkpoint_readers(FOREIGN[kind], cache_path, data_args, tmp_path)
    for name, args in commands.items():
        line = error_line(run(*args))
        assert str(tmp_path) in line, (name, line)  # names the file it could not use
    assert not (tmp_path / "out").exists()  # nothing begun


def test_a_legacy_or_plain_pickle_that_holds_code_is_called_code_too(tmp_path: Path) -> None:
    canary = tmp_path / "code-ran"
    for kind in ("legacy", "pickle"):
        path = code_checkpoint(tmp_path / f"{kind}.pt", canary, kind)
        assert CODE_SENTENCE in error_line(run("evaluate", "-m", path))
        assert CODE_SENTENCE in error_line(run("inspect", path))
    assert not canary.exists()


def test_a_full_disk_is_one_line_and_the_run_continues_to_the_uninterrupted_result(
    cache_path: Path, data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["train-sections", "-c", cache_path, *data_args, "--set", "train.epochs=3"]
    assert run(*args, "-o", tmp_path / "whole").exit_code == 0
    out = tmp_path / "cut"
    with monkeypatch.context() as patched:
        DiskFull(patched, lambda path: "train-state" in path, after=1)  # the disk fills while epoch 2 is saved
        line = error_line(run(*args, "-o", out))
    assert f"cannot write {out}/train-state-all.pt: no space left on device" in line
    assert "epochs 1-1 of 3 are saved in" in line and "free some space, then continue with `litcache" in line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary sibling left behind
    result = run(*continue_command(line))
    assert result.exit_code == 0, result.output
    assert "resuming train-sections: epochs 1-1 of 3" in result.output
    for k in (1, 2, 3):
        a = torch.load(tmp_path / "whole" / f"section-s{k}.pt", weights_only=True)["state_dict"]
        b = torch.load(out / f"section-s{k}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_ctrl_c_says_what_is_kept_and_the_command_that_continues(
    cache_path: Path, data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["kd", "-c", cache_path, "--from-scratch", *data_args, "--set", "kd.epochs=3"]
    assert run(*args, "-o", tmp_path / "whole.pt").exit_code == 0
    real, calls = trainer.train_one_epoch, []

    def interrupted_in_epoch_two(*a: object, **k: object) -> dict:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_in_epoch_two)
    line = error_line(run(*args, "-o", tmp_path / "cut.pt"), code=130)
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    assert line.startswith("Error: interrupted (Ctrl-C); epochs 1-1 of 3 are saved in")
    again = continue_command(line)
    assert again[-1] == "--resume" and str(tmp_path / "cut.pt") in again
    assert run(*again).exit_code == 0
    whole, cut = load_model(tmp_path / "whole.pt")[0].state_dict(), load_model(tmp_path / "cut.pt")[0].state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_ctrl_c_in_extract_keeps_the_written_units_and_resume_says_it_skips_them(
    cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = extract_run.teacher_rows, []

    def interrupted(*a: object, **k: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # in the second step of four units
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(extract_run, "teacher_rows", interrupted)
    out = tmp_path / "c.zarr"
    line = error_line(run("extract", "-t", teacher_path, *data_args, "-o", out), code=130)
    monkeypatch.setattr(extract_run, "teacher_rows", real)
    assert "4 of 8 units are written and kept in" in line
    result = run(*continue_command(line))
    assert result.exit_code == 0, result.output
    assert f"resuming {out}: 4 of 8 units are already written (skipped)" in result.output
    a, b = zarr.open_group(str(cache_path), mode="r"), zarr.open_group(str(out), mode="r")
    for name in ("boundary/1", "boundary/3", "logits", "input", "progress/units"):
        assert np.array_equal(a[name][...], b[name][...]), name


def test_ctrl_c_while_the_cache_is_created_names_the_command_that_starts_it_again(
    cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litcache.cache.writer as writer

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "c.zarr"
    with monkeypatch.context() as patched:
        patched.setattr(writer, "build_codecs", interrupted)  # the provisional manifest is written, no array yet
        line = error_line(run("extract", "-t", teacher_path, *data_args, "-o", out), code=130)
    assert f"{out} was cut short while its arrays were being created and holds no data; start again with" in line
    again = continue_command(line)
    assert again[-1] == "--overwrite"  # --resume would refuse it
    assert run(*again).exit_code == 0
    a, b = zarr.open_group(str(cache_path), mode="r"), zarr.open_group(str(out), mode="r")
    assert np.array_equal(a["boundary/3"][...], b["boundary/3"][...])


def test_the_command_line_leaves_its_callers_ctrl_c_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/site-packages/pytest/__main__.py"])  # as `python -m pytest` runs it
    before = signal.getsignal(signal.SIGINT)
    assert run("pipelines").exit_code == 0
    assert signal.getsignal(signal.SIGINT) is before  # ignoring it would reach every process the caller starts


def test_ctrl_c_in_a_command_that_writes_nothing(cache_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import litcache.cache.verify as verify

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(verify, "verify_cache", interrupted)
    line = error_line(run("verify", cache_path), code=130)
    assert line == f"Error: interrupted (Ctrl-C); nothing was written: run it again with `litcache verify {cache_path}`"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["train-teacher", "-o", "t.pt", "-d", "no/such/folder"], "data folder no/such/folder is missing"),
        (
            ["extract", "-t", "{teacher}", "-o", "c.zarr", "-d", "no/such/folder"],
            "data folder no/such/folder is missing",
        ),
        (["evaluate", "-m", ".", "-d", "{data}"], "checkpoint . is a folder, not a file"),
        (["inspect", "notes.txt"], "notes.txt is a file, not a cache"),
        (["extract", "-t", "{teacher}", "-d", "{data}", "-o", "notes.txt/c.zarr"], "notes.txt is a file, not a folder"),
        (["train-sections", "-c", "{cache}", "-o", "notes.txt/sections"], "notes.txt is a file, not a folder"),
        (["report", "{cache}", "-o", "notes.txt/report"], "notes.txt is a file, not a folder"),
        (
            ["extract", "-t", "{teacher}", "-d", "{data}", "-o", "c.zarr", "--set", "extract.views=[1"],
            "line 1, column 3",
        ),
        (["run", "-t", "{teacher}", "-o", "run", "-d", "no/such/folder"], "data folder no/such/folder is missing"),
        (["quickstart", "-o", "qs", "-d", "no/such/folder"], "data folder no/such/folder is missing"),
        (["report", "{cache}", "-o", "r", "-d", "no/such/folder"], "data folder no/such/folder is missing"),
        (["run", "-t", "notes.txt", "-o", "run", "-d", "{data}"], "cannot read checkpoint notes.txt"),
        (["train-sections", "-c", "{cache}", "-t", "notes.txt", "-o", "s"], "cannot read checkpoint notes.txt"),
        (["kd", "-c", "{cache}", "-s", "notes.txt", "-o", "kd.pt"], "notes.txt is a file, not a sections folder"),
        (["kd", "-c", "{cache}", "-s", "{cache}", "-o", "kd.pt"], "cache.zarr holds no section checkpoints"),
        (["report", "notes.txt", "-o", "r"], "notes.txt holds nothing to report"),
    ],
)
def test_bad_paths_are_one_line_before_any_work(
    args: list[str],
    said: str,
    cache_path: Path,
    teacher_path: Path,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    values = {"data": str(data_dir), "teacher": str(teacher_path), "cache": str(cache_path)}
    assert said in error_line(run(*[a.format(**values) for a in args]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_extract_refuses_a_teacher_that_is_not_the_pipelines(
    cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    other = tmp_path / "resnet14.pt"
    save_model(build_model("resnet14"), other)
    commands = [
        ["extract", "-o", tmp_path / "c.zarr"],
        ["run", "-o", tmp_path / "run", "--limit", "16"],
        ["train-sections", "-c", cache_path, "-o", tmp_path / "online"],  # the online baselines' teacher
        ["kd", "-c", cache_path, "--from-scratch", "-o", tmp_path / "online.pt"],
    ]
    for command in commands:
        line = error_line(run(*command, "-t", other, *data_args))
        assert (
            f"teacher {other} is resnet14, the pipeline's teacher.model is resnet8: its depth=14 (pipeline: 8)" in line
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet14.pt"]  # no folder begun, no run claimed
    wanted = ["--set", "teacher.model={name: resnet8, sections: [layer1, layer2]}"]
    line = error_line(run("extract", "-t", teacher_path, *data_args, *wanted, "-o", tmp_path / "c.zarr"))
    assert "sections ['layer1', 'layer2', 'layer3'] (pipeline: ['layer1', 'layer2'])" in line


PIPELINE_COMMANDS: dict[str, Callable[[Path, Path, Path], list[str]]] = {
    "train-teacher": lambda c, t, o: ["train-teacher", "-o", o / "t.pt"],
    "extract": lambda c, t, o: ["extract", "-t", t, "-o", o / "c.zarr"],
    "train-sections": lambda c, t, o: ["train-sections", "-c", c, "-o", o / "s"],
    "kd": lambda c, t, o: ["kd", "-c", c, "--from-scratch", "-o", o / "kd.pt"],
    "run": lambda c, t, o: ["run", "-t", t, "-o", o / "run"],
    "quickstart": lambda c, t, o: ["quickstart", "-o", o / "qs"],
    "evaluate": lambda c, t, o: ["evaluate", "-m", t],
    "report": lambda c, t, o: ["report", c, "-o", o / "r"],
    "verify": lambda c, t, o: ["verify", c],
}


# a factory module that is not there, and two that are but fail as they are imported
BROKEN_MODULES = {
    "missing": ("", "No module named 'no_such_package'"),
    "syntax": ("def build(:\n", "importing it raised SyntaxError: invalid syntax"),
    "raises": ("raise RuntimeError('needs a GPU')\n", "importing it raised RuntimeError: needs a GPU"),
}


@pytest.mark.parametrize("broken", list(BROKEN_MODULES))
@pytest.mark.parametrize("command", list(PIPELINE_COMMANDS))
def test_a_pipeline_naming_a_factory_that_cannot_be_imported_is_refused_by_every_command(
    command: str, broken: str, cache_path: Path, teacher_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    args = PIPELINE_COMMANDS[command](cache_path, teacher_path, tmp_path / "out")
    source, said = BROKEN_MODULES[broken]
    module = "no_such_package.models"
    if source:
        module = str(tmp_path / f"user_{broken}.py")
        Path(module).write_text(source)
    bad = ["--set", f"train.student={{factory: '{module}:build', sections: [a, b, c]}}"]
    line = error_line(run(*args, *data_args, *bad))
    assert f"train.student: cannot import model factory module '{module}'" in line and said in line, line
    assert not (tmp_path / "out").exists()


def test_quickstart_resumes_the_same_run_and_refuses_another(
    data_dir: Path, index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = ["teacher.model=resnet8", "teacher.epochs=1", "teacher.batch_size=32", "extract.batch_size=32"]
    small += ["stream.batch_size=16", "stream.workers=0", "train.epochs=1", "kd.epochs=1", "data.num_classes=10"]
    small += ["train.student=resnet8"]
    small += ["log.tensorboard=false", f"data.index_dir={json.dumps(str(index_dir))}"]
    args = ["quickstart", "-d", data_dir, "-o", tmp_path / "qs", "-q", *[a for s in small for a in ("--set", s)]]

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr("litcache.recipe.extract", interrupted)  # once the teacher is trained
        line = error_line(run(*args, "--samples", "100"), code=130)
    assert continue_command(line) == [str(a) for a in args] + ["--samples", "100"]  # the same command
    teacher = (tmp_path / "qs" / "teacher.pt").read_bytes()
    written = (tmp_path / "qs" / "teacher.pt").stat().st_mtime_ns

    line = error_line(run(*args, "--samples", "120"))
    assert f"{tmp_path / 'qs'} holds a `litcache quickstart` run with other settings: --samples 100 (now 120)" in line
    assert "--overwrite" in line

    result = run(*args, "--samples", "100")
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'qs' / 'teacher.pt'} is already trained (skipped)" in result.output
    assert (tmp_path / "qs" / "teacher.pt").stat().st_mtime_ns == written  # the same teacher, not a new one
    names = [r["name"] for r in json.loads((tmp_path / "qs" / "results.json").read_text())["models"]]
    assert names == ["teacher", "lit-resnet8", "kd-resnet8", "scratch-resnet8"]

    with monkeypatch.context() as patched:  # --overwrite starts again, with the new settings
        patched.setattr("litcache.recipe.extract", interrupted)
        error_line(run(*args, "--samples", "120", "--overwrite"), code=130)
    assert (tmp_path / "qs" / "teacher.pt").stat().st_mtime_ns != written  # trained again (the 64 samples: same bytes)
    assert (tmp_path / "qs" / "teacher.pt").read_bytes() == teacher
    assert not (tmp_path / "qs" / "students").exists() and not (tmp_path / "qs" / "results.json").exists()


def test_a_hint_that_names_another_command_keeps_its_command(
    cache_copy: Path, data_args: list[str], tmp_path: Path
) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    group.attrs["litcache"] = {**group.attrs["litcache"], "creating": True}  # type: ignore[dict-item]
    for args in (["inspect", cache_copy], ["verify", cache_copy], ["train-sections", "-c", cache_copy]):
        extra = ["-o", tmp_path / "s", *data_args] if args[0] == "train-sections" else []
        line = error_line(run(*args, *extra))
        assert "run `litcache extract ... --overwrite` to start it again" in line, line  # not `litcache inspect`
    assert not (tmp_path / "s").exists()


def test_a_list_of_differences_is_one_line(
    cache_copy: Path, teacher_path: Path, data_args: list[str], tmp_path: Path
) -> None:
    line = error_line(run("extract", "-t", teacher_path, *data_args, "-o", cache_copy, "--views", "3", "--resume"))
    assert "it was extracted with different settings (views: cache has 2, this run has 3; rows: cache has" in line
    assert line.endswith("resume with the same settings, or pass --overwrite to start again")


def test_report_refuses_a_target_it_cannot_read(cache_copy: Path, teacher_path: Path, tmp_path: Path) -> None:
    canary = tmp_path / "code-ran"
    pickled = code_checkpoint(tmp_path / "evil.pkl", canary, "pickle")  # not named like a checkpoint
    assert CODE_SENTENCE in error_line(run("report", pickled, "-o", tmp_path / "r"))
    assert not canary.exists()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(teacher_path.read_bytes()[:5000])
    assert f"cannot read checkpoint {cut}: " in error_line(run("report", cut, "-o", tmp_path / "r"))
    group = zarr.open_group(str(cache_copy), mode="r+")
    group.attrs["litcache"] = {**group.attrs["litcache"], "format_version": 1}  # type: ignore[dict-item]
    line = error_line(run("report", cache_copy, "-o", tmp_path / "r"))
    assert line.startswith(f"Error: nothing to report: {cache_copy}: ") and "cache format version 1" in line
    assert not (tmp_path / "r").exists()


def test_a_run_stopped_before_any_stage_wrote_takes_other_settings(
    data_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("litcache.recipe.train_teacher", interrupted)  # before the teacher wrote a thing
    args = ["run", *data_args, "-o", tmp_path / "run"]
    error_line(run(*args, "--limit", "16"), code=130)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".litcache-output.json", "config.yaml"]
    error_line(run(*args, "--limit", "32"), code=130)  # not refused: there was nothing to continue
    settings = json.loads((tmp_path / "run" / ".litcache-output.json").read_text())["settings"]
    assert settings["limit"] == 32
