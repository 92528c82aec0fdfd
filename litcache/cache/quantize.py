"""Quantised boundaries: integer codes of ``bits`` bits with a scale and zero point per unit and channel, stored
as bit planes.

For the values x of one channel in one unit (a chunk or shard of rows), with L = 2^bits - 1::

    lo = min(min x, 0)        hi = max(max x, 0)          s = (hi - lo) / L   (1 where hi = lo = 0)
    z  = clamp(round(-lo / s), 0, L)                      q = clamp(round(x / s) + z, 0, L)
    x' = (q - z) * s                                      |x - x'| <= s / 2

so zero is exact (it is code z), and a channel that is never negative (after a ReLU) has z = 0. Rounding is half
to even, in float32. The scale and zero point of unit u and channel c are ``quant/k[u] = [[s_c ...], [z_c ...]]``
(float32). The codes of a row are stored as ``bits`` bit planes, the most significant first: plane j holds bit
(bits - 1 - j) of every element of the row in C order, eight elements a byte, the first element in the byte's
highest bit (``numpy.packbits``). High planes of a skewed distribution are mostly zeros, which the store's
compressor then squeezes (a bit shuffle done where the codes are made).

The extractor quantises and packs on the teacher's device (``litcache.extract.on_device``), so what is copied to
the host is already small; this module is the format's reference, torch-free: the readers' unpacking and
dequantisation, and a numpy quantiser the tests hold the device's against.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

BITS = (2, 3, 4, 5, 6, 7, 8)  # code widths a store may use; 0 in the settings means no quantisation
QUANT = "quant"  # quant/k holds boundary k's scales and zero points, one (2, C) row per unit


def quant_name(k: int) -> str:
    return f"{QUANT}/{k}"


def channel_axis(row_shape: Sequence[int]) -> int:
    """The axis of a boundary row that holds its channels: C of (C, H, W), the width of (tokens, width)."""
    return 0 if len(row_shape) != 2 else 1


def packed_row_bytes(row_shape: Sequence[int], bits: int) -> int:
    """Bytes of one row's codes as ``bits`` bit planes, each padded to whole bytes."""
    return bits * -(-int(np.prod(row_shape, dtype=np.int64)) // 8)


def _channel_view(rows: np.ndarray, row_shape: Sequence[int]) -> np.ndarray:
    """``rows`` (N, *row_shape) as (N, C, rest) with the channel axis second."""
    axis = channel_axis(row_shape) + 1
    moved = np.moveaxis(rows, axis, 1)
    return moved.reshape(len(rows), moved.shape[1], -1)


def quantize(rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference quantiser: codes (N, *row_shape) uint8 and the unit's ``(2, C)`` float32 scales and zero points.

    The device quantiser (``litcache.extract.on_device.quantize_unit``) gives the same codes, bit for bit.
    """
    row_shape = rows.shape[1:]
    x = _channel_view(rows.astype(np.float32), row_shape)  # (N, C, rest)
    levels = np.float32(2**bits - 1)
    lo = np.minimum(x.min(axis=(0, 2)), np.float32(0))
    hi = np.maximum(x.max(axis=(0, 2)), np.float32(0))
    scale = (hi - lo) / levels
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, levels).astype(np.float32)
    q = np.clip(np.round(x / scale[None, :, None]) + zero[None, :, None], 0, levels).astype(np.uint8)
    axis = channel_axis(row_shape) + 1
    moved_shape = (len(rows), len(scale), *[d for i, d in enumerate(row_shape) if i + 1 != axis])
    codes = np.moveaxis(q.reshape(moved_shape), 1, axis)
    return np.ascontiguousarray(codes), np.stack([scale, zero])


def pack_planes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (N, ...) uint8 as bit planes (N, packed_row_bytes), the most significant plane first."""
    flat = codes.reshape(len(codes), -1)
    planes = [np.packbits((flat >> (bits - 1 - j)) & 1, axis=1) for j in range(bits)]
    return np.concatenate(planes, axis=1)


@functools.cache
def plane_tables(bits: int) -> tuple[np.ndarray, ...]:
    """For each plane j, a (256,) little-endian uint64 table: a plane byte -> its 8 elements' bit, in place
    (bit ``bits - 1 - j`` of each of 8 code bytes, the byte's highest bit the first element)."""
    k = np.arange(8)
    element_bits = (np.arange(256)[:, None] >> (7 - k)) & 1  # (256, 8): element k's bit of byte b
    return tuple(
        np.ascontiguousarray((element_bits << (bits - 1 - j)).astype(np.uint8)).view("<u8").reshape(256)
        for j in range(bits)
    )


def unpack_planes(packed: np.ndarray, bits: int, row_shape: Sequence[int]) -> np.ndarray:
    """Bit planes (N, packed_row_bytes) back to codes (N, *row_shape) uint8.

    Eight codes at a time: each plane byte looks up the 8 code bits it holds as one 64-bit word, and the planes'
    words are or-ed together (a fifth of the work of unpacking every bit on its own).
    """
    n = int(np.prod(row_shape, dtype=np.int64))
    planes = packed.reshape(len(packed), bits, -1)
    tables = plane_tables(bits)
    words = tables[0][planes[:, 0]]
    for j in range(1, bits):
        words |= tables[j][planes[:, j]]
    codes = words.view(np.uint8).reshape(len(packed), -1)
    if codes.shape[1] != n:  # the last plane byte's padding
        codes = np.ascontiguousarray(codes[:, :n])
    return codes.reshape(len(packed), *row_shape)


def dequantize(
    packed: np.ndarray, qparams: np.ndarray, bits: int, row_shape: Sequence[int], dtype: str = "float16"
) -> np.ndarray:
    """The values (N, *row_shape) of one unit's packed rows under its ``(2, C)`` scales and zero points.

    x' = (q - z)·s is computed in float32, then cast to ``dtype``: one table look-up per element.
    """
    codes = unpack_planes(packed, bits, row_shape)
    scale, zero = qparams[0].astype(np.float32), qparams[1].astype(np.float32)
    levels = np.arange(2**bits, dtype=np.float32)
    table = ((levels[None, :] - zero[:, None]) * scale[:, None]).astype(dtype)  # (C, 2^bits)
    axis = channel_axis(row_shape) + 1
    per_channel = int(np.prod(row_shape, dtype=np.int64)) // len(scale)
    if axis == 1 and per_channel >= 64:  # (C, ...) rows: each channel a run of a row, one look-up table each
        out = np.empty(codes.shape, dtype=dtype)
        runs, out_runs = codes.reshape(len(codes), len(scale), -1), out.reshape(len(codes), len(scale), -1)
        for c in range(len(scale)):
            np.take(table[c], runs[:, c], out=out_runs[:, c])
        return out
    offsets = np.arange(len(scale), dtype=np.intp) << bits  # (tokens, width) rows and small ones: one look-up
    shape = [1] * codes.ndim
    shape[axis] = len(scale)
    return table.reshape(-1).take(codes.astype(np.intp) + offsets.reshape(shape))


def error_bound(qparams: np.ndarray) -> np.ndarray:
    """The largest error of each channel's dequantised values: half a step, s / 2 (before the cast to dtype)."""
    return qparams[..., 0, :] / 2
