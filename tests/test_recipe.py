"""Whole runs: `litcache quickstart` and `litcache run` (one cache, several students), in-process."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from litcache.cache.reader import open_cache
from litcache.cli.main import main
from litcache.models.checkpoint import load_model

# shrink every stage of the quickstart pipeline to seconds on generated data
SMALL = [
    "teacher.model=resnet8",
    "teacher.epochs=1",
    "teacher.batch_size=32",
    "extract.views=2",
    "extract.batch_size=32",
    "store.chunk_mb=0.25",
    "stream.batch_size=16",
    "stream.workers=0",
    "stream.shuffle_buffer=64",
    "train.epochs=1",
    "kd.epochs=1",
    "data.num_classes=10",
]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_quickstart_trains_teacher_lit_student_and_baseline(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(
        main, ["quickstart", "-d", str(data_dir), "-o", str(out), "--samples", "100", "-q", *sets(SMALL)]
    )
    assert result.exit_code == 0, result.output
    for name in ("teacher", "lit-resnet8", "scratch-resnet8"):
        assert name in result.output
    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["models"]]
    assert names == ["teacher", "lit-resnet8", "scratch-resnet8"]
    for row in results["models"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["params"] > 0
        load_model(row["checkpoint"])  # every model is a standalone checkpoint
    assert results["cache"]["stored_bytes"] > 0 and results["cache"]["views"] == 2
    readme = (out / "README.md").read_text()
    assert "teacher.pt" in readme and "cache.zarr" in readme
    assert (out / "config.yaml").is_file()


def test_one_cache_serves_several_students(data_dir: Path, teacher_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        "-p",
        "tiny",
        "-d",
        str(data_dir),
        "-t",
        str(teacher_path),
        "-o",
        str(out),
        "--limit",
        "40",
        "-q",
        "--set",
        "students=[resnet8, resnet14]",
        "--set",
        "store.chunk_mb=0.25",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["models"]] == ["teacher", "lit-resnet8", "lit-resnet14"]
    assert not (out / "teacher.pt").exists()  # the given teacher is used, not retrained
    assert list(out.glob("*.zarr")) == [out / "cache.zarr"]  # one cache for both students
    assert open_cache(str(out / "cache.zarr")).complete
    model = {r["name"]: r["model"] for r in results["models"]}
    assert model["lit-resnet14"] == "resnet14"
    assert load_model(out / "students/resnet14/student.pt")[0].spec["name"] == "resnet14"
