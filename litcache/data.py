"""Image sources and views.

A source is read into memory as uint8 images (CIFAR-sized data sets are a few hundred MB at most), so that
sample i can be fetched by index from any process. A *view* is sample i under augmentation v, and the
augmentation is a pure function of (seed, i, v): the same triple gives the same pixels, bit for bit, in any
process, on any worker, on any machine.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from litcache.config import DataConfig
from litcache.errors import DataError

log = logging.getLogger(__name__)

TORCHVISION_SETS = {"cifar10": ("CIFAR10", 10), "cifar100": ("CIFAR100", 100)}
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class ImageSet:
    """A split of a data set in memory."""

    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64
    num_classes: int
    identity: str  # where it came from, e.g. "torchvision:cifar10:train" or "wds:/data/train-*.tar"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        n, h, w, c = self.images.shape
        return (c, h, w)

    def fingerprint(self) -> str:
        """SHA-256 over every row's pixels and label: two caches of the same rows share it."""
        h = hashlib.sha256()
        h.update(f"{self.images.shape}".encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.astype("<i8").tobytes())
        return "sha256:" + h.hexdigest()


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    lo, hi = int(m.group(1)), int(m.group(2))
    width = len(m.group(1)) if m.group(1).startswith("0") else 0
    return [
        p
        for i in range(lo, hi + 1)
        for p in _expand_braces(pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :])
    ]


def _natural_key(path: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def shard_paths(source: str, split: str) -> list[str]:
    """Tar shards of ``split`` under a folder, or those a brace/glob pattern names."""
    path = Path(source).expanduser()
    if path.is_dir():
        found = glob.glob(str(path / f"{split}-*.tar")) or glob.glob(str(path / f"{split}*.tar"))
        if not found:
            raise DataError(f"no '{split}-*.tar' shards in {path}; expected e.g. {path}/{split}-0.tar")
        return sorted(found, key=_natural_key)
    found = [f for p in _expand_braces(str(path)) for f in sorted(glob.glob(p), key=_natural_key)]
    if not found:
        raise DataError(
            f"data source {source!r} is neither a torchvision data set ({', '.join(TORCHVISION_SETS)}) "
            "nor a folder or pattern of WebDataset .tar shards"
        )
    return found


def _decode_image(data: bytes, key: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise DataError(f"sample {key!r}: cannot decode image: {exc}") from exc


def read_shards(paths: list[str], limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of WebDataset shards (``KEY.jpg`` + ``KEY.cls``), in shard order."""
    import webdataset as wds

    images: list[np.ndarray] = []
    labels: list[int] = []
    ds = wds.WebDataset(paths, shardshuffle=False, empty_check=False)
    for sample in ds:
        if limit is not None and len(labels) >= limit:
            break
        key = sample.get("__key__", "?")
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None or "cls" not in sample:
            raise DataError(f"sample {key!r} in {sample.get('__url__')} lacks an image or a .cls label")
        images.append(_decode_image(sample[ext], key))
        try:
            labels.append(int(sample["cls"].decode().strip()))
        except ValueError as exc:
            raise DataError(f"sample {key!r}: .cls is not an integer: {sample['cls']!r}") from exc
    if not images:
        raise DataError(f"no samples in {paths}")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"images in {paths[0]}... have different shapes {sorted(shapes)}; resize them first")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _source_stamp(cfg: DataConfig, split: str) -> tuple[object, ...]:
    """What identifies the files behind a source now: shard paths with sizes and modification times."""
    if cfg.source.removeprefix("torchvision:").lower() in TORCHVISION_SETS and not Path(cfg.source).exists():
        return (cfg.source, str(Path(cfg.root).expanduser()))
    try:
        paths = shard_paths(cfg.source, split)
    except DataError:
        return (cfg.source, split)
    return tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)


def load_images(cfg: DataConfig, split: str = "train", limit: int | None = None) -> ImageSet:
    """Load ``split`` of the source ``cfg.source`` names; ``limit`` keeps only the first N samples.

    Decoded sets are kept in memory per process (a few, keyed by the files' sizes and times), so a run that
    trains, extracts and evaluates decodes each split once. Treat the returned arrays as read-only.
    """
    return _load_images(cfg, split, limit, _source_stamp(cfg, split))


@functools.lru_cache(maxsize=4)
def _load_images(cfg: DataConfig, split: str, limit: int | None, stamp: tuple[object, ...]) -> ImageSet:
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    name = cfg.source.removeprefix("torchvision:").lower()
    if name in TORCHVISION_SETS and not Path(cfg.source).exists():
        import torchvision

        cls_name, num_classes = TORCHVISION_SETS[name]
        root = Path(cfg.root).expanduser()
        try:
            ds = getattr(torchvision.datasets, cls_name)(str(root), train=split == "train", download=cfg.download)
        except (RuntimeError, OSError) as exc:  # OSError: the download failed (no network, URLError)
            raise DataError(
                f"{cls_name} not found under {root} ({exc}); set data.download=true or point --data at "
                "local WebDataset shards"
            ) from exc
        images, labels = np.asarray(ds.data[:limit]), np.asarray(ds.targets[:limit], dtype=np.int64)
        identity = f"torchvision:{name}:{split}"
    else:
        paths = shard_paths(cfg.source, split)
        images, labels = read_shards(paths, limit)
        num_classes = int(labels.max()) + 1
        identity = "wds:" + ",".join(str(Path(p).resolve()) for p in paths)
    if cfg.num_classes:
        if labels.max() >= cfg.num_classes:
            raise DataError(f"label {labels.max()} found but data.num_classes is {cfg.num_classes}")
        num_classes = cfg.num_classes
    if images.shape[-1] != len(cfg.mean):
        raise DataError(f"images have {images.shape[-1]} channels but data.mean has {len(cfg.mean)} values")
    log.info("loaded %d %s samples from %s", len(labels), split, identity)
    return ImageSet(np.ascontiguousarray(images), labels, num_classes, identity)


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def view_hash(seed: int, samples: np.ndarray, views: np.ndarray) -> np.ndarray:
    """64 random bits per (seed, sample, view): a counter-based hash, identical everywhere."""
    s = _splitmix64(np.full(1, seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64))
    x = _splitmix64(s ^ np.asarray(samples, dtype=np.uint64))
    return _splitmix64(x ^ np.asarray(views, dtype=np.uint64))


def view_params(
    cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets (dy, dx) in [0, 2*pad] and flip flags of each (sample, view)."""
    h = view_hash(seed, samples, views)
    span = np.uint64(2 * cfg.pad + 1)
    dy = (h % span).astype(np.int64)
    dx = ((h >> np.uint64(16)) % span).astype(np.int64)
    flip = (((h >> np.uint64(32)) & np.uint64(1)) == 1) & cfg.flip
    if cfg.plain_view0:
        plain = np.asarray(views) == 0
        dy[plain], dx[plain], flip[plain] = cfg.pad, cfg.pad, False
    return dy, dx, flip


def make_views(images: ImageSet, cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray) -> torch.Tensor:
    """The augmented inputs of rows (samples[j], views[j]) as a uint8 tensor (B, C, H, W)."""
    samples = np.asarray(samples, dtype=np.int64)
    views = np.asarray(views, dtype=np.int64)
    batch = images.images[samples]  # (B, H, W, C)
    b, h, w, _ = batch.shape
    p = cfg.pad
    padded = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0))) if p else batch
    dy, dx, flip = view_params(cfg, seed, samples, views)
    rows = dy[:, None] + np.arange(h)[None, :]  # (B, H)
    cols = dx[:, None] + np.arange(w)[None, :]  # (B, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1], the input models expect."""
    return x.float().div_(255.0)
