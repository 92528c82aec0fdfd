"""One split of a data set, opened for reading by sample index: streamed from its files, or held in memory.

Streamed (the default for shards and image folders), only the labels and the sample index are in memory
(about 60 bytes a sample) and ``read(samples)`` decodes just those samples, so a process's memory does not
grow with the data set. In memory (``data.in_memory``, and torchvision's CIFAR sets, which come as arrays),
the split is decoded once into one uint8 array (N, H, W, C). Both give the same pixels, views and fingerprint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zlib_ng import zlib_ng

from litcache.config import DataConfig
from litcache.data.decode import DecodeFailure, decode_image
from litcache.data.holdout import PARTS, SPLITS, files_split, holdout_entry, part_identity, part_rows, take_index
from litcache.data.index import SampleIndex, open_index
from litcache.data.prefetch import prefetch
from litcache.data.sources import TORCHVISION_SETS, Files, find_files, torchvision_name
from litcache.data.views import view_shape
from litcache.errors import DataError, store_access

log = logging.getLogger(__name__)

SPAN_GAP = 256 << 10  # samples of one file closer than this are read with one ranged read
SPAN_MAX = 64 << 20


@dataclass(frozen=True)
class ImageSet:
    """A split: labels in memory; pixels either in memory (``images``) or read by index (``index``)."""

    labels: np.ndarray  # (N,) int64
    num_classes: int
    identity: str  # where it came from, without absolute paths: "torchvision:cifar10:train", "wds:train-0.tar"
    config: DataConfig
    split: str = "train"
    images: np.ndarray | None = None  # (N, H, W, C) uint8 when held in memory
    index: SampleIndex | None = None  # where each sample's bytes are, when read from files
    data_fingerprint: str = ""  # "" = computed over the pixels (torchvision sets)
    holdout: dict[str, Any] | None = None  # a part of a training split with data.holdout: which draw made it

    def __len__(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def _pixel_fingerprint(self) -> str:
        assert self.images is not None
        h = hashlib.sha256()
        h.update(f"{self.images.shape}".encode())
        h.update(np.ascontiguousarray(self.images).data)  # the buffer itself: no copy
        h.update(self.labels.astype("<i8").tobytes())
        return "sha256:" + h.hexdigest()

    def fingerprint(self) -> str:
        """Identifies the rows' content: encoded bytes and labels (files), or pixels and labels (torchvision)."""
        return self.data_fingerprint or self._pixel_fingerprint

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """(H, W) when every image has that size, else None."""
        if self.images is not None:
            return (int(self.images.shape[1]), int(self.images.shape[2]))
        assert self.index is not None
        h, w = int(self.index.height[0]), int(self.index.width[0])
        same = bool((self.index.height == h).all() and (self.index.width == w).all())
        return (h, w) if same else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one view under ``config.transform``: what the model and the cache's ``input`` see."""
        return view_shape(self.config, self.image_hw)

    def where(self, i: int) -> str:
        return self.index.where(i) if self.index is not None else f"{self.identity}, sample {i}"

    def describe(self) -> dict[str, Any]:
        """The manifest's ``data`` entry."""
        return {
            "identity": self.identity,
            "split": self.split,
            "samples": len(self),
            "fingerprint": self.fingerprint(),
            "fingerprint_of": "labels and encoded images" if self.data_fingerprint else "labels and pixels",
            "channels": self.config.channels,
            "input_shape": list(self.input_shape),
            **({"holdout": self.holdout} if self.holdout else {}),  # absent without one: older caches still resume
        }

    def each(self, samples: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(j, decoded image (H, W, C) uint8 of samples[j]) for every j, in the order the files are read."""
        samples = np.asarray(samples, dtype=np.int64)
        if self.images is not None:
            yield from ((j, self.images[i]) for j, i in enumerate(samples))
            return
        assert self.index is not None
        yield from _read_indexed(self.index, samples, self.config.channels)

    def read(self, samples: np.ndarray) -> list[np.ndarray]:
        """Decoded images (H, W, C) uint8 of ``samples``, in their order."""
        out: list[np.ndarray] = [np.empty(0)] * len(samples)
        for j, image in self.each(samples):
            out[j] = image
        return out

    def batch(self, samples: np.ndarray) -> np.ndarray:
        """Images of ``samples`` as one array (B, H, W, C): they must have one size."""
        if self.images is not None:
            return self.images[np.asarray(samples, dtype=np.int64)]
        images = self.read(samples)
        for j, im in enumerate(images):
            if im.shape != images[0].shape:
                raise DataError(_size_message(self, int(samples[j]), int(samples[0]), "data.transform=pad-crop-flip"))
        return np.stack(images)


def _size_message(images: ImageSet, i: int, first: int, what: str) -> str:
    assert images.index is not None
    h, w = int(images.index.height[i]), int(images.index.width[i])
    h0, w0 = int(images.index.height[first]), int(images.index.width[first])
    return (
        f"{images.where(i)}: the image is {h}x{w}, but {images.where(first)} is {h0}x{w0}; {what} needs images "
        "of one size: resize them, or set data.transform=random-resized-crop"
    )


def _spans(index: SampleIndex, samples: np.ndarray) -> list[list[int]]:
    """Positions in ``samples`` grouped into ranged reads: one file, sorted by offset, small gaps."""
    order = np.lexsort((index.offset[samples], index.file_id[samples]))
    spans: list[list[int]] = []
    start = stop = file = -1
    for pos in order.tolist():
        i = int(samples[pos])
        f, o, n = int(index.file_id[i]), int(index.offset[i]), int(index.size[i])
        if spans and f == file and o - stop <= SPAN_GAP and o + n - start <= SPAN_MAX:
            spans[-1].append(pos)
            stop = max(stop, o + n)
        else:
            spans.append([pos])
            file, start, stop = f, o, o + n
    return spans


def _read_indexed(index: SampleIndex, samples: np.ndarray, channels: int) -> Iterator[tuple[int, np.ndarray]]:
    for span in _spans(index, samples):
        ids = [int(samples[p]) for p in span]
        start = min(int(index.offset[i]) for i in ids)
        stop = max(int(index.offset[i] + index.size[i]) for i in ids)
        try:
            buf = memoryview(index.files.read(int(index.file_id[ids[0]]), start, stop))
        except EOFError as exc:  # shorter than the sizes the index recorded when it was built: cut since
            raise DataError(
                f"{index.where(ids[0])}: the shard is truncated: it ends before byte {stop}, where the index "
                "recorded this sample's image; copy it again or remove it from the source"
            ) from exc
        except OSError as exc:
            raise DataError(f"{index.where(ids[0])}: cannot read it ({exc}); is the data set complete?") from exc
        for pos, i in zip(span, ids, strict=True):
            o = int(index.offset[i]) - start
            data = buf[o : o + int(index.size[i])]
            if zlib_ng.crc32(data) & 0xFFFFFFFF != int(index.crc[i]):
                raise DataError(
                    f"{index.where(i)}: the image's bytes changed since the data was indexed (CRC-32 mismatch); "
                    "restore the file, or move it so that it is indexed again"
                )
            try:
                pixels = decode_image(data, channels)
            except DecodeFailure as exc:
                raise DataError(f"{index.where(i)}: cannot decode the image ({exc})") from exc
            yield pos, pixels


def _check_labels(images: ImageSet, num_classes: int, what: str) -> None:
    bad = np.flatnonzero((images.labels < 0) | (images.labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{images.where(i)}: label {int(images.labels[i])} is outside 0..{num_classes - 1} ({what})")


def ds_folder(cls_name: str) -> str:
    """The folder torchvision keeps a CIFAR set in under its root."""
    return {"CIFAR10": "cifar-10-batches-py", "CIFAR100": "cifar-100-python"}[cls_name]


def _load_torchvision(cfg: DataConfig, name: str, split: str, limit: int | None) -> ImageSet:
    import torchvision

    cls_name, num_classes = TORCHVISION_SETS[name]
    if cfg.channels != 3:
        raise DataError(f"{cls_name} is RGB: set data.channels=3 (and three values in data.mean and data.std)")
    root = Path(cfg.root).expanduser()
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=split == "train", download=cfg.download)
    except (RuntimeError, OSError) as exc:  # OSError: the download failed (no network, URLError)
        if not cfg.download:
            todo = "set data.download=true to fetch it, or point --data at local WebDataset shards"
        elif isinstance(exc, OSError):
            todo = "the download failed (no network?): point --data at local WebDataset shards of it"
        else:  # downloaded, but torchvision refuses the files (an interrupted download)
            todo = f"delete {root / ds_folder(cls_name)} to download it again, or point --data at local shards"
        raise DataError(f"{cls_name} not found under {root} ({exc}): {todo}") from exc
    images, labels = np.asarray(ds.data[:limit]), np.asarray(ds.targets[:limit], dtype=np.int64)
    return ImageSet(labels, num_classes, f"torchvision:{name}:{split}", cfg, split, np.ascontiguousarray(images))


def _decode_all(streamed: ImageSet) -> np.ndarray:
    """Every image of a streamed split decoded into one array (N, H, W, C)."""
    hw, index = streamed.image_hw, streamed.index
    assert index is not None
    if hw is None:
        first = int(np.flatnonzero((index.height != index.height[0]) | (index.width != index.width[0]))[0])
        raise DataError(_size_message(streamed, first, 0, "data.in_memory=true"))
    out = np.empty((len(streamed), *hw, streamed.config.channels), dtype=np.uint8)
    step = 1024
    batches = ((s, np.arange(s, min(s + step, len(streamed))), None) for s in range(0, len(streamed), step))
    for start, part in prefetch(lambda samples, _: streamed.batch(samples), batches, streamed.config.workers):
        out[start : start + len(part)] = part  # type: ignore[misc]
    return out


def _hold_out(whole: ImageSet, part: str, limit: int | None) -> ImageSet:
    """``part`` (train or val) of a whole training split under ``data.holdout``, its first ``limit`` samples."""
    cfg = whole.config
    rows = part_rows(cfg, part, len(whole))[:limit]
    index = take_index(whole.index, rows) if whole.index is not None else None
    return dataclasses.replace(
        whole,
        labels=whole.labels[rows],
        images=np.ascontiguousarray(whole.images[rows]) if whole.images is not None else None,
        index=index,
        data_fingerprint=index.fingerprint() if index is not None else "",  # "": the part's own pixels
        identity=part_identity(whole.identity, cfg, part),
        split=part,
        holdout=holdout_entry(cfg, part, len(whole)),
    )


def _open(cfg: DataConfig, split: str, limit: int | None, files: Files | None) -> ImageSet:
    name = torchvision_name(cfg)
    part = split if cfg.holdout and split in PARTS else None
    split, whole_limit = files_split(split), (None if part else limit)  # the draw is made over the whole split
    if name is not None:
        images = _load_torchvision(cfg, name, split, whole_limit)
    else:
        assert files is not None
        index = open_index(files, cfg.index_dir, whole_limit)
        images = ImageSet(
            labels=index.label,
            num_classes=len(files.classes) or int(index.label.max()) + 1,
            identity=files.identity(split),
            config=cfg,
            split=split,
            index=index,
            data_fingerprint=index.fingerprint(),
        )
        _check_labels(images, images.num_classes, "class labels count from 0")
        if cfg.transform == "pad-crop-flip" and images.image_hw is None:
            first = int(np.flatnonzero((index.height != index.height[0]) | (index.width != index.width[0]))[0])
            raise DataError(_size_message(images, first, 0, "data.transform=pad-crop-flip"))
    if part:  # before decoding into memory: only the part's samples are decoded
        images = _hold_out(images, part, limit)
    if cfg.num_classes:
        _check_labels(images, cfg.num_classes, f"data.num_classes is {cfg.num_classes}")
        images = dataclasses.replace(images, num_classes=cfg.num_classes)
    if cfg.in_memory and images.images is None:
        images = dataclasses.replace(images, images=_decode_all(images), index=None)
    mode = "in memory" if images.images is not None else "streamed"
    log.info("opened %d %s samples of %s (%s)", len(images), images.split, images.identity, mode)
    return images


_OPENED: OrderedDict[tuple[Any, ...], ImageSet] = OrderedDict()
KEEP_OPENED = 4  # splits kept per process, so that a run that trains, extracts and evaluates decodes once


def load_images(cfg: DataConfig, split: str = "train", limit: int | None = None) -> ImageSet:
    """Open ``split`` of the source ``cfg.source`` names; ``limit`` keeps only the first N samples.

    With ``data.holdout``, split ``"train"`` is the training split without the held-out samples and ``"val"``
    is those samples (:mod:`litcache.data.holdout`). Opened splits are kept per process (a few, keyed by the
    files' names, sizes and times). Treat the returned arrays as read-only.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "val" and not cfg.holdout:
        raise DataError(
            "split 'val' is the training samples data.holdout keeps out of extraction and training, and data.holdout "
            "is 0: set it (e.g. --set data.holdout=5000) to the value the models were trained with"
        )
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be >= 1, got {limit}")
    name = torchvision_name(cfg)
    with store_access(cfg.source):  # shards on an object store without credentials: one line that names them
        files = None if name else find_files(cfg, files_split(split))
        key = (cfg, split, limit, files.stamp() if files else (name, str(Path(cfg.root).expanduser())))
        if key not in _OPENED:
            _OPENED[key] = _open(cfg, split, limit, files)
        while len(_OPENED) > KEEP_OPENED:
            _OPENED.popitem(last=False)
    _OPENED.move_to_end(key)
    return _OPENED[key]


def split_classes(cfg: DataConfig, split: str, limit: int | None = None) -> int:
    """The class count of the whole ``split``, what a plain state dict's classifier is sized by: the first ``limit``
    samples may lack the top labels, so a limited run reads the whole split's index for it (no pixels)."""
    whole = dataclasses.replace(cfg, in_memory=False) if limit is not None else cfg
    return load_images(whole, split).num_classes


def check_source(cfg: DataConfig, split: str = "train") -> None:
    """Refuse, before any work, a source without files for ``split``: a missing folder is called missing, one
    without shards or images says so. torchvision's sets pass (they are downloaded when opened)."""
    if torchvision_name(cfg) is None:
        find_files(cfg, files_split(split))


def forget_opened() -> None:
    """Drop the splits kept in this process (benchmarks time opening them)."""
    _OPENED.clear()
