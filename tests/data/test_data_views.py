"""Views: pure functions of (seed, sample, view), the same in every process; pad-crop-flip's numbers are pinned,
random-resized-crop and the evaluation view are torchvision's."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_shard

from litcache import load_model, open_cache
from litcache.config import DataConfig, PipelineConfig, load_pipeline
from litcache.data import (
    ImageSet,
    crop_params,
    load_images,
    make_eval_views,
    make_views,
    to_unit_float,
    view_params,
)
from litcache.data.views import eval_view, pad_crop_flip, random_resized_crops
from litcache.extract import extract
from litcache.train.loop import evaluate

SEED = 5
RRC = {"transform": "random-resized-crop", "size": 24, "eval_resize": 28}


@pytest.fixture(scope="module")
def images(tiny_cfg: PipelineConfig) -> ImageSet:
    return load_images(tiny_cfg.data, "train")


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of 40 RGB JPEGs of mixed sizes (20-70 px a side), labels 0..3."""
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("mixed")
    for split, n, seed in (("train", 40, 0), ("test", 12, 1)):
        sizes = np.random.default_rng(seed).integers(20, 70, (n, 2))
        imgs = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in sizes]
        write_shard(folder / f"{split}-0.tar", split, imgs, np.arange(n) % 4, fmt="JPEG")
    return folder


def _pixels(images: ImageSet) -> np.ndarray:
    return np.stack(images.read(np.arange(len(images))))


def _views(images: ImageSet, cfg: DataConfig, seed: int, view: int) -> np.ndarray:
    n = len(images)
    return make_views(images, cfg, seed, np.arange(n), np.full(n, view)).numpy()


# -- pad-crop-flip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "digest"),
    [  # sha256 of the views the code before the streamed data package made (commit 766e18b), same inputs
        ({}, "940d324467215dc306051c470cab4a4da30dc6ccc090670ba66eb5360db26db6"),
        ({"plain_view0": True}, "bac849011cbc1d53f96ce91d7931f95e9ccf01f9905cbd6c2df69dd31fa63e27"),
        ({"pad": 2, "flip": False}, "aa26a4addbf47444302dba6d0c2336527a7cd88db6d9e838bd93939cc4fdb187"),
    ],
)
def test_pad_crop_flip_numbers_are_unchanged(settings: dict, digest: str) -> None:
    batch = np.random.default_rng(123).integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    samples, views = np.tile(np.arange(50), 4), np.repeat(np.arange(4), 50)
    x = pad_crop_flip(batch[samples], DataConfig(**settings), 11, samples, views)
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == digest


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


def test_views_differ_across_views_and_seeds(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    v1, v2, v3 = (_views(images, tiny_cfg.data, SEED, v) for v in (1, 2, 3))
    for a, b in ((v1, v2), (v1, v3), (v2, v3)):
        same = np.mean([np.array_equal(a[i], b[i]) for i in range(len(a))])
        assert same < 0.1  # 81 crops x 2 flips: an occasional coincidence, never most samples
    other_seed = _views(images, tiny_cfg.data, SEED + 1, 1)
    assert np.mean([np.array_equal(v1[i], other_seed[i]) for i in range(len(v1))]) < 0.1


def test_view_zero_is_augmented_unless_plain_view0(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    plain = _pixels(images).transpose(0, 3, 1, 2)
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
    padded = np.pad(_pixels(images), ((0, 0), (p, p), (p, p), (0, 0)))
    for i in range(len(images)):
        crop = padded[i, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        if flip[i]:
            crop = crop[:, ::-1]
        assert np.array_equal(x[i], crop.transpose(2, 0, 1))


def test_no_flip_and_no_pad_give_plain_images(tiny_cfg: PipelineConfig, images: ImageSet) -> None:
    cfg = dataclasses.replace(tiny_cfg.data, pad=0, flip=False, plain_view0=False)
    assert np.array_equal(_views(images, cfg, SEED, 3), _pixels(images).transpose(0, 3, 1, 2))
    _, _, flip = view_params(dataclasses.replace(tiny_cfg.data, flip=False), SEED, np.arange(64), np.ones(64))
    assert not flip.any()
    assert np.array_equal(make_eval_views(images, cfg, np.arange(64)).numpy(), _pixels(images).transpose(0, 3, 1, 2))


# -- random-resized-crop and the evaluation view ------------------------------------------------------------


def test_random_resized_crop_is_torchvisions(mixed_dir: Path) -> None:
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resized_crop

    cfg = DataConfig(source=str(mixed_dir), index_dir="", **RRC)  # type: ignore[arg-type]
    images = load_images(cfg, "train")
    assert images.image_hw is None and images.input_shape == (3, 24, 24)  # mixed sizes, one view size
    samples, views = np.arange(len(images)), np.full(len(images), 3)
    x = make_views(images, cfg, SEED, samples, views).numpy()
    heights, widths = images.index.height, images.index.width  # type: ignore[union-attr]
    boxes, flip = crop_params(cfg, SEED, samples, views, heights, widths)
    assert 0 < flip.sum() < len(flip)
    for i, image in enumerate(images.read(samples)):
        top, left, h, w = boxes[i].tolist()
        assert 0 <= top <= image.shape[0] - h and 0 <= left <= image.shape[1] - w
        area = h * w / (image.shape[0] * image.shape[1])
        assert 0.08 * 0.9 <= area <= 1.0  # scale, up to rounding of the sides
        ref = resized_crop(
            Image.fromarray(image), top, left, h, w, [24, 24], InterpolationMode.BILINEAR, antialias=True
        )
        ref = np.asarray(ref)[:, ::-1] if flip[i] else np.asarray(ref)
        assert np.array_equal(x[i].transpose(1, 2, 0), ref), i


def test_crop_boxes_follow_scale_and_ratio() -> None:
    cfg = DataConfig(transform="random-resized-crop", size=32, scale=(0.25, 0.5), ratio=(0.5, 2.0), eval_resize=32)
    n = 4000
    boxes, _ = crop_params(cfg, 0, np.arange(n), np.ones(n), np.full(n, 200), np.full(n, 300))
    area = boxes[:, 2] * boxes[:, 3] / (200 * 300)
    aspect = boxes[:, 3] / boxes[:, 2]
    assert area.min() >= 0.24 and area.max() <= 0.51 and area.std() > 0.05
    assert aspect.min() >= 0.48 and aspect.max() <= 2.05
    # a crop that cannot fit 10 times falls back to the central crop at the nearest allowed ratio
    boxes, _ = crop_params(
        dataclasses.replace(cfg, scale=(1.0, 1.0)), 0, np.arange(4), np.ones(4), np.full(4, 10), np.full(4, 100)
    )
    assert boxes.tolist() == [[0, 40, 10, 20]] * 4


def test_evaluation_view_is_resize_then_centre_crop(mixed_dir: Path) -> None:
    from PIL import Image
    from torchvision.transforms import CenterCrop, Resize

    cfg = DataConfig(source=str(mixed_dir), index_dir="", **RRC)  # type: ignore[arg-type]
    images = load_images(cfg, "test")
    x = make_eval_views(images, cfg, np.arange(len(images))).numpy()
    for i, image in enumerate(images.read(np.arange(len(images)))):
        ref = np.asarray(CenterCrop(24)(Resize(28)(Image.fromarray(image))))
        assert np.array_equal(x[i].transpose(1, 2, 0), ref), i
    plain = make_views(images, dataclasses.replace(cfg, plain_view0=True), SEED, np.arange(12), np.zeros(12))
    assert np.array_equal(plain.numpy(), x)  # view 0 is the evaluation view with plain_view0
    assert not np.array_equal(make_views(images, cfg, SEED, np.arange(12), np.zeros(12)).numpy(), x)


def test_random_resized_crops_of_grayscale_images() -> None:
    cfg = DataConfig(transform="random-resized-crop", size=8, eval_resize=8, channels=1, mean=(0.5,), std=(0.5,))
    gray = [np.random.default_rng(0).integers(0, 256, (30, 20, 1), dtype=np.uint8)] * 3
    x = random_resized_crops(enumerate(gray), cfg, 0, np.zeros(3), np.arange(3))
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.uint8
    assert eval_view(gray[0], cfg).shape == (8, 8, 1)


def test_a_large_image_cache_holds_the_views(
    mixed_dir: Path, teacher_path: Path, index_dir: Path, tmp_path: Path
) -> None:
    overrides = [f"data.{k}={json.dumps(v)}" for k, v in RRC.items()]
    cfg = load_pipeline(
        "tiny",
        [f"data.source={json.dumps(str(mixed_dir))}", f"data.index_dir={json.dumps(str(index_dir))}", *overrides],
    )
    out = tmp_path / "large.zarr"
    extract(cfg, str(teacher_path), str(out), max_units=2, show_progress=False)
    assert extract(cfg, str(teacher_path), str(out), resume=True, show_progress=False)["complete"]
    cache = open_cache(str(out))
    images = load_images(cfg.data, "train")
    rows = np.arange(cache.rows)
    x = make_views(images, cfg.data, cfg.extract.seed, rows % 40, rows // 40)
    assert cache.array("input")[:].shape == (80, 3, 24, 24)
    assert np.array_equal(cache.array("input")[:], x.numpy())  # the view itself, at the output size
    m = cache.manifest
    assert m["transform"] == {
        "kind": "random-resized-crop",
        "size": 24,
        "scale": [0.08, 1.0],
        "ratio": [0.75, 4 / 3],
        "flip": True,
        "interpolation": "bilinear (Pillow, antialiased)",
        "eval_resize": 28,
        "plain_view0": False,
    }
    assert m["data"]["input_shape"] == [3, 24, 24]
    teacher, _ = load_model(teacher_path)
    with torch.no_grad():
        logits = teacher(to_unit_float(x[:16]))
    np.testing.assert_allclose(cache.array("logits")[:16], logits.numpy(), rtol=1e-4, atol=1e-4)
    assert evaluate(teacher, load_images(cfg.data, "test"), torch.device("cpu"))["samples"] == 12


# -- every process makes the same views ---------------------------------------------------------------------


SETTINGS = [{}, {"plain_view0": True}, RRC, {**RRC, "plain_view0": True}]
DIGESTS = """
import hashlib, numpy as np
from litcache.config import DataConfig
from litcache.data import load_images, make_eval_views, make_views

def digests(sources, settings, seed):
    for source, extra in zip(sources, settings):
        cfg = DataConfig(source=source, index_dir="", **extra)
        images = load_images(cfg, "train")
        n = len(images)
        x = make_views(images, cfg, seed, np.tile(np.arange(n), 3), np.repeat(np.arange(3), n))
        yield hashlib.sha256(x.numpy().tobytes()).hexdigest()
        yield hashlib.sha256(make_eval_views(images, cfg, np.arange(n)).numpy().tobytes()).hexdigest()
"""


@pytest.mark.slow
def test_views_are_identical_in_another_process(mixed_dir: Path, data_dir: Path) -> None:
    sources = [str(mixed_dir if s.get("transform") else data_dir) for s in SETTINGS]
    scope: dict = {}
    exec(DIGESTS, scope)
    here = list(scope["digests"](sources, SETTINGS, SEED))
    assert len(set(here)) == 6  # 4 kinds of training views, 2 evaluation views (plain_view0 changes no eval view)
    code = DIGESTS + f"print(*digests({sources!r}, {SETTINGS!r}, {SEED}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == here


def test_to_unit_float() -> None:
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    y = to_unit_float(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.tensor([[0.0, 0.2, 1.0]]))
    assert x.dtype == torch.uint8  # the input is left alone


def test_train_teacher_and_evaluate_on_large_images_from_the_cli(
    mixed_dir: Path, index_dir: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from litcache.cli.main import main

    sets = [a for k, v in {**RRC, "index_dir": str(index_dir)}.items() for a in ("--set", f"data.{k}={json.dumps(v)}")]
    teacher = tmp_path / "t.pt"
    args = ["train-teacher", "-d", str(mixed_dir), "-o", str(teacher), "--limit", "16", "-q", *sets]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["evaluate", "-m", str(teacher), "-d", str(mixed_dir), "--json", *sets])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["samples"] == 12
