"""Shared fixtures: generated WebDataset shards, a tiny resnet8 teacher, one extracted cache, and the real data."""

from __future__ import annotations

import os

# One thread per process, in the tests and in every process they start (DataLoader and dask workers, torchrun
# ranks): on a 2-core machine shared with other work, more threads than cores only wait for each other.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import io
import json
import shutil
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from litcache import build_model, load_pipeline, save_model
from litcache.config import PipelineConfig
from litcache.extract import extract

torch.set_num_threads(1)

TRAIN_SAMPLES = 64
TEST_SAMPLES = 32
SHARED_CIFAR10 = Path(__file__).parents[1] / ".." / "shared" / "data" / "cifar10"


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 32x32 RGB images (N, H, W, C) uint8 and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    return images, labels


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """One image (H, W, C) or (H, W) uint8 encoded as PNG, JPEG or WEBP."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(buf, format=fmt)
    return buf.getvalue()


def write_members(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar file of ``(name, payload)`` members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def write_shard(path: Path, prefix: str, images: Sequence[np.ndarray], labels: Sequence[int], fmt: str = "PNG") -> None:
    """A WebDataset tar shard of ``KEY.png`` + ``KEY.cls`` members (PNG, so pixels round-trip exactly)."""
    ext = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[fmt]
    members = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        members += [
            (f"{prefix}_{i:05d}.{ext}", encode(image, fmt)),
            (f"{prefix}_{i:05d}.cls", str(int(label)).encode()),
        ]
    write_members(path, members)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A folder with ``train-0.tar`` (64 samples) and ``test-0.tar`` (32), and the pixels written into them."""
    folder = tmp_path_factory.mktemp("data")
    train_images, train_labels = make_images(TRAIN_SAMPLES, seed=1)
    test_images, test_labels = make_images(TEST_SAMPLES, seed=2)
    write_shard(folder / "train-0.tar", "train", train_images, train_labels)
    write_shard(folder / "test-0.tar", "test", test_images, test_labels)
    return {
        "dir": folder,
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


@pytest.fixture(scope="session")
def data_dir(dataset: dict[str, object]) -> Path:
    return dataset["dir"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' sample indexes go (not the user's ~/.cache)."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="session")
def make_cfg(data_dir: Path, index_dir: Path) -> Callable[..., PipelineConfig]:
    """``make_cfg("extract.views=3", ...)``: the tiny pipeline on the generated shards, plus overrides."""

    def make(*overrides: str) -> PipelineConfig:
        base = [f"data.source={json.dumps(str(data_dir))}", f"data.index_dir={json.dumps(str(index_dir))}"]
        # float boundaries: most tests pin values, layouts and tolerances of the format's float path; the default
        # quantised codes are tested by tests/extract/test_quantized.py (which sets store.bits itself) and by the
        # built-in pipelines' end-to-end runs
        base.append("store.bits=0")
        return load_pipeline("tiny", [*base, *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_cfg(make_cfg: Callable[..., PipelineConfig]) -> PipelineConfig:
    return make_cfg()


@pytest.fixture(scope="session")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 teacher with random weights and non-trivial BatchNorm statistics (no training needed)."""
    torch.manual_seed(0)
    model = build_model("resnet8")
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from (0, 1), so eval-mode BatchNorm matters
            model(torch.rand(16, 3, 32, 32))
    model.eval()
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_model(model, path, note="test teacher")
    return path


@pytest.fixture(scope="session")
def cache_path(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: PipelineConfig, teacher_path: Path) -> Path:
    """One complete cache of the tiny pipeline (64 samples x 2 views = 128 rows, 16 rows per unit).

    Shared by the whole session: tests must only read it; a test that changes a cache copies it first.
    """
    out = tmp_path_factory.mktemp("cache") / "cache.zarr"
    summary = extract(tiny_cfg, str(teacher_path), str(out), show_progress=False)
    assert summary["complete"]
    return out


@pytest.fixture
def cache_copy(cache_path: Path, tmp_path: Path) -> Path:
    """A private copy of the shared cache that a test may change."""
    dst = tmp_path / "copy.zarr"
    shutil.copytree(cache_path, dst)
    return dst


@pytest.fixture
def shared_cifar10() -> Path:
    """The real CIFAR-10 shards at ../shared/data/cifar10.

    Skips when the folder is absent, unless LITCACHE_REQUIRE_SHARED=1, where its absence is a failure.
    """
    path = SHARED_CIFAR10.resolve()
    if not (path / "train-0.tar").is_file() or not (path / "test-0.tar").is_file():
        reason = f"shared CIFAR-10 shards not found at {path} (expected train-0.tar and test-0.tar)"
        if os.environ.get("LITCACHE_REQUIRE_SHARED") == "1":
            pytest.fail(f"LITCACHE_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return path
