from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr
from click.testing import CliRunner, Result

from litcache import __version__, load_model, load_pipeline, open_cache
from litcache.cli.main import main


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def assert_clean_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not an escaped exception
    assert "Traceback" not in result.output
    assert "Error:" in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_train_teacher_resumes_to_the_uninterrupted_weights(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litcache.train.supervised as supervised

    args = ("train-teacher", "-p", "tiny", "-d", data_dir, "--limit", "16", "--epochs", "3", "-q")
    ok(*args, "-o", tmp_path / "whole.pt")
    assert not (tmp_path / "whole.pt.train-state.pt").exists()  # a finished run leaves only its checkpoint

    real, calls = supervised.train_one_epoch, []

    def dies_in_epoch_three(*a: object, **k: object) -> dict:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed in its last epoch
        return real(*a, **k)

    monkeypatch.setattr(supervised, "train_one_epoch", dies_in_epoch_three)
    assert run(*args, "-o", tmp_path / "cut.pt").exit_code != 0
    assert (tmp_path / "cut.pt.train-state.pt").is_file() and not (tmp_path / "cut.pt").exists()
    monkeypatch.setattr(supervised, "train_one_epoch", real)
    assert_clean_error(run(*args[:-2], "4", "-q", "-o", tmp_path / "cut.pt", "--resume"), 1, "its epochs 3 (now 4)")
    ok(*args, "-o", tmp_path / "cut.pt", "--resume")
    whole, cut = load_model(tmp_path / "whole.pt")[0].state_dict(), load_model(tmp_path / "cut.pt")[0].state_dict()
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    assert len((tmp_path / "cut.pt.metrics.jsonl").read_text().splitlines()) == 3  # one record an epoch


def test_train_teacher_extract_inspect_evaluate(data_dir: Path, tmp_path: Path) -> None:
    teacher, cache = tmp_path / "runs" / "teacher.pt", tmp_path / "runs" / "cache.zarr"
    result = ok("train-teacher", "-p", "tiny", "-d", data_dir, "-o", teacher, "--limit", "16", "-q")
    assert f"-> {teacher}" in result.stdout
    model, meta = load_model(teacher)
    assert model.spec["name"] == "resnet8" and meta["samples"] == 16 and meta["epochs"] == 1
    assert load_pipeline(str(teacher.with_name("teacher.pt.config.yaml"))).teacher.model.name == "resnet8"
    assert len(teacher.with_name("teacher.pt.metrics.jsonl").read_text().splitlines()) == 1

    result = ok(
        "extract", "-p", "tiny", "-t", teacher, "-d", data_dir, "-o", cache, "--views", "3", "--limit", "32", "-q"
    )
    assert "complete" in result.stdout
    c = open_cache(str(cache))
    assert c.complete and c.views == 3 and c.rows == 3 * 32

    result = ok("inspect", cache)
    assert "complete (" in result.stdout and "boundary/3" in result.stdout
    result = ok("inspect", cache, "--verify")
    assert "all units match their checksums" in result.stdout

    result = ok("evaluate", "-m", teacher, "-d", data_dir, "--json")
    evaluation = json.loads(result.stdout)
    assert evaluation["samples"] == 32 and evaluation["model"] == "resnet8"
    assert 0.0 <= evaluation["accuracy"] <= 1.0
    assert "top-1" in ok("evaluate", "-m", teacher, "-d", data_dir, "--limit", "8").stdout


def test_extract_max_units_then_resume(data_dir: Path, teacher_path: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c.zarr"
    result = ok("extract", "-t", teacher_path, "-d", data_dir, "-o", cache, "--max-units", "2", "-q")
    assert "INCOMPLETE" in result.stdout and "--resume" in result.stdout
    result = run("inspect", cache, "--verify")
    assert result.exit_code == 1 and "unit 2 (rows 32..47): not written" in result.stdout
    assert "INCOMPLETE (2/8 units)" in run("inspect", cache).stdout
    assert_clean_error(
        run("extract", "-t", teacher_path, "-d", data_dir, "-o", cache, "-q"), 1, "--resume", "--overwrite"
    )
    assert_clean_error(
        run("extract", "-t", teacher_path, "-d", data_dir, "-o", cache, "--views", "4", "--resume", "-q"),
        1,
        "cannot resume",
        "views: cache has 2, this run has 4",
    )
    result = ok("extract", "-t", teacher_path, "-d", data_dir, "-o", cache, "--resume", "-q")
    assert "6 units written" in result.stdout and "complete" in result.stdout
    ok("extract", "-t", teacher_path, "-d", data_dir, "-o", cache, "--overwrite", "--views", "1", "-q")
    assert open_cache(str(cache)).views == 1


def test_inspect_json(cache_path: Path) -> None:
    s = json.loads(ok("inspect", cache_path, "--json").stdout)
    assert {"format_version", "complete", "rows", "samples", "views", "teacher", "arrays"} <= s.keys()
    assert (s["format_version"], s["complete"], s["rows"], s["samples"], s["views"]) == (4, True, 128, 64, 2)
    assert {"model", "fingerprint", "sections", "b0", "output"} <= s["teacher"].keys()
    assert s["teacher"]["model"] == "resnet8" and s["teacher"]["fingerprint"].startswith("sha256:")
    assert s["teacher"]["sections"] == ["layer1", "layer2", "layer3"] and s["teacher"]["b0"] == "recomputed"
    expected = {"rows/sample", "rows/view", "rows/label", "input", "logits", "progress/units", "progress/stats"}
    assert expected | {f"boundary/{k}" for k in (1, 2, 3)} <= s["arrays"].keys()
    for name, a in s["arrays"].items():
        assert {"shape", "dtype", "stored_bytes", "raw_fp32_bytes"} <= a.keys(), name
        assert a["stored_bytes"] > 0 and a["raw_fp32_bytes"] == 4 * int(np.prod(a["shape"])), name
    assert s["arrays"]["boundary/2"]["shape"] == [128, 32, 16, 16]
    assert s["arrays"]["boundary/2"]["dtype"] == "float16"


def test_inspect_stats_match_numpy(cache_path: Path) -> None:
    s = json.loads(ok("inspect", cache_path, "--json", "--stats").stdout)
    group = zarr.open_group(str(cache_path), mode="r")
    assert sorted(s["channel_stats"]) == ["boundary/1", "boundary/2", "boundary/3"]
    for name, st in s["channel_stats"].items():
        x = group[name][...].astype(np.float64)
        assert len(st["mean"]) == x.shape[1]
        np.testing.assert_allclose(st["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-9)
        np.testing.assert_allclose(st["std"], x.std(axis=(0, 2, 3)), rtol=1e-7)
        np.testing.assert_array_equal(st["min"], x.min(axis=(0, 2, 3)))
        np.testing.assert_array_equal(st["max"], x.max(axis=(0, 2, 3)))
    assert "per-channel mean" in ok("inspect", cache_path, "--stats").stdout


def test_inspect_verify_reports_tampering(cache_copy: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    group["logits"][16:32] = group["logits"][16:32] + 1
    result = run("inspect", cache_copy, "--verify")
    assert result.exit_code == 1
    assert "PROBLEMS" in result.stdout and "unit 1 (rows 16..31): logits" in result.stdout


def test_pipelines_command() -> None:
    assert "tiny" in ok("pipelines").stdout
    printed = yaml.safe_load(ok("pipelines", "tiny").stdout)
    assert printed == load_pipeline("tiny").to_dict()
    assert_clean_error(run("pipelines", "nosuch"), 1, "no pipeline named 'nosuch'")


def test_version() -> None:
    assert __version__ in ok("--version").stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["extract", "-p", "nosuch", "-t", "t.pt", "-o", "c.zarr"], ["no pipeline named 'nosuch'", "tiny"]),
        (["extract", "-p", "missing.yaml", "-t", "t.pt", "-o", "c.zarr"], ["missing.yaml does not exist"]),
        (["extract", "-t", "missing.pt", "-o", "c.zarr"], ["checkpoint missing.pt does not exist"]),
        (["evaluate", "-m", "missing.pt"], ["checkpoint missing.pt does not exist"]),
        (["inspect", "missing.zarr"], ["no cache at missing.zarr"]),
        (["extract", "-t", "t.pt", "-o", "c.zarr", "--set", "extract.veiws=3"], ["'extract.veiws'"]),
        (["extract", "-t", "t.pt", "-o", "c.zarr", "--set", "extract.views"], ["--set expects key=value"]),
        (["train-teacher", "-o", "t.pt", "--model", "resnet9", "-d", "DATA"], ["unknown built-in model 'resnet9'"]),
        (
            ["train-teacher", "-o", "t.pt", "--set", "teacher.arch=resnet8"],
            ["'teacher.arch' was replaced by teacher.model"],
        ),
        (["train-teacher", "-o", "t.pt", "-d", "no/such/folder"], ["no/such/folder"]),
    ],
)
def test_user_errors_exit_1_with_a_message(
    args: list[str], fragments: list[str], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run(*[str(data_dir) if a == "DATA" else a for a in args]), 1, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["extract", "-o", "c.zarr"], "Missing option '--teacher'"),
        (["extract", "-t", "t.pt", "-o", "c.zarr", "--views", "0"], "--views"),
        (["extract", "-t", "t.pt", "-o", "c.zarr", "--limit", "0"], "--limit"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    assert_clean_error(run(*args), 2, fragment)


def test_python_dash_m_litcache_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "litcache", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    for command in ("train-teacher", "extract", "inspect", "evaluate", "pipelines"):
        assert command in out.stdout


@pytest.mark.shared_data
def test_real_cifar10_end_to_end(shared_cifar10: Path, tmp_path: Path) -> None:
    teacher, cache = tmp_path / "teacher.pt", tmp_path / "cache.zarr"
    ok("train-teacher", "-d", shared_cifar10, "-o", teacher, "--limit", "64", "-q")
    ok("extract", "-t", teacher, "-d", shared_cifar10, "-o", cache, "--limit", "64", "-q")
    s = json.loads(ok("inspect", cache, "--json", "--verify").stdout)
    assert s["complete"] and s["verify_problems"] == []
    assert (s["samples"], s["views"], s["rows"]) == (64, 2, 128)
    assert s["data"]["identity"].startswith("wds:") and "train-0.tar" in s["data"]["identity"]
    c = open_cache(str(cache))
    assert np.array_equal(np.unique(c.array("rows/label")[:]), np.arange(10))
    evaluation = json.loads(ok("evaluate", "-m", teacher, "-d", shared_cifar10, "--limit", "64", "--json").stdout)
    assert evaluation["samples"] == 64 and "test-0.tar" in evaluation["data"]
