"""Views: sample i under augmentation v, a pure function of (seed, i, v), bit for bit the same in any process.

- ``pad-crop-flip`` (CIFAR): pad by ``pad`` zero pixels, crop the image's size at an offset in [0, 2*pad]^2,
  flip horizontally; every image must have one size.
- ``random-resized-crop`` (ImageNet-style): torchvision's ``RandomResizedCrop(size, scale, ratio)`` (crop a
  region of random area and aspect ratio, resize it to size x size, bilinear with antialiasing as Pillow does
  it), then the flip. The evaluation view resizes the shorter side to ``eval_resize`` and crops the centre
  ``size`` x ``size``, as torchvision's ``Resize`` + ``CenterCrop``.

The random numbers come from a counter-based hash of (seed, i, v) (splitmix64) in integer arithmetic; the crop
geometry uses Python floats (IEEE doubles, ``math.log``/``exp``/``sqrt``) one view at a time, never
vectorised code whose rounding could depend on the CPU's instruction set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from litcache.config import DataConfig

RRC_ATTEMPTS = 10  # torchvision's: tries at a random crop before the central fallback
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


def _uniforms(h: np.ndarray, count: int) -> np.ndarray:
    """(B, count) float64 in [0, 1): ``count`` more random numbers per view, 53 bits each, exact."""
    with np.errstate(over="ignore"):
        k = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        bits = _splitmix64(h[:, None] ^ k[None, :]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def view_params(
    cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pad-crop-flip: crop offsets (dy, dx) in [0, 2*pad] and flip flags of each (sample, view)."""
    h = view_hash(seed, samples, views)
    span = np.uint64(2 * cfg.pad + 1)
    dy = (h % span).astype(np.int64)
    dx = ((h >> np.uint64(16)) % span).astype(np.int64)
    flip = (((h >> np.uint64(32)) & np.uint64(1)) == 1) & cfg.flip
    if cfg.plain_view0:
        plain = np.asarray(views) == 0
        dy[plain], dx[plain], flip[plain] = cfg.pad, cfg.pad, False
    return dy, dx, flip


def _draw_box(u: list[float], height: int, width: int, cfg: DataConfig) -> tuple[int, int, int, int]:
    """One crop box (top, left, h, w) from 4 * RRC_ATTEMPTS uniforms, as torchvision's RandomResizedCrop."""
    lo_scale, hi_scale = cfg.scale
    lo_log, hi_log = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    area = height * width
    for t in range(RRC_ATTEMPTS):
        ua, ur, ui, uj = u[4 * t : 4 * t + 4]
        target = area * (lo_scale + ua * (hi_scale - lo_scale))
        aspect = math.exp(lo_log + ur * (hi_log - lo_log))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(ui * (height - h + 1)), int(uj * (width - w + 1)), h, w
    in_ratio = width / height  # no luck: the central crop at the nearest allowed aspect ratio
    if in_ratio < cfg.ratio[0]:
        w, h = width, int(round(width / cfg.ratio[0]))
    elif in_ratio > cfg.ratio[1]:
        h, w = height, int(round(height * cfg.ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_draws(cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = view_hash(seed, samples, views)
    return _uniforms(h, 4 * RRC_ATTEMPTS), (((h >> np.uint64(32)) & np.uint64(1)) == 1) & cfg.flip


def crop_params(
    cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """random-resized-crop: boxes (top, left, height, width) (B, 4) and flip flags, as torchvision draws them."""
    u, flip = _crop_draws(cfg, seed, samples, views)
    sizes = zip(heights.tolist(), widths.tolist(), strict=True)
    boxes = np.array([_draw_box(u[b].tolist(), h, w, cfg) for b, (h, w) in enumerate(sizes)], dtype=np.int64)
    return boxes.reshape(-1, 4), flip


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) uint8 resized to (height, width, C): Pillow's bilinear filter with antialiasing."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if image.shape[2] == 1 else image))
    out = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
    return out[:, :, None] if out.ndim == 2 else out


def eval_view(image: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Resize the shorter side to ``eval_resize`` (torchvision's rule), then crop the centre size x size."""
    h, w = image.shape[:2]
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = cfg.eval_resize, int(cfg.eval_resize * long / short)
    nh, nw = (new_short, new_long) if h <= w else (new_long, new_short)
    if (nh, nw) != (h, w):
        image = _resize(image, nw, nh)
    top, left = int(round((nh - cfg.size) / 2.0)), int(round((nw - cfg.size) / 2.0))
    return image[top : top + cfg.size, left : left + cfg.size]


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))  # (B, H, W, C) -> (B, C, H, W)


def pad_crop_flip(
    batch: np.ndarray, cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray
) -> torch.Tensor:
    """pad-crop-flip views of ``batch`` (B, H, W, C), the images of ``samples``."""
    b, h, w, _ = batch.shape
    p = cfg.pad
    padded = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0))) if p else batch
    dy, dx, flip = view_params(cfg, seed, samples, views)
    rows = dy[:, None] + np.arange(h)[None, :]  # (B, H)
    cols = dx[:, None] + np.arange(w)[None, :]  # (B, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return to_tensor(padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]])


def random_resized_crops(
    images: Iterable[tuple[int, np.ndarray]], cfg: DataConfig, seed: int, samples: np.ndarray, views: np.ndarray
) -> torch.Tensor:
    """random-resized-crop views; ``images`` gives (j, image (H, W, C) of samples[j]), any size, any order.

    Each image is cropped as it comes, so a batch never holds more than one full-size image per thread.
    """
    u, flip = _crop_draws(cfg, seed, samples, views)
    plain = (np.asarray(views) == 0) & cfg.plain_view0
    out = np.empty((len(samples), cfg.size, cfg.size, cfg.channels), dtype=np.uint8)
    for b, image in images:
        if plain[b]:
            out[b] = eval_view(image, cfg)
            continue
        top, left, h, w = _draw_box(u[b].tolist(), image.shape[0], image.shape[1], cfg)
        view = _resize(image[top : top + h, left : left + w], cfg.size, cfg.size)
        out[b] = view[:, ::-1] if flip[b] else view
    return to_tensor(out)


def view_shape(cfg: DataConfig, image_hw: tuple[int, int] | None) -> tuple[int, int, int]:
    """(C, H, W) of a view: the images' own size (pad-crop-flip) or size x size."""
    if cfg.transform == "pad-crop-flip":
        assert image_hw is not None, "pad-crop-flip needs images of one size"
        return (cfg.channels, *image_hw)
    return (cfg.channels, cfg.size, cfg.size)


def transform_spec(cfg: DataConfig) -> dict[str, Any]:
    """The manifest's ``transform``: what makes a view, enough to recompute it."""
    if cfg.transform == "pad-crop-flip":
        return {"kind": "pad-crop-flip", "pad": cfg.pad, "flip": cfg.flip, "plain_view0": cfg.plain_view0}
    return {
        "kind": "random-resized-crop",
        "size": cfg.size,
        "scale": list(cfg.scale),
        "ratio": list(cfg.ratio),
        "flip": cfg.flip,
        "interpolation": "bilinear (Pillow, antialiased)",
        "eval_resize": cfg.eval_resize,
        "plain_view0": cfg.plain_view0,
    }


def view_config(cfg: DataConfig, spec: dict[str, Any], channels: int) -> DataConfig:
    """``cfg`` with the view settings of a manifest's ``transform`` (the inverse of :func:`transform_spec`), so
    views are made as the cache's were, whatever the pipeline at hand says."""
    if spec["kind"] == "pad-crop-flip":
        fields = {"pad": spec["pad"]}
    else:
        fields = {k: spec[k] for k in ("size", "eval_resize")} | {k: tuple(spec[k]) for k in ("scale", "ratio")}
    return dataclasses.replace(
        cfg, transform=spec["kind"], flip=spec["flip"], plain_view0=spec["plain_view0"], channels=channels, **fields
    )


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1], the input models expect."""
    return x.float().div_(255.0)
