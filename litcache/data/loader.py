"""The views of an image set, batch by batch: training views (a pure function of seed, sample and view) and
evaluation views, made ahead of the model by ``data.workers`` threads (:mod:`litcache.data.prefetch`)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from litcache.config import DataConfig
from litcache.data.images import ImageSet
from litcache.data.prefetch import prefetch
from litcache.data.views import eval_view, pad_crop_flip, random_resized_crops, to_tensor


def make_views(images: ImageSet, cfg: DataConfig, seed: int, samples: Any, views: Any) -> torch.Tensor:
    """The augmented inputs of rows (samples[j], views[j]) as a uint8 tensor (B, C, H, W)."""
    samples = np.asarray(samples, dtype=np.int64)
    views = np.asarray(views, dtype=np.int64)
    if cfg.transform == "pad-crop-flip":
        return pad_crop_flip(images.batch(samples), cfg, seed, samples, views)
    return random_resized_crops(images.each(samples), cfg, seed, samples, views)


def make_eval_views(images: ImageSet, cfg: DataConfig, samples: Any) -> torch.Tensor:
    """The evaluation inputs of ``samples`` (B, C, H, W) uint8: the plain image, or resize + centre crop."""
    samples = np.asarray(samples, dtype=np.int64)
    if cfg.transform == "pad-crop-flip":
        return to_tensor(images.batch(samples))
    out = np.empty((len(samples), cfg.size, cfg.size, cfg.channels), dtype=np.uint8)
    for j, image in images.each(samples):
        out[j] = eval_view(image, cfg)
    return to_tensor(out)


def iter_views(
    images: ImageSet,
    cfg: DataConfig,
    seed: int,
    batches: Iterable[tuple[Any, np.ndarray, np.ndarray]],
    ahead: int = 1,
) -> Generator[tuple[Any, torch.Tensor], None, None]:
    """``(tag, views)`` for each ``(tag, samples, views)``: :func:`make_views`, made ahead by ``cfg.workers``."""

    def make(samples: np.ndarray, views: np.ndarray | None) -> torch.Tensor:
        return make_views(images, cfg, seed, samples, views)

    return prefetch(make, batches, cfg.workers, ahead)


def eval_batches(images: ImageSet, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, as (evaluation views (B, C, H, W) uint8, labels (B,)) batches, made ahead."""
    cfg = images.config
    starts = range(0, len(images), batch_size)
    batches = ((s, np.arange(s, min(s + batch_size, len(images))), None) for s in starts)
    for start, x in prefetch(lambda samples, _: make_eval_views(images, cfg, samples), batches, cfg.workers):
        yield x, torch.from_numpy(images.labels[start : start + len(x)])
