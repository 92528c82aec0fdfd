"""Bad data: each case is a one-line DataError naming the shard and the sample, never a traceback, and what an
extraction wrote before it stays recorded and resumable."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import encode

from litcache import open_cache
from litcache.cli.main import main
from litcache.config import DataConfig, load_pipeline
from litcache.data import load_images
from litcache.errors import CompatibilityError, DataError
from litcache.extract import extract

Members = list[tuple[str, bytes]]


def _samples(dataset: dict, n: int = 8) -> Members:
    members = []
    for i in range(n):
        members += [
            (f"train_{i:05d}.png", encode(dataset["train_images"][i])),
            (f"train_{i:05d}.cls", b"%d" % (i % 10)),
        ]
    return members


def _tar_bytes(members: Members) -> bytes:
    path_buf = io.BytesIO()
    with tarfile.open(fileobj=path_buf, mode="w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path_buf.getvalue()


def _member_end(data: bytes, name: str) -> int:
    """Where member ``name``'s data ends, padded to the tar block."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for m in tar:
            if m.name == name:
                return m.offset_data + -(-m.size // 512) * 512
    raise KeyError(name)


def _replace(members: Members, name: str, payload: bytes | None) -> Members:
    return [(n, payload if n == name else p) for n, p in members if not (n == name and payload is None)]


def _truncated(image: np.ndarray, fmt: str) -> bytes:
    data = encode(image, fmt)
    return data[: len(data) * 9 // 10]  # the header reads, the pixels do not


def _bad_checksum_png(image: np.ndarray) -> bytes:
    data = bytearray(encode(image))
    data[len(data) // 2] ^= 0xFF  # inside the pixel data: its CRC no longer matches (torchvision 0.29 crashed here)
    return bytes(data)


CORRUPT = {
    "truncated png": lambda im: _truncated(im, "PNG"),
    "png with a bad checksum": _bad_checksum_png,
    "truncated jpeg": lambda im: _truncated(im, "JPEG"),
}


def _write_raw(folder: Path, data: bytes) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "train-0.tar").write_bytes(data)


# every case: (bytes of train-0.tar from the dataset, extra settings) -> fragments the one-line error holds
CASES: dict[str, tuple[Callable[[dict], bytes], list[str], list[str]]] = {
    "truncated mid-member": (
        lambda d: _tar_bytes(_samples(d))[: _member_end(_tar_bytes(_samples(d)), "train_00003.cls") + 700],
        [],
        ["train-0.tar is truncated after sample 'train_00003'"],
    ),
    "truncated between members": (
        lambda d: _tar_bytes(_samples(d))[: _member_end(_tar_bytes(_samples(d)), "train_00005.cls")],
        [],
        ["train-0.tar is truncated after sample 'train_00005'", "before an end-of-archive marker"],
    ),
    "corrupt header": (
        lambda d: (lambda b, at: b[:at] + b"\x07" * 512 + b[at + 512 :])(
            _tar_bytes(_samples(d)), _member_end(_tar_bytes(_samples(d)), "train_00002.cls")
        ),
        [],
        ["train-0.tar is corrupt after sample 'train_00002'", "no end-of-archive marker"],
    ),
    "not a tar file": (
        lambda d: b"this is no tar file" * 100,
        [],
        ["train-0.tar is corrupt at its start"],
    ),
    "undecodable image": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00001.png", b"not a png")),
        [],
        ["train-0.tar, sample 'train_00001': cannot read the image"],
    ),
    "sample without a label": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00004.cls", None)),
        [],
        ["train-0.tar, sample 'train_00004' has no label (.cls)"],
    ),
    "sample without an image": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00004.png", None)),
        [],
        ["train-0.tar, sample 'train_00004' has no image"],
    ),
    "label that is not a number": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00006.cls", b"cat")),
        [],
        ["train-0.tar, sample 'train_00006': the .cls label is not an integer"],
    ),
    "label outside the classes": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00002.cls", b"7")),
        ["data.num_classes=5"],
        ["train-0.tar, sample 'train_00002': label 7 is outside 0..4 (data.num_classes is 5)"],
    ),
    "negative label": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00003.cls", b"-1")),
        [],
        ["train-0.tar, sample 'train_00003': label -1 is outside"],
    ),
    "images of different sizes": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00005.png", encode(np.zeros((40, 32, 3), np.uint8)))),
        [],
        ["train-0.tar, sample 'train_00005': the image is 40x32", "sample 'train_00000' is 32x32", "pad-crop-flip"],
    ),
    "images of different sizes in memory": (
        lambda d: _tar_bytes(_replace(_samples(d), "train_00005.png", encode(np.zeros((40, 32, 3), np.uint8)))),
        ["data.in_memory=true", "data.transform=random-resized-crop", "data.size=16", "data.eval_resize=16"],
        ["train-0.tar, sample 'train_00005': the image is 40x32", "data.in_memory=true needs images of one size"],
    ),
}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not an escaped exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()  # a resumed run says what it skipped before the error
    assert lines[-1].startswith("Error: ") and not any(line.startswith("Error: ") for line in lines[:-1]), lines
    for fragment in fragments:
        assert fragment in lines[-1]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_a_one_line_error_naming_the_shard_and_sample(
    case: str, dataset: dict, teacher_path: Path, tmp_path: Path
) -> None:
    make, settings, fragments = CASES[case]
    _write_raw(tmp_path / "data", make(dataset))
    overrides = [f"data.index_dir={json.dumps(str(tmp_path / 'index'))}", *settings]
    cfg = load_pipeline("tiny", [f"data.source={json.dumps(str(tmp_path / 'data'))}", *overrides])
    with pytest.raises(DataError) as exc:
        load_images(cfg.data, "train")
    for fragment in fragments:
        assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)
    sets = [a for o in overrides for a in ("--set", o)]
    result = run("extract", "-t", teacher_path, "-d", tmp_path / "data", "-o", tmp_path / "c.zarr", "-q", *sets)
    assert_one_line_error(result, str(tmp_path / "data" / "train-0.tar"), *fragments)
    assert not (tmp_path / "c.zarr").exists()  # found before anything was written


def test_labels_beyond_the_teachers_classes_name_the_sample(dataset: dict, teacher_path: Path, tmp_path: Path) -> None:
    members = _replace(_samples(dataset), "train_00006.cls", b"12")  # the teacher has 10 classes
    _write_raw(tmp_path / "data", _tar_bytes(members))
    cfg = load_pipeline("tiny", [f"data.source={json.dumps(str(tmp_path / 'data'))}", 'data.index_dir=""'])
    with pytest.raises(CompatibilityError, match="train-0.tar, sample 'train_00006' has label 12"):
        extract(cfg, str(teacher_path), str(tmp_path / "c.zarr"), show_progress=False)


def test_an_image_folder_names_the_bad_file(dataset: dict, tmp_path: Path) -> None:
    (tmp_path / "ds" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "cat" / "a.png").write_bytes(encode(dataset["train_images"][0]))
    (tmp_path / "ds" / "train" / "cat" / "b.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"image folder .*/ds/train, file cat/b.png: cannot read the image"):
        load_images(DataConfig(source=str(tmp_path / "ds"), index_dir=""), "train")
    (tmp_path / "ds" / "train" / "cat" / "b.png").unlink()
    (tmp_path / "ds" / "test" / "dog").mkdir(parents=True)
    (tmp_path / "ds" / "test" / "dog" / "c.png").write_bytes(encode(dataset["train_images"][1]))
    with pytest.raises(DataError, match="file dog/c.png: class folder 'dog' is not one of \\['cat'\\]"):
        load_images(DataConfig(source=str(tmp_path / "ds"), index_dir=""), "test")


@pytest.mark.parametrize("corrupt", list(CORRUPT))
def test_a_decode_error_mid_extraction_keeps_the_written_units(
    corrupt: str, dataset: dict, teacher_path: Path, tmp_path: Path
) -> None:
    """An image whose header reads but whose pixels do not is found when its unit is made: the units before it
    stay written and recorded, and --resume continues (and stops at the same sample while it is broken)."""
    members = _samples(dataset, 64)
    members = _replace(members, "train_00040.png", CORRUPT[corrupt](dataset["train_images"][40]))
    _write_raw(tmp_path / "data", _tar_bytes(members))
    args = ["-t", teacher_path, "-d", tmp_path / "data", "-o", tmp_path / "c.zarr", "-q"]
    sets = ["--set", f"data.index_dir={json.dumps(str(tmp_path / 'index'))}", "--set", "extract.batch_size=16"]
    result = run("extract", *args, *sets)
    assert_one_line_error(result, "train-0.tar, sample 'train_00040': cannot decode the image")
    cache = open_cache(str(tmp_path / "c.zarr"))
    done = cache.done_units()
    assert done[:2].all() and not done[2:].any()  # one unit of 16 rows a step: units 0-1 were written
    problems = cache.verify()  # units 0-1 check against their records; 2-7 are missing, nothing else is wrong
    assert not cache.complete and len(problems) == 6 and all(p.endswith("not written") for p in problems)
    assert [int(p.split()[1].rstrip(":")) for p in problems] == list(range(2, 8))
    result = run("extract", *args, *sets, "--resume")
    assert_one_line_error(result, "sample 'train_00040': cannot decode the image")
    assert open_cache(str(tmp_path / "c.zarr")).done_units().sum() == 2


def test_data_changed_after_indexing_stops_and_resumes_once_restored(
    data_dir: Path, teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    """A shard that changes under a running extraction (a partial copy, a bad disk) is caught by the index's
    CRC-32 of each image; restored, the extraction resumes to the cache an uninterrupted run makes."""
    folder = tmp_path / "data"
    shutil.copytree(data_dir, folder)
    index = f"data.index_dir={json.dumps(str(tmp_path / 'ix'))}"
    cfg = load_pipeline("tiny", [f"data.source={json.dumps(str(folder))}", index, "store.bits=0"])  # as cache_path
    out = tmp_path / "c.zarr"
    extract(cfg, str(teacher_path), str(out), max_units=2, show_progress=False)
    shard = folder / "train-0.tar"
    original, stat = shard.read_bytes(), shard.stat()
    with tarfile.open(shard) as tar:
        member = tar.getmember("train_00040.png")
    broken = bytearray(original)
    broken[member.offset_data + member.size // 2] ^= 0xFF
    shard.write_bytes(bytes(broken))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: the index is reused
    with pytest.raises(DataError, match="sample 'train_00040': the image's bytes changed since the data was indexed"):
        extract(cfg, str(teacher_path), str(out), resume=True, show_progress=False)
    assert open_cache(str(out)).done_units().sum() == 2
    shard.write_bytes(original)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert extract(cfg, str(teacher_path), str(out), resume=True, show_progress=False)["complete"]
    resumed, whole = open_cache(str(out)), open_cache(str(cache_path))
    for name in whole.data_arrays():
        assert np.array_equal(resumed.array(name)[:], whole.array(name)[:]), name


def test_a_shard_that_shrank_since_indexing_names_the_sample(dataset: dict, tmp_path: Path) -> None:
    data = _tar_bytes(_samples(dataset))
    _write_raw(tmp_path / "data", data)
    cfg = DataConfig(source=str(tmp_path / "data"), index_dir=str(tmp_path / "ix"))
    images = load_images(cfg, "train")
    shard = tmp_path / "data" / "train-0.tar"
    shard.write_bytes(data[: _member_end(data, "train_00002.cls")])
    with pytest.raises(DataError, match="sample 'train_00006': the shard is truncated: it ends before byte"):
        images.read(np.array([6, 7]))
