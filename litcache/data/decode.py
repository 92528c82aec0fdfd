"""Encoded image bytes -> uint8 pixels (H, W, C), converted to the data set's channel count.

JPEGs go to torchvision's JPEG decoding op (libjpeg-turbo): on 32 px images it costs about a third of
Pillow's time, with the same pixels (checked on all 60,000 CIFAR-10 JPEGs), and it raised an error (never
crashed) on 2,400 corrupted JPEGs. Everything else goes to Pillow: torchvision 0.29's PNG decoder crashes the
process (a segmentation fault) on a PNG with a bad checksum, where Pillow raises. Pillow also decodes the JPEGs
torchvision refuses (CMYK, say), and all of them if torchvision's image ops are missing (0.29 deprecates them).
Grayscale or RGB is the decoder's conversion (torchvision's ``ImageReadMode.GRAY`` / ``RGB``, Pillow's
``convert("L")`` / ``convert("RGB")``); 16-bit images keep their high byte.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable

import numpy as np
import torch

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
JPEG_MAGIC = b"\xff\xd8\xff"


class DecodeFailure(Exception):
    """An image that cannot be decoded; the caller names the shard and the sample."""


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _failure(exc: Exception) -> DecodeFailure:
    """Pillow's error, worded for a user: no ``<_io.BytesIO object at 0x...>`` (the buffer it was given)."""
    if type(exc).__name__ == "UnidentifiedImageError":
        return DecodeFailure("not an image in a format Pillow reads (JPEG, PNG, WEBP, ...)")
    return DecodeFailure(f"{type(exc).__name__}: {_OBJECT_REPR.sub('the image', str(exc))}")


@functools.cache
def _jpeg_decoder() -> tuple[Callable[..., torch.Tensor], dict[int, int]] | None:
    """torchvision's JPEG decoding op and its read modes by channel count; None without torchvision's image ops.

    The op itself, not ``torchvision.io.decode_jpeg``: the wrapper costs as much as decoding a 32 px JPEG and
    warns on every call (torchvision 0.29 deprecates it in favour of TorchCodec).
    """
    try:
        from torchvision.io import ImageReadMode

        return torch.ops.image.decode_jpeg, {1: ImageReadMode.GRAY.value, 3: ImageReadMode.RGB.value}
    except (ImportError, AttributeError, RuntimeError):
        return None


def _decode_jpeg(data: bytearray | memoryview, channels: int) -> np.ndarray | None:
    decoder = _jpeg_decoder()
    if decoder is None:
        return None
    op, modes = decoder
    try:
        x = op(torch.frombuffer(data, dtype=torch.uint8), modes[channels], False)  # writable buffer: no copy
    except RuntimeError:
        return None  # Pillow has the last word (and the error message)
    if x.ndim != 3 or x.shape[0] != channels:
        return None
    return x.permute(1, 2, 0).numpy()  # (H, W, C), a view of the decoded tensor


def _decode_pillow(data: bytearray | memoryview, channels: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            image: Image.Image = im
            if im.mode.startswith("I;16"):
                image = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, ...)
        raise _failure(exc) from exc
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def decode_image(data: bytearray | memoryview | bytes, channels: int) -> np.ndarray:
    """Pixels (H, W, channels) uint8 of one encoded image; :class:`DecodeFailure` when it cannot be read."""
    if isinstance(data, bytes):
        data = bytearray(data)
    if len(data) == 0:
        raise DecodeFailure("the image is empty (0 bytes)")
    pixels = _decode_jpeg(data, channels) if bytes(data[:3]) == JPEG_MAGIC else None
    return pixels if pixels is not None else _decode_pillow(data, channels)


def image_size(data: bytes | memoryview) -> tuple[int, int]:
    """(height, width) from an image's header, without decoding it; :class:`DecodeFailure` if unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as exc:
        raise _failure(exc) from exc
    return height, width
