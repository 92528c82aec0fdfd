"""Quantised boundaries: integer codes of ``bits`` bits with a scale and zero point per unit and channel, packed
into bit fields.

For the values x of one channel in one unit (a chunk or shard of rows), with L = 2^bits - 1::

    lo = min(min x, 0)        hi = max(max x, 0)          s = (hi - lo) / L   (1 where hi = lo = 0)
    z  = clamp(round(-lo / s), 0, L)                      q = clamp(round(x / s) + z, 0, L)
    x' = (q - z) * s                                      |x - x'| <= s / 2

so zero is exact (it is code z), and a channel that is never negative (after a ReLU) has z = 0. Rounding is half
to even, in float32. The scale and zero point of unit u and channel c are ``quant/k[u] = [[s_c ...], [z_c ...]]``
(float32).

The codes of a row are packed as **bit fields**. A width is split into powers of two, the widest first (8; 4;
4 + 2 for 6 bits; 4 + 2 + 1 for 7), and each field (width w, offset o) holds bits o .. o + w - 1 of every code.
The row's n codes in C order, padded with zeros to a multiple of 64, are cut into 8 / w equal parts; byte i of
the field holds element i of part j in its bits j·w .. j·w + w - 1 (at 4 bits: element i in the low nibble,
element i + n/2 in the high one). A row is its fields' bytes one after the other: ``bits`` bytes for every 8
padded codes. Unpacking is then a shift and a mask per part over whole 64-bit words, which keeps the readers'
dequantisation cheap, and what is copied off the teacher's device is already ``bits / 8`` of a byte a code.

The extractor quantises and packs on the teacher's device (``litcache.extract.on_device``); this module is the
format's reference, torch-free: the readers' unpacking and dequantisation, and a numpy quantiser the tests hold
the device's against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BITS = (2, 3, 4, 5, 6, 7, 8)  # code widths a store may use; 0 in the settings means no quantisation
# the manifest's quantization.packing: how a row's codes are laid out (above)
PACKING = "bit fields: powers of two, widest first; each the padded row in 8/w parts, part j at bits j*w of a byte"
QUANT = "quant"  # quant/k holds boundary k's scales and zero points, one (2, C) row per unit


def quant_name(k: int) -> str:
    return f"{QUANT}/{k}"


def channel_axis(row_shape: Sequence[int]) -> int:
    """The axis of a boundary row that holds its channels: C of (C, H, W), the width of (tokens, width)."""
    return 0 if len(row_shape) != 2 else 1


def fields(bits: int) -> tuple[tuple[int, int], ...]:
    """How a code of ``bits`` bits is stored: its fields' (width, offset), widths powers of two, the widest first."""
    out, offset = [], bits
    for width in (8, 4, 2, 1):
        if offset >= width:
            offset -= width
            out.append((width, offset))
    return tuple(out)


def padded_size(row_shape: Sequence[int]) -> int:
    """Codes a row is packed as: its elements padded to a multiple of 64 (whole 64-bit words in every part)."""
    return -(-int(np.prod(row_shape, dtype=np.int64)) // 64) * 64


def packed_row_bytes(row_shape: Sequence[int], bits: int) -> int:
    """Bytes of one row's packed codes: ``bits`` for every 8 padded codes."""
    return bits * padded_size(row_shape) // 8


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


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (N, ...) uint8 packed as bit fields (N, packed_row_bytes), the widest field first."""
    flat = codes.reshape(len(codes), -1)
    n = flat.shape[1]
    if (padded := padded_size((n,))) != n:
        flat = np.pad(flat, ((0, 0), (0, padded - n)))
    out = []
    for width, offset in fields(bits):
        parts = ((flat >> offset) & ((1 << width) - 1)).reshape(len(flat), 8 // width, -1)
        packed = parts[:, 0].copy()
        for j in range(1, 8 // width):
            packed |= parts[:, j] << (j * width)
        out.append(packed)
    return np.concatenate(out, axis=1)


def unpack_codes(packed: np.ndarray, bits: int, row_shape: Sequence[int]) -> np.ndarray:
    """Bit fields (N, packed_row_bytes) back to codes (N, *row_shape) uint8."""
    padded = padded_size(row_shape)
    codes = np.zeros((len(packed), padded), dtype=np.uint8)
    start = 0
    for width, offset in fields(bits):
        field = packed[:, start : start + padded * width // 8]
        start += field.shape[1]
        parts = [(field >> (j * width)) & ((1 << width) - 1) for j in range(8 // width)]
        codes |= np.concatenate(parts, axis=1) << offset
    n = int(np.prod(row_shape, dtype=np.int64))
    return np.ascontiguousarray(codes[:, :n]).reshape(len(packed), *row_shape)


def dequantize(
    packed: np.ndarray, qparams: np.ndarray, bits: int, row_shape: Sequence[int], dtype: str = "float16"
) -> np.ndarray:
    """The values (N, *row_shape) of one unit's packed rows under its ``(2, C)`` scales and zero points.

    x' = (q - z)·s is computed in float32, then cast to ``dtype``: one table look-up per element.
    """
    codes = unpack_codes(packed, bits, row_shape)
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
