"""Whole runs: `litcache quickstart` and `litcache run` (one cache, several students), in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from litcache.assets import QUICKSTART_TEACHER, asset_path, shipped_teacher
from litcache.cache.reader import open_cache
from litcache.cli.main import main
from litcache.config import load_pipeline
from litcache.errors import CheckpointError
from litcache.models.checkpoint import load_model
from litcache.recipe import lit_verdict, one_block_sections_note

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
    "train.student=resnet8",
]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_quickstart_trains_teacher_lit_student_and_baseline(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = CliRunner().invoke(
        main, ["quickstart", "-d", str(data_dir), "-o", str(out), "--samples", "100", "-q", *sets(SMALL)]
    )
    assert result.exit_code == 0, result.output
    for name in ("teacher", "lit-resnet8", "kd-resnet8", "scratch-resnet8"):
        assert name in result.output
    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["models"]]
    assert names == ["teacher", "lit-resnet8", "kd-resnet8", "scratch-resnet8"]
    assert (out / "teacher.pt").is_file()  # another teacher.model than the shipped teacher's: trained here
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
    # resnet8's sections hold one block each (resnet14's two): the run says so before it starts
    note = next(line for line in result.output.splitlines() if line.startswith("note: every section of"))
    assert "of resnet8 holds a single block" in note and "resnet14" not in note
    assert load_model(out / "students/resnet14/student.pt")[0].spec["name"] == "resnet14"


def test_quickstart_starts_from_the_shipped_teacher_and_says_whether_lit_leads(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "qs"
    small = [item for item in SMALL if not item.startswith("teacher.")]
    result = CliRunner().invoke(
        main, ["quickstart", "-d", str(data_dir), "-o", str(out), "--samples", "100", "-q", *sets(small)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["models"]] == ["teacher", "lit-resnet8", "kd-resnet8", "scratch-resnet8"]
    teacher = results["models"][0]
    assert teacher["model"] == "resnet56" and teacher["checkpoint"] == str(asset_path(QUICKSTART_TEACHER))
    assert not (out / "teacher.pt").exists()  # not trained: the shipped one
    assert "resnet8: LIT leads on this run" in result.output or "LIT does not lead on this run" in result.output


def test_the_shipped_teacher_is_the_benchmarks_resnet56() -> None:
    shipped = asset_path(QUICKSTART_TEACHER)
    assert shipped_teacher(load_pipeline("quickstart").teacher.model) == shipped
    assert shipped_teacher(load_pipeline("quickstart", ["teacher.model=resnet14"]).teacher.model) is None
    model, meta = load_model(shipped)
    assert model.spec["name"] == "resnet56" and meta["epochs"] == 12 and meta["samples"] == 50000
    kept = Path(__file__).parents[1] / "benchmarks" / "results" / "teachers" / QUICKSTART_TEACHER
    if kept.is_file():  # the teacher BENCHMARKS.md measured (84.08 %), byte for byte
        assert kept.read_bytes() == shipped.read_bytes()
    with pytest.raises(CheckpointError, match="ships no asset 'nothing.pt'"):
        asset_path("nothing.pt")


def _results(lit: float, kd: float, scratch: float) -> dict[str, object]:
    rows = [("teacher", 0.84), ("lit-resnet20", lit), ("kd-resnet20", kd), ("scratch-resnet20", scratch)]
    return {"models": [{"name": n, "accuracy": a} for n, a in rows]}


def test_the_verdict_says_whether_lit_leads_and_where_it_was_measured_to() -> None:
    (line,) = lit_verdict(_results(0.70, 0.60, 0.55))
    assert line.startswith("resnet20: LIT leads on this run: LIT 70.00 %, KD only 60.00 % (+10.00 points)")
    assert "scratch 55.00 % (+15.00)" in line and "'The quickstart'" in line
    (line,) = lit_verdict(_results(0.60, 0.62, 0.50))
    assert "at this budget LIT does not lead on this run" in line and "'ResNet-56 → ResNet-20'" in line
    assert lit_verdict({"models": _results(0.7, 0.6, 0.5)["models"][:2]}) == []  # without both baselines: nothing


@pytest.mark.parametrize(
    ("pipeline", "noted"),
    [
        ("tiny", "resnet8"),
        ("cifar10-resnet20-resnet8", "resnet8"),
        ("cifar10-torchvision-resnet50", "student1"),  # torchvision's Bottleneck, [1, 1, 1, 1]
        ("cifar10-upscale-generator6-generator2", "generator2"),
        ("cifar10-resnet56-resnet20", None),
        ("cifar10-vit-12-6", None),
        ("quickstart", None),
    ],
)
def test_students_whose_every_section_is_one_block_are_noted(pipeline: str, noted: str | None) -> None:
    note = one_block_sections_note(load_pipeline(pipeline))
    assert (note is None) if noted is None else f"every section of {noted} holds a single block" in note


def test_a_sections_blocks_are_its_modules_a_container_counting_its_children() -> None:
    from litcache.models import build_model

    resnet20 = build_model("resnet20")
    assert [resnet20.section_blocks(k) for k in (1, 2, 3)] == [3, 3, 3]  # layer1..3, Sequentials of 3 blocks
    vit = build_model(load_pipeline("cifar10-vit-12-6").teacher.model)
    assert [vit.section_blocks(k) for k in range(1, vit.num_sections + 1)] == [4, 4, 4]  # blocks.0:4 ... ranges
