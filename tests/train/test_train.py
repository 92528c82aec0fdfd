from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import zarr
from click.testing import CliRunner, Result

import litcache.train.stream
import litcache.train.trainer
from litcache import load_model, open_cache
from litcache.cli.main import main
from litcache.config import PipelineConfig, StreamConfig
from litcache.data import to_unit_float
from litcache.errors import CompatibilityError, ConfigError
from litcache.extract import extract
from litcache.train.objective import LitObjective
from litcache.train.stream import CacheStream
from litcache.train.students import assemble_student, build_student, frozen_state
from litcache.train.trainer import train_sections

SECTIONS = ("ir/s1", "ir/s2", "ir/s3")
# 64 rows per view / 16 = 4 steps an epoch; the same settings everywhere, so trained folders compare
TRAIN_SETTINGS = ("train.device=cpu", "stream.batch_size=16", "stream.shuffle_buffer=64", "train.epochs=3")


@pytest.fixture(scope="module")
def train_cfg(make_cfg: Callable[..., PipelineConfig]) -> PipelineConfig:
    return make_cfg(*TRAIN_SETTINGS)


@pytest.fixture(scope="module")
def one_pass(tmp_path_factory: pytest.TempPathFactory, train_cfg: PipelineConfig, cache_path: Path) -> dict[str, Any]:
    """All sections trained in one pass, 3 epochs: the reference the other runs are compared with."""
    out = tmp_path_factory.mktemp("one-pass")
    records = train_sections(train_cfg, str(cache_path), out, show_progress=False)
    return {"dir": out, "records": records}


@pytest.fixture(scope="module")
def float32_cache(
    tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., PipelineConfig], teacher_path: Path
) -> Path:
    out = tmp_path_factory.mktemp("f32") / "cache.zarr"
    extract(make_cfg("store.dtype=float32"), str(teacher_path), str(out), limit=32, show_progress=False)
    return out


@pytest.fixture(scope="module")
def orphan_cache(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, teacher_path: Path) -> dict[str, Path]:
    """A cache extracted through the CLI from a copy of the teacher, whose checkpoint is deleted afterwards."""
    root = tmp_path_factory.mktemp("orphan")
    teacher = root / "teacher.pt"
    shutil.copy(teacher_path, teacher)
    cache = root / "cache.zarr"
    result = invoke("extract", "-t", teacher, "-d", data_dir, "-o", cache, "--limit", 32, "-q")
    assert result.exit_code == 0, result.output
    teacher.unlink()
    return {"cache": cache, "teacher": teacher, "root": root}


WEIGHTS = {"temperature": 6.0, "label_weight": 0.95, "soft_weight": 0.05}  # LIT's reference weights


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result: Result, *fragments: str) -> None:
    """A user-facing error: exit status 1, an ``Error:`` line naming ``fragments``, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Error:" in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, tensor in sa.items():
        if atol == 0.0:
            assert torch.equal(tensor, sb[name]), name
        else:
            torch.testing.assert_close(tensor, sb[name], atol=atol, rtol=0.0, msg=name)


# -- training from the cache ----------------------------------------------------------------------------------


def test_ir_loss_goes_down(one_pass: dict[str, Any]) -> None:
    records = one_pass["records"]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    first, last = records[0], records[-1]
    for key in SECTIONS:
        assert last[key] < 0.95 * first[key], key
    assert records[0]["loss"] > records[1]["loss"] > records[2]["loss"]
    assert last["loss"] == pytest.approx(sum(last[k] for k in SECTIONS), rel=1e-5)  # beta = 0: loss = sum of IR
    assert first["samples"] == 64


def test_metrics_has_one_record_per_epoch(one_pass: dict[str, Any]) -> None:
    lines = read_metrics(one_pass["dir"] / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    for line, record in zip(lines, one_pass["records"], strict=True):
        assert line["mode"] == "cached-lit" and line["sections"] == ["s1", "s2", "s3"]
        assert all(line[k] == pytest.approx(record[k]) for k in SECTIONS)
    assert (one_pass["dir"] / "config.yaml").is_file()


def test_training_changes_only_the_sections(one_pass: dict[str, Any], cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    state = torch.load(one_pass["dir"] / "train-state-all.pt", weights_only=True)["student"]
    frozen = frozen_state(cache)
    assert {"normalize.mean", "net.conv1.weight", "net.bn1.running_var", "net.fc.bias"} <= frozen.keys()
    for name, value in frozen.items():  # frozen, BatchNorm statistics included
        assert torch.equal(state[name], value), name
    fresh = build_student(cache, "resnet8", seed=0).state_dict()
    for k in range(1, 4):
        name = f"net.layer{k}.0.conv1.weight"
        assert not torch.equal(state[name], fresh[name])


def test_same_seed_gives_identical_sections(
    one_pass: dict[str, Any], train_cfg: PipelineConfig, cache_path: Path, tmp_path: Path
) -> None:
    records = train_sections(train_cfg, str(cache_path), tmp_path, show_progress=False)
    assert [r["loss"] for r in records] == [r["loss"] for r in one_pass["records"]]
    cache = open_cache(str(cache_path))
    assert_same_weights(assemble_student(cache, tmp_path), assemble_student(cache, one_pass["dir"]))


def test_sections_trained_apart_equal_one_pass(
    one_pass: dict[str, Any], train_cfg: PipelineConfig, cache_path: Path, tmp_path: Path
) -> None:
    for k in (3, 1, 2):
        records = train_sections(train_cfg, str(cache_path), tmp_path, section=k, show_progress=False)
        assert set(records[-1]) >= {f"ir/s{k}"} and not set(records[-1]) & (set(SECTIONS) - {f"ir/s{k}"})
    cache = open_cache(str(cache_path))
    assert_same_weights(assemble_student(cache, tmp_path), assemble_student(cache, one_pass["dir"]), atol=1e-6)
    lines = read_metrics(tmp_path / "metrics.jsonl")  # the three processes share one metrics file
    assert sorted(line["sections"][0] for line in lines) == ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 3


def test_resume_continues_an_interrupted_run(
    one_pass: dict[str, Any],
    train_cfg: PipelineConfig,
    cache_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Interrupted(Exception):
        pass

    real = litcache.train.trainer.train_one_epoch
    calls = []

    def interrupted_in_epoch_two(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(litcache.train.trainer, "train_one_epoch", interrupted_in_epoch_two)
    with pytest.raises(Interrupted):
        train_sections(train_cfg, str(cache_path), tmp_path, show_progress=False)
    monkeypatch.setattr(litcache.train.trainer, "train_one_epoch", real)
    assert [m["epoch"] for m in read_metrics(tmp_path / "metrics.jsonl")] == [0]

    records = train_sections(train_cfg, str(cache_path), tmp_path, resume=True, show_progress=False)
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["loss"] for r in records] == [r["loss"] for r in one_pass["records"][1:]]
    assert [m["epoch"] for m in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1, 2]
    cache = open_cache(str(cache_path))
    assert_same_weights(assemble_student(cache, tmp_path), assemble_student(cache, one_pass["dir"]))

    assert train_sections(train_cfg, str(cache_path), tmp_path, resume=True, show_progress=False) == []
    with pytest.raises(ConfigError, match="3 epochs"):
        train_sections(train_cfg, str(cache_path), tmp_path, epochs=5, resume=True, show_progress=False)


# -- online and cached LIT ------------------------------------------------------------------------------------


def one_batch(cache_path: Path) -> dict[str, torch.Tensor]:
    cache = open_cache(str(cache_path))
    stream = CacheStream(cache, cache.data_arrays(), StreamConfig(batch_size=16, workers=0))
    return next(iter(stream.epoch(1)))  # view 1: augmented inputs


@pytest.mark.parametrize(("dtype", "rtol", "atol"), [("float16", 1e-2, 1e-3), ("float32", 1e-4, 1e-6)])
@pytest.mark.parametrize("beta", [0.0, 0.75])
def test_online_and_cached_lit_give_the_same_loss(
    cache_path: Path, float32_cache: Path, teacher_path: Path, dtype: str, rtol: float, atol: float, beta: float
) -> None:
    path = cache_path if dtype == "float16" else float32_cache
    assert open_cache(str(path)).manifest["store"]["dtype"] == dtype
    batch = one_batch(path)
    teacher, _ = load_model(teacher_path)
    student = build_student(open_cache(str(path)), "resnet8", seed=0)
    student.set_train_mode()
    cached = LitObjective(student, [1, 2, 3], **WEIGHTS, beta=beta)(batch)
    online = LitObjective(student, [1, 2, 3], **WEIGHTS, beta=beta, teacher=teacher.eval())(batch)
    assert cached.keys() == online.keys() == {"loss", *SECTIONS} | ({"kd"} if beta else set())
    for key in cached:
        torch.testing.assert_close(cached[key], online[key], rtol=rtol, atol=atol, msg=key)


def running_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("beta", [0.0, 0.75])
def test_only_the_students_own_forward_updates_running_statistics(cache_path: Path, beta: float) -> None:
    """IR passes on teacher boundaries must not move the BN statistics inference uses when KD runs too."""
    batch = one_batch(cache_path)
    cache = open_cache(str(cache_path))
    student = build_student(cache, "resnet8", seed=0)
    reference = build_student(cache, "resnet8", seed=0)
    student.set_train_mode()
    reference.set_train_mode()
    before = running_stats(student)
    LitObjective(student, [1, 2, 3], **WEIGHTS, beta=beta)(batch)
    after = running_stats(student)
    assert any(not torch.equal(before[k], after[k]) for k in after), "the step updated no running statistic"
    if beta > 0:  # exactly the update of one end-to-end forward
        with torch.no_grad():
            reference(to_unit_float(batch["input"]))
        expected = running_stats(reference)
    else:  # IR only: each section's statistics come from the teacher's boundary, its only input
        with torch.no_grad():
            for k in (1, 2, 3):
                source = reference.stem_output(to_unit_float(batch["input"])) if k == 1 else batch[f"boundary/{k - 1}"]
                reference.run_section(k, source.float())
        expected = running_stats(reference)
    for key in after:
        torch.testing.assert_close(after[key], expected[key], msg=key)
    assert all(m.track_running_stats for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_online_lit_trains_like_cached_lit(
    float32_cache: Path, teacher_path: Path, make_cfg: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = make_cfg("train.device=cpu", "stream.batch_size=16")
    cached = train_sections(cfg, str(float32_cache), tmp_path / "cached", show_progress=False)
    online = train_sections(
        cfg, str(float32_cache), tmp_path / "online", teacher_path=str(teacher_path), show_progress=False
    )
    for key in ("loss", *SECTIONS):
        assert online[-1][key] == pytest.approx(cached[-1][key], rel=1e-3), key
    assert read_metrics(tmp_path / "online" / "metrics.jsonl")[0]["mode"] == "online-lit"


# -- the command line, after the teacher is gone ---------------------------------------------------------------


def test_train_kd_and_evaluate_run_without_the_teacher(orphan_cache: dict[str, Path], data_dir: Path) -> None:
    cache, root = orphan_cache["cache"], orphan_cache["root"]
    assert not orphan_cache["teacher"].exists()
    assert open_cache(str(cache)).manifest["teacher"]["checkpoint"] == str(orphan_cache["teacher"])

    sections = root / "sections"
    result = invoke("train-sections", "-c", cache, "-o", sections, "--epochs", 2, "-q")
    assert result.exit_code == 0, result.output
    lines = read_metrics(sections / "metrics.jsonl")
    assert [m["epoch"] for m in lines] == [0, 1]
    assert all(isinstance(m[k], float) for m in lines for k in SECTIONS)
    assert sorted(p.name for p in sections.glob("section-*.pt")) == ["section-s1.pt", "section-s2.pt", "section-s3.pt"]

    student_path = root / "student.pt"
    result = invoke("kd", "-c", cache, "-s", sections, "-o", student_path, "-q")
    assert result.exit_code == 0, result.output
    student, meta = load_model(student_path)
    assert student.spec["name"] == "resnet8" and meta["mode"] == "lit-kd"
    frozen = frozen_state(open_cache(str(cache)))
    assert all(torch.equal(student.state_dict()[k], v) for k, v in frozen.items())  # the KD pass trains no frozen part

    result = invoke("evaluate", "-m", student_path, "-d", data_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["samples"] == 32 and 0.0 <= report["accuracy"] <= 1.0


@pytest.mark.parametrize(("flag", "mode"), [("--from-scratch", "kd"), ("--labels-only", "scratch")])
def test_kd_baselines_write_checkpoints(orphan_cache: dict[str, Path], tmp_path: Path, flag: str, mode: str) -> None:
    out = tmp_path / "baseline.pt"
    result = invoke("kd", "-c", orphan_cache["cache"], flag, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    model, meta = load_model(out)
    assert meta["mode"] == mode and model.spec["name"] == "resnet8"
    assert read_metrics(tmp_path / "baseline.pt.metrics.jsonl")[0]["mode"] == mode
    frozen = frozen_state(open_cache(str(orphan_cache["cache"])))
    assert not torch.equal(model.net.conv1.weight, frozen["net.conv1.weight"])  # a baseline learns its own stem


@pytest.mark.parametrize("baseline_lr", [None, 0.4])
def test_baselines_train_at_their_own_rate(
    make_cfg: Callable[..., PipelineConfig],
    cache_path: Path,
    one_pass: dict[str, Any],
    tmp_path: Path,
    baseline_lr: float | None,
) -> None:
    # cosine over 2 epochs: the first epoch ends at half the starting rate
    sets = [*TRAIN_SETTINGS, "train.lr=0.05", "kd.lr=0.01", f"train.baseline_lr={baseline_lr or 'null'}"]
    cfg = make_cfg(*sets)
    for labels_only in (False, True):
        out = tmp_path / f"baseline-{labels_only}.pt"
        records = litcache.train.train_end_to_end(
            cfg, str(cache_path), out, labels_only=labels_only, epochs=2, show_progress=False
        )
        assert records[0]["lr"] == pytest.approx((baseline_lr or 0.05) / 2)
    kd_pass = litcache.train.train_end_to_end(
        cfg, str(cache_path), tmp_path / "lit.pt", sections_dir=one_pass["dir"], epochs=2, show_progress=False
    )
    assert kd_pass[0]["lr"] == pytest.approx(0.01 / 2)  # the KD pass keeps kd.lr


def test_kd_needs_sections_or_a_baseline(cache_path: Path, tmp_path: Path) -> None:
    result = invoke("kd", "-c", cache_path, "-o", tmp_path / "s.pt")
    assert result.exit_code == 2 and "Usage" in result.output
    result = invoke("kd", "-c", cache_path, "-s", tmp_path, "--from-scratch", "-o", tmp_path / "s.pt")
    assert result.exit_code == 2 and "Usage" in result.output
    assert not (tmp_path / "s.pt").exists()


def test_section_with_kd_is_refused(cache_path: Path, tmp_path: Path) -> None:
    result = invoke("train-sections", "-c", cache_path, "-o", tmp_path, "--section", 2, "--set", "train.beta=0.5")
    assert_clean_error(result, "beta")
    result = invoke("train-sections", "-c", cache_path, "-o", tmp_path, "--section", 4)
    assert_clean_error(result, "1..3")
    assert not list(tmp_path.glob("section-*.pt"))


# -- caches that do not fit ------------------------------------------------------------------------------------


def test_a_student_that_does_not_fit_the_cache_is_refused(cache_copy: Path, tmp_path: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    manifest = dict(group.attrs["litcache"])
    manifest["teacher"]["boundary_shapes"][2] = [48, 16, 16]
    group.attrs["litcache"] = manifest
    expected = (
        r"boundary 2 \(output of section 2: .*\): the cached teacher \(48, 16, 16\), student resnet8 \(32, 16, 16\)"
    )
    with pytest.raises(CompatibilityError, match=expected):
        build_student(open_cache(str(cache_copy)), "resnet8")
    result = invoke("train-sections", "-c", cache_copy, "-o", tmp_path / "out", "-q")
    assert_clean_error(result, "boundary 2")
    assert "boundary 1" not in result.output and "boundary 3" not in result.output


@pytest.mark.parametrize("command", ["train-sections", "kd"])
def test_a_missing_cache_is_a_clean_error(command: str, tmp_path: Path) -> None:
    extra = ["--from-scratch"] if command == "kd" else []
    result = invoke(command, "-c", tmp_path / "nowhere.zarr", "-o", tmp_path / "out", *extra, "-q")
    assert_clean_error(result, "no cache at", "nowhere.zarr")


@pytest.mark.parametrize("command", ["train-sections", "kd"])
def test_an_incomplete_cache_is_a_clean_error(
    command: str, tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "part.zarr"
    summary = extract(tiny_cfg, str(teacher_path), str(cache), limit=32, max_units=1, show_progress=False)
    assert not summary["complete"]
    extra = ["--labels-only"] if command == "kd" else []
    result = invoke(command, "-c", cache, "-o", tmp_path / "out", *extra, "-q")
    assert_clean_error(result, "incomplete", "--resume")


def test_a_corrupt_chunk_is_a_clean_error(cache_copy: Path, tmp_path: Path) -> None:
    arr = open_cache(str(cache_copy)).array("boundary/2")
    first_chunk = cache_copy / "boundary" / "2" / arr.metadata.encode_chunk_key((0, 0, 0, 0))
    assert first_chunk.is_file()  # rows 0.. are view 0, which the first epoch reads
    first_chunk.write_bytes(b"not a zstd frame" * 8)
    result = invoke("train-sections", "-c", cache_copy, "-o", tmp_path / "out", "-q")
    assert_clean_error(result, "boundary/2", "corrupt", "inspect --verify")
    assert [p for p in open_cache(str(cache_copy)).verify() if "boundary/2 cannot be read" in p]


def test_a_deleted_chunk_is_caught_on_read(cache_copy: Path, tmp_path: Path) -> None:
    # zarr reads a missing chunk as fill values; the stream's reader must refuse to train on them
    arr = open_cache(str(cache_copy)).array("boundary/2")
    key = arr.metadata.encode_chunk_key((0, 0, 0, 0))
    (cache_copy / "boundary" / "2" / key).unlink()
    result = invoke("train-sections", "-c", cache_copy, "-o", tmp_path / "out", "-q")
    assert_clean_error(result, f"boundary/2/{key} is missing", "corrupt", "inspect --verify")
    assert [p for p in open_cache(str(cache_copy)).verify() if "boundary/2 does not match" in p]


@pytest.mark.slow
def test_torchrun_ddp_trains_sections_with_equal_batches(cache_path: Path, tmp_path: Path) -> None:
    # two gloo ranks on the CPU: DDP needs every rank to run the same number of steps, or it hangs
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "litcache",
        "train-sections",
        "-q",
        "-c",
        str(cache_path),
        "-o",
        str(out),
        "--epochs",
        "2",
        "--set",
        "stream.batch_size=16",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]  # rank 0 alone writes
    stream = CacheStream(open_cache(str(cache_path)), ["input"], StreamConfig(batch_size=16, workers=0))
    per_rank = litcache.train.stream.batches_per_rank(litcache.train.stream.epoch_ranges(stream.cache, 0, 0), 2, 16)
    assert records[0]["samples"] == per_rank * 16
    assert done.stdout.count("epoch 2") == 1  # one summary line, from rank 0
    student = assemble_student(open_cache(str(cache_path)), out)
    assert all(torch.isfinite(p).all() for p in student.parameters())


# -- one view counter per run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def four_view_cache(
    tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., PipelineConfig], teacher_path: Path
) -> Path:
    out = tmp_path_factory.mktemp("views4") / "cache.zarr"
    extract(make_cfg("extract.views=4"), str(teacher_path), str(out), limit=32, show_progress=False)
    return out


def spy_on_views(monkeypatch: pytest.MonkeyPatch, samples: int) -> list[set[int]]:
    """Record, per epoch a stream serves, the views its rows belong to (rows are view-major)."""
    seen: list[set[int]] = []
    real = CacheStream.epoch

    def epoch(self: CacheStream, run_epoch: int) -> Any:
        seen.append(set())
        for batch in real(self, run_epoch):
            seen[-1].update((batch["row"] // samples).tolist())
            yield batch

    monkeypatch.setattr(CacheStream, "epoch", epoch)
    return seen


def test_the_kd_pass_continues_the_view_counter_of_the_sections(
    four_view_cache: Path, train_cfg: PipelineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_views(monkeypatch, samples=32)
    sections = tmp_path / "sections"
    train_sections(train_cfg, str(four_view_cache), sections, epochs=2, show_progress=False)
    litcache.train.train_end_to_end(
        train_cfg, str(four_view_cache), tmp_path / "student.pt", sections_dir=sections, epochs=2, show_progress=False
    )
    assert seen == [{0}, {1}, {2}, {3}]  # not 0, 1, 0, 1: every view of the cache is read once
    assert [m["view"] for m in read_metrics(sections / "metrics.jsonl")] == [0, 1]
    kd_lines = read_metrics(tmp_path / "student.pt.metrics.jsonl")
    assert [(m["epoch"], m["run_epoch"], m["view"]) for m in kd_lines] == [(0, 2, 2), (1, 3, 3)]

    seen.clear()  # a baseline is a run of its own: it starts at view 0
    litcache.train.train_end_to_end(
        train_cfg, str(four_view_cache), tmp_path / "kd.pt", student="resnet8", epochs=3, show_progress=False
    )
    assert seen == [{0}, {1}, {2}]


def test_a_resumed_kd_pass_reads_the_views_of_the_uninterrupted_one(
    four_view_cache: Path, train_cfg: PipelineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sections = tmp_path / "sections"
    train_sections(train_cfg, str(four_view_cache), sections, epochs=1, show_progress=False)
    whole = tmp_path / "whole.pt"
    kd = litcache.train.train_end_to_end
    kd(train_cfg, str(four_view_cache), whole, sections_dir=sections, epochs=3, show_progress=False)

    real = litcache.train.trainer.train_one_epoch
    calls: list[int] = []

    def interrupted_in_epoch_two(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    part = tmp_path / "part.pt"
    monkeypatch.setattr(litcache.train.trainer, "train_one_epoch", interrupted_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        kd(train_cfg, str(four_view_cache), part, sections_dir=sections, epochs=3, show_progress=False)
    monkeypatch.setattr(litcache.train.trainer, "train_one_epoch", real)
    seen = spy_on_views(monkeypatch, samples=32)
    records = kd(
        train_cfg, str(four_view_cache), part, sections_dir=sections, epochs=3, resume=True, show_progress=False
    )
    assert seen == [{2}, {3}] and [r["view"] for r in records] == [2, 3]
    assert [m["view"] for m in read_metrics(part.with_name("part.pt.metrics.jsonl"))] == [1, 2, 3]
    assert_same_weights(load_model(part)[0], load_model(whole)[0])


def test_resume_refuses_a_training_state_of_another_cache_or_student(
    one_pass: dict[str, Any], train_cfg: PipelineConfig, four_view_cache: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sections"
    shutil.copytree(one_pass["dir"], out)  # a finished run: its state says epoch 2 of 3, cache_path's
    with pytest.raises(CompatibilityError, match="was trained from another cache .* resume with the cache"):
        train_sections(train_cfg, str(four_view_cache), out, resume=True, show_progress=False)
    with pytest.raises(CompatibilityError, match="was trained for student resnet8, this run trains resnet14"):
        train_sections(train_cfg, str(cache_path), out, student="resnet14", resume=True, show_progress=False)
    (out / "train-state-all.pt").write_bytes(b"not a state")
    with pytest.raises(litcache.CheckpointError, match="truncated or corrupt"):
        train_sections(train_cfg, str(cache_path), out, resume=True, show_progress=False)
