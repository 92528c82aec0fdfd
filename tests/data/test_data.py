"""Sources, the sample index and splits opened streamed or in memory (views: test_data_views.py; bad data:
test_data_errors.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import encode, write_members, write_shard

import litcache.data.images
import litcache.data.index
from litcache import build_model, open_cache, save_model
from litcache.config import DataConfig, ModelConfig, PipelineConfig, load_pipeline
from litcache.data import ImageSet, forget_opened, iter_views, load_images, make_views, shard_paths
from litcache.errors import ConfigError, DataError
from litcache.extract import extract
from litcache.train.loop import evaluate


@pytest.fixture(scope="module")
def images(tiny_cfg: PipelineConfig) -> ImageSet:
    return load_images(tiny_cfg.data, "train")


def _pixels(images: ImageSet) -> np.ndarray:
    return np.stack(images.read(np.arange(len(images))))


# -- shards -------------------------------------------------------------------------------------------------


def test_shards_are_streamed_by_index(dataset: dict, tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    assert images.images is None and images.index is not None  # nothing decoded up front
    assert np.array_equal(_pixels(images), dataset["train_images"])
    assert np.array_equal(images.labels, dataset["train_labels"])
    assert images.num_classes == 10
    assert images.input_shape == (3, 32, 32)
    assert images.identity == "wds:train-0.tar"  # no absolute path
    picked = np.array([63, 0, 17, 17])
    assert np.array_equal(np.stack(images.read(picked)), dataset["train_images"][picked])
    test = load_images(tiny_cfg.data, "test")
    assert np.array_equal(_pixels(test), dataset["test_images"])
    assert np.array_equal(test.labels, dataset["test_labels"])


def test_in_memory_mode_equals_the_streamed_one(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    memory = load_images(dataclasses.replace(tiny_cfg.data, in_memory=True), "train")
    assert memory.images is not None and memory.images.shape == (64, 32, 32, 3)
    assert np.array_equal(memory.images, _pixels(images))
    assert memory.describe() == images.describe()  # the same manifest entry, fingerprint included
    samples, views = np.tile(np.arange(64), 2), np.repeat([1, 2], 64)
    assert torch.equal(
        make_views(memory, tiny_cfg.data, 3, samples, views), make_views(images, tiny_cfg.data, 3, samples, views)
    )


def test_limit_keeps_the_first_samples(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    for data in (tiny_cfg.data, dataclasses.replace(tiny_cfg.data, in_memory=True)):
        few = load_images(data, "train", limit=20)
        assert len(few) == 20
        assert np.array_equal(_pixels(few), _pixels(images)[:20])
    assert few.fingerprint() != images.fingerprint()


def test_extraction_decodes_only_the_samples_of_its_units(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = []
    real = litcache.data.images.decode_image
    monkeypatch.setattr(litcache.data.images, "decode_image", lambda data, c: decoded.append(1) or real(data, c))
    forget_opened()
    summary = extract(make_cfg(), str(teacher_path), str(tmp_path / "c.zarr"), max_units=2, show_progress=False)
    rows_per_unit = open_cache(str(tmp_path / "c.zarr")).rows_per_unit
    assert summary["units_written"] == 2
    assert len(decoded) == 2 * rows_per_unit < 64  # the two units' rows: not the data set


def test_views_are_made_ahead_by_a_bounded_number_of_batches(images: ImageSet, tiny_cfg: PipelineConfig) -> None:
    pulled = []

    def batches():  # type: ignore[no-untyped-def]
        for k in range(8):
            pulled.append(k)
            yield k, np.arange(8 * k, 8 * k + 8), np.full(8, 1)

    made = iter_views(images, tiny_cfg.data, 0, batches(), ahead=1)
    for k, (tag, x) in enumerate(made):
        assert tag == k and x.shape == (8, 3, 32, 32)
        assert len(pulled) <= k + 2  # the batch in hand and one made ahead
        assert torch.equal(x, make_views(images, tiny_cfg.data, 0, np.arange(8 * k, 8 * k + 8), np.full(8, 1)))
    assert len(pulled) == 8


def test_evaluate_streams_the_test_split(tiny_cfg: PipelineConfig, teacher_path: Path) -> None:
    from litcache import load_model

    model, _ = load_model(teacher_path)
    test = load_images(tiny_cfg.data, "test")
    memory = load_images(dataclasses.replace(tiny_cfg.data, in_memory=True), "test")
    streamed, held = evaluate(model, test, torch.device("cpu"), 10), evaluate(model, memory, torch.device("cpu"), 10)
    assert streamed == held and streamed["samples"] == 32


# -- the index ----------------------------------------------------------------------------------------------


def _copy_shards(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.glob("*.tar"):
        shutil.copy(p, dst / p.name)  # new modification times: a new index
    return dst


def test_the_index_is_built_once_and_kept(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy_shards(data_dir, tmp_path / "data")
    cfg = DataConfig(source=str(folder), index_dir=str(tmp_path / "index"))
    built = []
    real = litcache.data.index.build_index
    monkeypatch.setattr(litcache.data.index, "build_index", lambda *a: built.append(1) or real(*a))
    first = load_images(cfg, "train")
    assert len(built) == 1 and len(list((tmp_path / "index").glob("wds-*.npz"))) == 1
    forget_opened()
    again = load_images(cfg, "train")  # another process would do the same: read the sidecar
    assert len(built) == 1 and again.fingerprint() == first.fingerprint()
    assert np.array_equal(again.index.offset, first.index.offset)  # type: ignore[union-attr]
    os.utime(folder / "train-0.tar", ns=(1, 1))  # the files changed (as far as we can tell): index again
    load_images(cfg, "train")
    assert len(built) == 2
    forget_opened()
    load_images(dataclasses.replace(cfg, index_dir=""), "train")  # "" keeps no index
    assert len(built) == 3 and len(list((tmp_path / "index").glob("wds-*.npz"))) == 2


def test_fingerprint_is_of_labels_and_encoded_bytes(dataset: dict, tmp_path: Path) -> None:
    imgs, labels = dataset["train_images"][:8], dataset["train_labels"][:8]

    def fingerprint(folder: str, images: np.ndarray, labels: np.ndarray) -> str:
        (tmp_path / folder).mkdir()
        write_shard(tmp_path / folder / "train-0.tar", "train", images, labels)
        return load_images(DataConfig(source=str(tmp_path / folder), index_dir=""), "train").fingerprint()

    base = fingerprint("a", imgs, labels)
    assert fingerprint("b", imgs, labels) == base  # the same content elsewhere
    changed = imgs.copy()
    changed[7, 31, 31, 2] ^= 1
    assert fingerprint("c", changed, labels) != base
    relabelled = labels.copy()
    relabelled[0] = 9
    assert fingerprint("d", imgs, relabelled) != base


def test_fingerprint_is_the_documented_formula(data_dir: Path, images: ImageSet) -> None:
    """docs/cache-format.md: SHA-256 of a prefix, then per sample its int64 label and 16 bytes of its image's hash."""
    import hashlib
    import tarfile

    h = hashlib.sha256(b"litcache-data-v1:label+sha256(encoded image)\n")
    with tarfile.open(data_dir / "train-0.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    for i in range(64):
        label = int(members[f"train_{i:05d}.cls"])
        h.update(np.int64(label).astype("<i8").tobytes() + hashlib.sha256(members[f"train_{i:05d}.png"]).digest()[:16])
    assert images.fingerprint() == "sha256:" + h.hexdigest()


def test_moved_shards_resume_the_same_cache(
    data_dir: Path, teacher_path: Path, cache_path: Path, tmp_path: Path, index_dir: Path
) -> None:
    """The manifest names no absolute path: data moved to another folder (new index) continues a cache."""
    here, there = _copy_shards(data_dir, tmp_path / "here"), tmp_path / "elsewhere" / "cifar"
    cfg = load_pipeline(
        "tiny", [f"data.source={json.dumps(str(here))}", f"data.index_dir={json.dumps(str(index_dir))}"]
    )
    out = tmp_path / "c.zarr"
    extract(cfg, str(teacher_path), str(out), max_units=3, show_progress=False)
    there.parent.mkdir()
    shutil.move(here, there)
    moved = cfg.replace(data=dataclasses.replace(cfg.data, source=str(there)))
    assert extract(moved, str(teacher_path), str(out), resume=True, show_progress=False)["complete"]
    resumed, whole = open_cache(str(out)), open_cache(str(cache_path))
    assert str(tmp_path) not in json.dumps(resumed.manifest["data"])
    assert resumed.manifest["data"] == whole.manifest["data"]
    for name in ("rows/sample", "rows/label", "input"):
        assert np.array_equal(resumed.array(name)[:], whole.array(name)[:]), name


def test_file_urls_braces_and_split_patterns_name_the_same_shards(data_dir: Path, images: ImageSet) -> None:
    sources = [f"file://{data_dir}", f"file://{data_dir}/train-{{0..0}}.tar", f"{data_dir}/{{split}}-*.tar"]
    for source in sources:
        opened = load_images(DataConfig(source=source, index_dir=""), "train")
        assert opened.fingerprint() == images.fingerprint(), source
        assert np.array_equal(_pixels(opened), _pixels(images)), source
    test = load_images(DataConfig(source=f"{data_dir}/{{split}}-*.tar", index_dir=""), "test")
    assert len(test) == 32


def test_shard_paths_in_natural_order_and_brace_patterns(tmp_path: Path) -> None:
    for i in (0, 1, 2, 10):
        (tmp_path / f"train-{i}.tar").touch()
    names = [Path(p).name for p in shard_paths(str(tmp_path), "train")]
    assert names == ["train-0.tar", "train-1.tar", "train-2.tar", "train-10.tar"]
    names = [Path(p).name for p in shard_paths(str(tmp_path / "train-{1..2}.tar"), "train")]
    assert names == ["train-1.tar", "train-2.tar"]


# -- image folders, channels --------------------------------------------------------------------------------


def _image_folder(root: Path, split: str, classes: dict[str, list[np.ndarray]], fmt: str = "PNG") -> None:
    for name, imgs in classes.items():
        (root / split / name).mkdir(parents=True)
        for i, im in enumerate(imgs):
            (root / split / name / f"{i:03d}.{fmt.lower()}").write_bytes(encode(im, fmt))


def test_an_image_folder_is_read_like_torchvisions_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = {c: [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(3)] for c in ("dog", "cat", "ant")}
    _image_folder(tmp_path / "ds", "train", imgs)
    _image_folder(tmp_path / "ds", "val", {"dog": imgs["dog"][:2]})  # the test split may lack classes
    cfg = DataConfig(source=str(tmp_path / "ds"), index_dir="")
    train = load_images(cfg, "train")
    assert train.identity == "imagefolder:train (3 classes)" and train.num_classes == 3
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # classes sorted: ant, cat, dog
    assert np.array_equal(_pixels(train), np.stack(imgs["ant"] + imgs["cat"] + imgs["dog"]))
    test = load_images(cfg, "test")  # "val" stands in for "test"; labels from the train split's classes
    assert test.labels.tolist() == [2, 2] and test.num_classes == 3
    assert np.array_equal(_pixels(test), np.stack(imgs["dog"][:2]))


def test_grayscale_is_a_setting_and_extracts(tmp_path: Path, index_dir: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    (tmp_path / "d").mkdir()
    write_shard(tmp_path / "d" / "train-0.tar", "train", gray, np.arange(16) % 4)
    with pytest.raises(ConfigError, match="one value per channel"):
        DataConfig(channels=1)
    one = ["data.channels=1", "data.mean=[0.5]", "data.std=[0.25]", f"data.index_dir={json.dumps(str(index_dir))}"]
    cfg = load_pipeline("tiny", [f"data.source={json.dumps(str(tmp_path / 'd'))}", *one])
    images = load_images(cfg.data, "train")
    assert images.input_shape == (1, 32, 32) and np.array_equal(_pixels(images), gray)
    rgb = load_images(DataConfig(source=str(tmp_path / "d"), index_dir=""), "train")  # channels=3: gray repeated
    assert np.array_equal(_pixels(rgb), np.repeat(gray, 3, axis=3))
    teacher = build_model(ModelConfig(name="resnet8", kwargs={"in_channels": 1}), 4, (0.5,), (0.25,)).eval()
    save_model(teacher, tmp_path / "gray.pt")
    extract(cfg, str(tmp_path / "gray.pt"), str(tmp_path / "c.zarr"), show_progress=False)
    cache = open_cache(str(tmp_path / "c.zarr"))
    assert cache.manifest["data"]["channels"] == 1 and cache.manifest["data"]["input_shape"] == [1, 32, 32]
    assert np.array_equal(
        cache.array("input")[:16], make_views(images, cfg.data, 0, np.arange(16), np.zeros(16)).numpy()
    )


def test_rgb_images_convert_to_grayscale(dataset: dict, tmp_path: Path) -> None:
    write_members(tmp_path / "train-0.tar", [("a.png", encode(dataset["train_images"][0])), ("a.cls", b"0")])
    cfg = DataConfig(source=str(tmp_path), channels=1, mean=(0.5,), std=(0.25,), index_dir="")
    (pixels,) = load_images(cfg, "train").read(np.array([0]))
    assert pixels.shape == (32, 32, 1) and pixels.dtype == np.uint8


# -- settings and missing data ------------------------------------------------------------------------------


def test_num_classes_setting(tiny_cfg: PipelineConfig) -> None:
    assert load_images(dataclasses.replace(tiny_cfg.data, num_classes=100), "train").num_classes == 100


@pytest.mark.parametrize(("split", "limit", "match"), [("val", None, "split"), ("train", 0, "--limit")])
def test_bad_split_or_limit(tiny_cfg: PipelineConfig, split: str, limit: int | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_images(tiny_cfg.data, split, limit)


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data folder {tmp_path / 'nowhere'} is missing"):
        load_images(DataConfig(source=str(tmp_path / "nowhere")), "train")
    with pytest.raises(DataError, match="no 'train-\\*.tar' shards and no 'train/' image folder"):
        load_images(DataConfig(source=str(tmp_path)), "train")


def test_torchvision_set_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR10 not found.*: set data.download=true to fetch it"):
        load_images(DataConfig(source="cifar10", root=str(tmp_path), download=False), "train")


def test_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataError, match="CIFAR100 not found.*Name or service not known") as exc:
        load_images(DataConfig(source="cifar100", root=str(tmp_path), download=True), "test")
    assert "the download failed (no network?)" in str(exc.value) and "set data.download" not in str(exc.value)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("channels", 2, "data.channels must be 1"),
        ("transform", "crop", "data.transform must be one of"),
        ("scale", (0.5, 0.2), "data.scale"),
        ("ratio", (0.0, 1.0), "data.ratio"),
        ("eval_resize", 100, "data.eval_resize must be >= data.size"),
        ("workers", -1, "data.workers"),
    ],
)
def test_data_settings_are_checked(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataConfig(**{key: value})  # type: ignore[arg-type]


def test_pixel_fingerprint_of_in_memory_arrays_sees_every_pixel_and_label() -> None:
    """torchvision's sets come as arrays: their fingerprint is over shape, pixels and labels (the documented one)."""
    import hashlib

    pixels = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6) % 3

    def fingerprint(p: np.ndarray, y: np.ndarray) -> str:
        return ImageSet(y, 3, "torchvision:test", DataConfig(), images=p).fingerprint()

    h = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes() + labels.astype("<i8").tobytes())
    assert fingerprint(pixels, labels) == "sha256:" + h.hexdigest()
    changed = pixels.copy()
    changed[5, 7, 7, 2] ^= 1
    assert fingerprint(changed, labels) != fingerprint(pixels, labels)
    assert fingerprint(pixels, labels[::-1].copy()) != fingerprint(pixels, labels)
