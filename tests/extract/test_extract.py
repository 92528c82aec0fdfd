from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr

from litcache import load_images, load_model, make_views, open_cache, save_model
from litcache.cache.codecs import bitround
from litcache.cache.writer import CacheWriter, open_writer
from litcache.config import PipelineConfig
from litcache.data import to_unit_float
from litcache.errors import CacheError, CompatibilityError
from litcache.extract import extract
from litcache.extract.on_device import round_mantissa
from litcache.models import build_model
from litcache.models.checkpoint import fingerprint_state

ROW_ARRAYS = ["rows/sample", "rows/view", "rows/label", "input", "boundary/1", "boundary/2", "boundary/3", "logits"]


def all_arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: node[...] for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


ROUNDED = 2**-7  # boundaries keep 7 mantissa bits by default: one unit in the last kept place, relative


def test_cache_equals_a_fresh_teacher_forward(cache_path: Path, tiny_cfg: PipelineConfig, teacher_path: Path) -> None:
    cache = open_cache(str(cache_path))
    images = load_images(tiny_cfg.data, "train")
    n, views = len(images), tiny_cfg.extract.views
    rows = np.arange(n * views)
    samples, view_of_row = rows % n, rows // n  # view-major
    x = make_views(images, tiny_cfg.data, tiny_cfg.extract.seed, samples, view_of_row)
    teacher, _ = load_model(teacher_path)
    with torch.no_grad():
        bounds, logits = teacher.forward_boundaries(to_unit_float(x))

    assert cache.rows == n * views and cache.samples == n and cache.views == views
    assert np.array_equal(cache.array("rows/sample")[:], samples)
    assert np.array_equal(cache.array("rows/view")[:], view_of_row)
    assert np.array_equal(cache.array("rows/label")[:], images.labels[samples])
    assert np.array_equal(cache.array("input")[:], x.numpy())
    plain = np.stack(images.read(np.arange(4))).transpose(0, 3, 1, 2)  # every view is augmented (no plain_view0)
    assert not any(np.array_equal(cache.array("input")[i], plain[i]) for i in range(4))
    for k in range(1, 4):
        stored = cache.array(f"boundary/{k}")[:]
        assert stored.dtype == np.float16 and stored.shape == (n * views, *bounds[k].shape[1:])
        np.testing.assert_allclose(stored.astype(np.float32), bounds[k].numpy(), rtol=ROUNDED, atol=2e-3)
    stored_logits = cache.array("logits")[:]
    assert stored_logits.dtype == np.float32
    np.testing.assert_allclose(stored_logits, logits.numpy(), rtol=1e-4, atol=1e-4)


def test_the_teachers_memory_format_does_not_change_the_cache(
    cache_path: Path, make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    """extract.channels_last (the default) only changes how the teacher computes: same rows, same NCHW layout."""
    assert make_cfg().extract.channels_last
    nchw = tmp_path / "nchw.zarr"
    extract(make_cfg("extract.channels_last=false"), str(teacher_path), str(nchw), show_progress=False)
    default, plain = open_cache(str(cache_path)), open_cache(str(nchw))
    assert default.manifest["teacher"]["fingerprint"] == plain.manifest["teacher"]["fingerprint"]
    assert default.boundary_shapes() == plain.boundary_shapes()
    for name in ROW_ARRAYS:
        a, b = default.array(name)[:], plain.array(name)[:]
        if name.startswith("boundary/") or name == "logits":  # convolution order differs: rounding only
            np.testing.assert_allclose(
                a.astype(np.float32), b.astype(np.float32), rtol=ROUNDED, atol=2e-3, err_msg=name
            )
        else:
            assert np.array_equal(a, b), name
    stem, plain_stem = dict(_small(default, "frozen")), dict(_small(plain, "frozen"))
    assert stem.keys() == plain_stem.keys()
    for name in stem:
        assert np.array_equal(stem[name][...], plain_stem[name][...]), name


def test_cached_stem_and_input_recompute_boundary_zero(cache_path: Path, teacher_path: Path) -> None:
    cache = open_cache(str(cache_path))
    teacher, _ = load_model(teacher_path)
    student = build_model("resnet14").eval()  # another depth: only the parts outside the sections are copied
    frozen = {
        k.removeprefix("teacher/frozen/"): torch.from_numpy(np.asarray(a[...])) for k, a in _small(cache, "frozen")
    }
    assert frozen.keys() == teacher.frozen_state().keys() and "normalize.mean" in frozen and "net.fc.weight" in frozen
    student.load_frozen(frozen)
    x = to_unit_float(torch.from_numpy(cache.array("input")[:16]))
    with torch.no_grad():
        b0 = student.stem_output(x)
        assert torch.equal(b0, teacher.stem_output(x))
        b1 = teacher.run_section(1, b0)
        b3 = torch.from_numpy(cache.array("boundary/3")[:16]).float()
        logits = student.net.fc(torch.flatten(student.net.avgpool(b3), 1))  # the frozen head on the cached b3
    np.testing.assert_allclose(cache.array("boundary/1")[:16].astype(np.float32), b1.numpy(), rtol=ROUNDED, atol=2e-3)
    np.testing.assert_allclose(cache.array("logits")[:16], logits.numpy(), rtol=1e-2, atol=1e-2)


def _small(cache, part: str) -> list[tuple[str, zarr.Array]]:
    return [
        (name, node)
        for name, node in cache.group.members(max_depth=None)
        if isinstance(node, zarr.Array) and name.startswith(f"teacher/{part}/")
    ]


def test_manifest_describes_the_cache(cache_path: Path, teacher_path: Path, tiny_cfg: PipelineConfig) -> None:
    m = open_cache(str(cache_path)).manifest
    teacher, _ = load_model(teacher_path)
    images = load_images(tiny_cfg.data, "train")
    assert m["format"] == "litcache-cache" and m["format_version"] == 4
    assert m["complete"] is True
    assert m["teacher"]["model"] == teacher.spec and m["teacher"]["model"]["name"] == "resnet8"
    assert m["teacher"]["fingerprint"] == fingerprint_state(teacher.state_dict())
    assert m["teacher"]["sections"] == ["layer1", "layer2", "layer3"]
    assert m["teacher"]["boundary_shapes"] == [[16, 32, 32], [16, 32, 32], [32, 16, 16], [64, 8, 8]]
    # b0 (16x32x32 float16, 32 KB) is bigger than the input (3x32x32 uint8): recomputed by the frozen stem
    assert m["teacher"]["b0"] == "recomputed" and "boundary/0" not in m["progress_arrays"]
    assert (m["teacher"]["output"], m["teacher"]["output_shape"]) == ("logits", [10])
    assert m["data"]["fingerprint"] == images.fingerprint() and m["data"]["samples"] == 64
    assert (m["views"], m["seed"], m["rows"]) == (2, 0, 128)
    assert m["transform"] == {"kind": "pad-crop-flip", "pad": 4, "flip": True, "plain_view0": False}
    assert m["store"] == tiny_cfg.to_dict()["store"]
    assert m["input"] == "stored"
    assert PipelineConfig.from_dict(m["pipeline"]) == tiny_cfg
    assert m["progress_arrays"] == ROW_ARRAYS
    assert len(m["boundary_stats"]) == 3


@pytest.fixture(scope="module")
def partial_cache(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: PipelineConfig, teacher_path: Path) -> Path:
    """The tiny cache with 2 of its 8 units written; tests may try to resume it but must leave it unchanged."""
    out = tmp_path_factory.mktemp("partial") / "c.zarr"
    extract(tiny_cfg, str(teacher_path), str(out), max_units=2, show_progress=False)
    return out


@pytest.mark.parametrize("first_units", [3, 5])  # 4 units per teacher batch: the resumed batches are shifted
def test_interrupted_then_resumed_equals_uninterrupted(
    cache_path: Path, tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path, first_units: int
) -> None:
    out = tmp_path / "resumed.zarr"
    part = extract(tiny_cfg, str(teacher_path), str(out), max_units=first_units, show_progress=False)
    assert part["units_written"] == first_units and not part["complete"]
    partial = open_cache(str(out))
    assert not partial.complete and partial.manifest["complete"] is False
    assert partial.done_units().sum() == first_units

    rest = extract(tiny_cfg, str(teacher_path), str(out), resume=True, show_progress=False)
    assert rest["units_written"] == 8 - first_units and rest["complete"]

    resumed, reference = all_arrays(out), all_arrays(cache_path)
    assert resumed.keys() == reference.keys()
    assert {"progress/units", "progress/stats", *ROW_ARRAYS} <= resumed.keys()
    for name in reference:
        assert np.array_equal(resumed[name], reference[name]), name
    m_resumed, m_reference = open_cache(str(out)).manifest, open_cache(str(cache_path)).manifest
    assert m_resumed["complete"] is True
    assert m_resumed["boundary_stats"] == m_reference["boundary_stats"]


def test_resuming_a_complete_cache_writes_nothing(cache_copy: Path, tiny_cfg: PipelineConfig, teacher_path) -> None:
    before = all_arrays(cache_copy)
    summary = extract(tiny_cfg, str(teacher_path), str(cache_copy), resume=True, show_progress=False)
    assert summary["units_written"] == 0 and summary["complete"]
    after = all_arrays(cache_copy)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("overrides", "limit", "named"),
    [
        (["extract.views=3"], None, "views: cache has 2, this run has 3"),
        (["extract.seed=1"], None, "seed: cache has 0, this run has 1"),
        (["data.flip=false"], None, "transform"),
        (["store.dtype=float32"], None, "store"),
        (["store.codec=zstd"], None, "'codec': 'zstd'"),
        (["extract.channels_last=false"], None, "compute: cache has {'device': 'cpu', 'channels_last': True"),
        (
            ["extract.batch_size=32"],
            None,
            "'batch_size': 64}, this run has {'device': 'cpu', 'channels_last': True, 'batch_size': 32}",
        ),
        ([], 32, "data"),
    ],
)
def test_resume_with_other_settings_is_refused(
    make_cfg: Callable[..., PipelineConfig],
    teacher_path: Path,
    partial_cache: Path,
    overrides: list[str],
    limit: int | None,
    named: str,
) -> None:
    before = all_arrays(partial_cache)
    with pytest.raises(CacheError, match="cannot resume") as exc:
        extract(
            make_cfg(*overrides), str(teacher_path), str(partial_cache), resume=True, limit=limit, show_progress=False
        )
    assert named in str(exc.value)
    assert "--overwrite" in str(exc.value)
    after = all_arrays(partial_cache)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing was written


def test_resume_with_another_teacher_is_refused(
    tiny_cfg: PipelineConfig, teacher_path: Path, partial_cache: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_model(build_model("resnet8"), other)
    with pytest.raises(CacheError, match="teacher: cache has"):
        extract(tiny_cfg, str(other), str(partial_cache), resume=True, show_progress=False)
    out = tmp_path / "c.zarr"
    shutil.copytree(partial_cache, out)
    same_weights = tmp_path / "copy.pt"  # the same teacher under another file name resumes
    shutil.copy(teacher_path, same_weights)
    assert extract(tiny_cfg, str(same_weights), str(out), resume=True, show_progress=False)["complete"]


def test_existing_cache_is_not_overwritten_without_overwrite(
    cache_copy: Path, tiny_cfg: PipelineConfig, teacher_path: Path
) -> None:
    before = all_arrays(cache_copy)
    with pytest.raises(CacheError) as exc:
        extract(tiny_cfg, str(teacher_path), str(cache_copy), show_progress=False)
    assert "--resume" in str(exc.value) and "--overwrite" in str(exc.value)
    with pytest.raises(CacheError, match="contradict"):
        extract(tiny_cfg, str(teacher_path), str(cache_copy), resume=True, overwrite=True, show_progress=False)
    after = all_arrays(cache_copy)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_overwrite_replaces_a_cache(
    cache_copy: Path, make_cfg: Callable[..., PipelineConfig], teacher_path: Path
) -> None:
    (cache_copy / "stray-file").write_text("left over")
    summary = extract(
        make_cfg("extract.views=1"), str(teacher_path), str(cache_copy), overwrite=True, show_progress=False
    )
    assert summary["complete"]
    cache = open_cache(str(cache_copy))
    assert cache.views == 1 and cache.rows == 64
    assert not (cache_copy / "stray-file").exists()


def test_overwrite_with_a_bad_teacher_keeps_the_cache(
    cache_copy: Path, tiny_cfg: PipelineConfig, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="does not exist"):
        extract(tiny_cfg, str(tmp_path / "typo.pt"), str(cache_copy), overwrite=True, show_progress=False)
    assert open_cache(str(cache_copy)).complete


def test_a_creation_cut_short_is_refused_by_readers_and_replaced_by_overwrite(
    tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cut.zarr"
    created = []
    real_create = zarr.Group.create_array

    def crash_on_third(self: zarr.Group, *args: Any, **kwargs: Any) -> zarr.Array:
        if len(created) == 2:
            raise KeyboardInterrupt  # the job is killed while the arrays are being created
        created.append(1)
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract(tiny_cfg, str(teacher_path), str(out), show_progress=False)
    monkeypatch.undo()
    assert out.is_dir()
    with pytest.raises(CacheError, match="interrupted while its arrays were being created"):
        open_cache(str(out))
    for flags in ({}, {"resume": True}):
        with pytest.raises(CacheError, match="--overwrite"):
            extract(tiny_cfg, str(teacher_path), str(out), show_progress=False, **flags)
    assert extract(tiny_cfg, str(teacher_path), str(out), overwrite=True, show_progress=False)["complete"]
    assert open_cache(str(out)).verify() == []


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_folder_that_is_not_a_cache_is_never_deleted(
    tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path, flags: dict[str, bool]
) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(CacheError, match="not a litcache cache"):
        extract(tiny_cfg, str(teacher_path), str(folder), show_progress=False, **flags)
    assert (folder / "thesis.tex").read_text() == "years of work"
    plain_zarr = tmp_path / "plain.zarr"
    zarr.open_group(str(plain_zarr), mode="w").create_array("x", shape=(4,), dtype="int8")
    with pytest.raises(CacheError, match="not a litcache cache"):
        extract(tiny_cfg, str(teacher_path), str(plain_zarr), show_progress=False, **flags)
    assert (plain_zarr / "x" / "zarr.json").is_file()


def test_an_empty_output_folder_is_used(tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.zarr"
    out.mkdir()
    assert extract(tiny_cfg, str(teacher_path), str(out), limit=16, show_progress=False)["complete"]


def test_float16_overflow_says_to_use_float32(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    teacher, _ = load_model(teacher_path)
    with torch.no_grad():
        teacher.net.conv1.weight.mul_(1e6)  # stem activations far beyond float16's 65504
    loud = tmp_path / "loud.pt"
    save_model(teacher, loud)
    with pytest.raises(CacheError, match="store.dtype=float32") as exc:
        extract(make_cfg(), str(loud), str(tmp_path / "c16.zarr"), limit=16, show_progress=False)
    assert "boundary 1" in str(exc.value)

    out = tmp_path / "c32.zarr"
    extract(make_cfg("store.dtype=float32"), str(loud), str(out), limit=16, show_progress=False)
    b1 = open_cache(str(out)).array("boundary/1")[:]
    assert b1.dtype == np.float32 and np.isfinite(b1).all() and np.abs(b1).max() > 65504


def test_teacher_and_data_must_agree_on_classes(make_cfg: Any, tmp_path: Path) -> None:
    path = tmp_path / "t100.pt"
    save_model(build_model("resnet8", num_classes=100), path)
    with pytest.raises(CompatibilityError, match="100 classes"):
        extract(make_cfg("data.num_classes=10"), str(path), str(tmp_path / "c.zarr"), show_progress=False)
    assert not (tmp_path / "c.zarr").exists()
    small = tmp_path / "t5.pt"
    save_model(build_model("resnet8", num_classes=5), small)  # labels 0..9 do not fit 5 classes
    with pytest.raises(CompatibilityError, match="5 classes"):
        extract(make_cfg(), str(small), str(tmp_path / "c5.zarr"), show_progress=False)


def test_a_limited_subset_takes_the_teachers_class_count(make_cfg: Any, teacher_path: Path, tmp_path: Path) -> None:
    # the first 4 samples carry labels 0..3 only; the cache must still describe the 10-class teacher
    out = tmp_path / "c.zarr"
    extract(make_cfg(), str(teacher_path), str(out), limit=4, show_progress=False)
    cache = open_cache(str(out))
    assert cache.manifest["teacher"]["num_classes"] == 10
    assert cache.array("logits").shape[1] == 10


@pytest.mark.parametrize("keepbits", [0, 1, 3, 7, 9, 10])
def test_round_mantissa_is_numcodecs_bitround_bit_for_bit_float16(keepbits: int) -> None:
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)  # all float16s: ties, subnormals, inf, nan
    got = round_mantissa(torch.from_numpy(every.copy()), keepbits).numpy()
    assert np.array_equal(got.view(np.uint16), bitround(every, keepbits).view(np.uint16))


@pytest.mark.parametrize("keepbits", [1, 7, 12, 22])
def test_round_mantissa_is_numcodecs_bitround_bit_for_bit_float32(keepbits: int) -> None:
    bits = np.random.default_rng(keepbits).integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    got = round_mantissa(torch.from_numpy(x.copy()), keepbits).numpy()
    assert np.array_equal(got.view(np.uint32), bitround(x, keepbits).view(np.uint32))


def test_a_rounding_writer_checksums_what_it_stores_without_reading_back(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rounded.zarr"
    extract(make_cfg("store.bitround_keepbits=5"), str(teacher_path), str(out), show_progress=False)
    writer = open_writer(str(out))
    assert isinstance(writer, CacheWriter) and writer.keepbits("boundary/1") == 5 and writer.keepbits("logits") == 0
    s, e = writer.unit_rows(0)
    arrays = writer.read(writer.data_arrays(), s, e)
    unrounded = {k: v + np.float16(2**-9) if k.startswith("boundary/") else v for k, v in arrays.items()}

    def no_reads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the writer read data back")

    with monkeypatch.context() as patch:
        patch.setattr(zarr.Array, "__getitem__", no_reads)
        writer.write_unit(0, unrounded)
    stored = open_cache(str(out)).read(["boundary/1"], s, e)["boundary/1"]
    assert np.array_equal(stored, bitround(unrounded["boundary/1"], 5))
    assert not np.array_equal(stored, unrounded["boundary/1"])
    assert writer.verify([0]) == []  # the record's checksums are of the rounded, stored values
    stats = zarr.open_group(str(out))["progress/stats"][0]
    assert stats[0, 2] == np.abs(stored.astype(np.float64)).max()


@pytest.mark.parametrize(
    ("poison", "dtype", "message"),
    [
        ("net.layer2.0.conv1.weight", "float16", r"boundary 2 \(rows 0\.\.\d+, unit 0\) holds NaN"),
        ("net.layer2.0.conv1.weight", "float32", r"boundary 2 \(rows 0\.\.\d+, unit 0\) holds NaN"),
        ("net.fc.bias", "float16", r"logits \(rows 0\.\.15, unit 0\) holds Inf"),
    ],
)
def test_nan_and_inf_from_the_teacher_are_refused(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path, poison: str, dtype: str, message: str
) -> None:
    teacher, _ = load_model(teacher_path)
    with torch.no_grad():
        teacher.state_dict()[poison].view(-1)[0] = float("nan") if "conv" in poison else float("inf")
    broken = tmp_path / "broken.pt"
    save_model(teacher, broken)
    out = tmp_path / "c.zarr"
    with pytest.raises(CacheError, match=message + " values: the checkpoint is broken or the teacher diverged"):
        extract(make_cfg(f"store.dtype={dtype}"), str(broken), str(out), limit=16, show_progress=False)
    assert not open_writer(str(out)).done_units().any()  # nothing vouched for


def test_resume_refuses_a_cache_written_by_another_litcache_version(
    tiny_cfg: PipelineConfig, teacher_path: Path, partial_cache: Path
) -> None:
    group = zarr.open_group(str(partial_cache), mode="r+")
    group.attrs["litcache"] = {**group.attrs["litcache"], "litcache_version": "0.0.9"}
    with pytest.raises(CacheError, match="litcache version: the cache was written by 0.0.9, this is 0.1.0"):
        extract(tiny_cfg, str(teacher_path), str(partial_cache), resume=True, show_progress=False)
    assert open_writer(str(partial_cache)).manifest["litcache_version"] == "0.0.9"  # left as it was


class FullDisk:
    """LocalStore.set that fails with ENOSPC once ``budget`` bytes are written (None: never)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import zarr.storage

        self.budget: int | None = None
        self.written = 0
        real = zarr.storage.LocalStore.set

        async def set(store: Any, key: str, value: Any) -> None:
            if self.budget is not None and self.written + len(value) > self.budget:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(value)
            await real(store, key, value)

        monkeypatch.setattr(zarr.storage.LocalStore, "set", set)


def test_a_full_disk_is_one_line_and_the_cache_resumes_once_there_is_room(
    tiny_cfg: PipelineConfig, teacher_path: Path, cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from litcache.cli.main import main

    disk = FullDisk(monkeypatch)
    out = tmp_path / "c.zarr"
    args = [
        "extract",
        "-t",
        str(teacher_path),
        "-d",
        tiny_cfg.data.source,
        "-o",
        str(out),
        "-q",
        "--set",
        "store.bits=0",
    ]
    disk.budget = 0  # full from the start: nothing to resume, start again
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write the new cache's arrays" in result.output and "--overwrite" in result.output
    disk.budget = None
    extract(tiny_cfg, str(teacher_path), str(tmp_path / "whole.zarr"), show_progress=False)
    whole = disk.written
    disk.budget, disk.written = whole // 2, 0  # room for the arrays and about half of the units
    result = CliRunner().invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "no space left on device; what was written before is kept" in result.output and "--resume" in result.output
    done = open_writer(str(out)).done_units()
    assert 0 < done.sum() < len(done)  # some units made it, and say so
    disk.budget = None  # space is back
    assert extract(tiny_cfg, str(teacher_path), str(out), resume=True, show_progress=False)["complete"]
    expected, got = all_arrays(cache_path), all_arrays(out)
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)  # as if the disk had never been full


def test_a_plain_state_dict_teacher_is_sized_by_the_whole_split_not_the_limits_samples(
    dataset: dict[str, Any], tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path
) -> None:
    """--limit N keeps the first N samples, which may lack the top labels: the classifier of a plain state dict is
    sized by the whole split's classes (it was refused as not fitting a head of the subset's size)."""
    from litcache.train.supervised import evaluate_checkpoint

    labels = np.asarray(dataset["train_labels"])
    limit = int(np.argmax(np.maximum.accumulate(labels) == labels.max()))  # the first samples lack the top label
    assert limit >= 1 and labels[:limit].max() < labels.max()
    plain = tmp_path / "plain.pth"
    torch.save(load_model(teacher_path)[0].net.state_dict(), plain)  # a user's own weights, no litcache record
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    extract(tiny_cfg, str(teacher_path), a, limit=limit, show_progress=False)
    extract(tiny_cfg, str(plain), b, limit=limit, show_progress=False)
    assert np.array_equal(open_cache(a).array("logits")[:], open_cache(b).array("logits")[:])
    test_labels = np.asarray(dataset["test_labels"])
    few = int(np.argmax(np.maximum.accumulate(test_labels) == test_labels.max()))
    assert evaluate_checkpoint(str(plain), tiny_cfg, limit=max(few, 1))["samples"] == max(few, 1)
