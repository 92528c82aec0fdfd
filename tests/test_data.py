from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from litcache.config import DataConfig, PipelineConfig
from litcache.data import ImageSet, load_images, make_views, shard_paths, to_unit_float, view_params
from litcache.errors import DataError

SEED = 5


@pytest.fixture(scope="module")
def images(tiny_cfg: PipelineConfig) -> ImageSet:
    return load_images(tiny_cfg.data, "train")


def _views(images: ImageSet, cfg: DataConfig, seed: int, view: int) -> np.ndarray:
    n = len(images)
    return make_views(images, cfg, seed, np.arange(n), np.full(n, view)).numpy()


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


# -- sources ------------------------------------------------------------------------------------------------


def test_shards_round_trip_pixels_and_labels(dataset: dict, tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    assert images.images.dtype == np.uint8 and images.images.shape == (64, 32, 32, 3)
    assert np.array_equal(images.images, dataset["train_images"])
    assert np.array_equal(images.labels, dataset["train_labels"])
    assert images.num_classes == 10
    assert images.input_shape == (3, 32, 32)
    assert images.identity == f"wds:{(dataset['dir'] / 'train-0.tar').resolve()}"
    test = load_images(tiny_cfg.data, "test")
    assert np.array_equal(test.images, dataset["test_images"])
    assert np.array_equal(test.labels, dataset["test_labels"])


def test_limit_keeps_the_first_samples(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    few = load_images(tiny_cfg.data, "train", limit=20)
    assert len(few) == 20
    assert np.array_equal(few.images, images.images[:20])


def test_fingerprint_is_stable_and_sees_every_pixel(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    assert load_images(tiny_cfg.data, "train").fingerprint() == images.fingerprint()
    changed = images.images.copy()
    changed[63, 31, 31, 2] ^= 1
    assert dataclasses.replace(images, images=changed).fingerprint() != images.fingerprint()
    relabelled = images.labels.copy()
    relabelled[0] = 9
    assert dataclasses.replace(images, labels=relabelled).fingerprint() != images.fingerprint()


def test_num_classes_setting(tiny_cfg: PipelineConfig) -> None:
    assert load_images(dataclasses.replace(tiny_cfg.data, num_classes=100), "train").num_classes == 100
    with pytest.raises(DataError, match="data.num_classes is 5"):
        load_images(dataclasses.replace(tiny_cfg.data, num_classes=5), "train")


@pytest.mark.parametrize(("split", "limit", "match"), [("val", None, "split"), ("train", 0, "--limit")])
def test_bad_split_or_limit(tiny_cfg: PipelineConfig, split: str, limit: int | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_images(tiny_cfg.data, split, limit)


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a torchvision data set"):
        load_images(DataConfig(source=str(tmp_path / "nowhere")), "train")
    with pytest.raises(DataError, match="no 'train-\\*.tar' shards"):
        load_images(DataConfig(source=str(tmp_path)), "train")


def test_torchvision_set_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CIFAR10 not found"):
        load_images(DataConfig(source="cifar10", root=str(tmp_path), download=False), "train")


def test_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataError, match="CIFAR100 not found.*Name or service not known"):
        load_images(DataConfig(source="cifar100", root=str(tmp_path), download=True), "test")


def _write_members(path: Path, members: dict[str, bytes]) -> None:
    import io

    with tarfile.open(path, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"train_0.png": b"not a png", "train_0.cls": b"1"}, "cannot decode image"),
        ({"train_0.cls": b"1"}, "lacks an image"),
    ],
)
def test_bad_samples_are_data_errors(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    _write_members(tmp_path / "train-0.tar", members)
    with pytest.raises(DataError, match=match):
        load_images(DataConfig(source=str(tmp_path)), "train")


def test_shard_paths_in_natural_order_and_brace_patterns(tmp_path: Path) -> None:
    for i in (0, 1, 2, 10):
        (tmp_path / f"train-{i}.tar").touch()
    names = [Path(p).name for p in shard_paths(str(tmp_path), "train")]
    assert names == ["train-0.tar", "train-1.tar", "train-2.tar", "train-10.tar"]
    names = [Path(p).name for p in shard_paths(str(tmp_path / "train-{1..2}.tar"), "train")]
    assert names == ["train-1.tar", "train-2.tar"]


# -- views --------------------------------------------------------------------------------------------------


def test_views_are_deterministic(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    samples = np.array([0, 5, 17, 63, 5])
    views = np.array([1, 2, 3, 1, 2])
    a = make_views(images, tiny_cfg.data, SEED, samples, views)
    b = make_views(images, tiny_cfg.data, SEED, samples, views)
    assert a.dtype == torch.uint8 and a.shape == (5, 3, 32, 32)
    assert torch.equal(a, b)
    assert torch.equal(a[1], a[4])  # the same (seed, i, v) twice in one batch
    alone = make_views(images, tiny_cfg.data, SEED, samples[3:4], views[3:4])
    assert torch.equal(alone[0], a[3])  # a row does not depend on the rest of its batch


def test_views_are_identical_in_another_process(data_dir: Path, tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    n = len(images)
    samples, views = np.tile(np.arange(n), 3), np.repeat(np.arange(3), n)
    here = _digest(make_views(images, tiny_cfg.data, SEED, samples, views))
    code = f"""
import hashlib, json, numpy as np
from litcache.config import load_pipeline
from litcache.data import load_images, make_views
cfg = load_pipeline("tiny", ["data.source=" + json.dumps({str(data_dir)!r})])
images = load_images(cfg.data, "train")
n = len(images)
x = make_views(images, cfg.data, {SEED}, np.tile(np.arange(n), 3), np.repeat(np.arange(3), n))
print(hashlib.sha256(x.numpy().tobytes()).hexdigest())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == here


def test_views_differ_across_views_and_seeds(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    v1, v2, v3 = (_views(images, tiny_cfg.data, SEED, v) for v in (1, 2, 3))
    for a, b in ((v1, v2), (v1, v3), (v2, v3)):
        same = np.mean([np.array_equal(a[i], b[i]) for i in range(len(a))])
        assert same < 0.1  # 81 crops x 2 flips: an occasional coincidence, never most samples
    other_seed = _views(images, tiny_cfg.data, SEED + 1, 1)
    assert np.mean([np.array_equal(v1[i], other_seed[i]) for i in range(len(v1))]) < 0.1


def test_view_zero_is_augmented_unless_plain_view0(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    plain = images.images.transpose(0, 3, 1, 2)
    assert not tiny_cfg.data.plain_view0  # students train on augmented views only, as the reference does
    view0 = _views(images, tiny_cfg.data, SEED, 0)
    assert np.mean([np.array_equal(view0[i], plain[i]) for i in range(len(plain))]) < 0.1
    with_plain = dataclasses.replace(tiny_cfg.data, plain_view0=True)
    for seed in (0, SEED):
        assert np.array_equal(_views(images, with_plain, seed, 0), plain)
    assert np.array_equal(_views(images, with_plain, SEED, 1), _views(images, tiny_cfg.data, SEED, 1))


def test_a_view_is_a_padded_crop_with_an_optional_flip(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    cfg, p = tiny_cfg.data, tiny_cfg.data.pad
    samples, views = np.arange(len(images)), np.full(len(images), 2)
    x = make_views(images, cfg, SEED, samples, views).numpy()
    dy, dx, flip = view_params(cfg, SEED, samples, views)
    assert dy.min() >= 0 and dy.max() <= 2 * p and dx.min() >= 0 and dx.max() <= 2 * p
    assert 0 < flip.sum() < len(flip)
    padded = np.pad(images.images, ((0, 0), (p, p), (p, p), (0, 0)))
    for i in range(len(images)):
        crop = padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        if flip[i]:
            crop = crop[:, ::-1]
        assert np.array_equal(x[i], crop.transpose(2, 0, 1))


def test_no_flip_and_no_pad_give_plain_images(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    cfg = dataclasses.replace(tiny_cfg.data, pad=0, flip=False, plain_view0=False)
    assert np.array_equal(_views(images, cfg, SEED, 3), images.images.transpose(0, 3, 1, 2))
    _, _, flip = view_params(dataclasses.replace(tiny_cfg.data, flip=False), SEED, np.arange(64), np.ones(64))
    assert not flip.any()


def test_to_unit_float() -> None:
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    y = to_unit_float(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.tensor([[0.0, 0.2, 1.0]]))
    assert x.dtype == torch.uint8  # the input is left alone
