"""Quantised boundaries dequantised in torch, a batch at a time, past the stream's workers.

The workers ship a quantised boundary as it is stored, its rows' packed bit fields (a quarter of float16's bytes at
4 bits), each row followed by its unit's ``(2, C)`` scales and zero points (:func:`with_scales`); the stream turns
them into values here, in the process that consumes the batches. The format and its numpy reference are
:mod:`litcache.cache.quantize`; this gives the very same values, bit for bit, as x' = (q - z)·s in float32 (q - z
is exact, the product rounds once), cast to the decoded dtype: the reference's per-channel table
``((levels - z)·s).astype(dtype)`` element by element.

In buffers kept from one batch to the next (memory touched for the first time costs more than the arithmetic),
eight codes to a 64-bit word; the integer steps over the whole batch, the float steps a block of rows at a time:

    words   each field's 64-bit words shifted and masked once a part (at 4 bits: the low nibbles, then the high
            ones), each part written to its place; the fields or-ed together at their offsets
    q - z   for codes of up to 7 bits, in the words too: + (128 - z) in every byte cannot carry (it stays in
            1..255), and flipping bit 7 leaves q - z as a signed byte
    values  int8 -> float32, times s, -> the decoded dtype (a block's float32 stays in the CPU's cache)

At 4 bits that is five integer ops a batch and boundary and three float ops a block: 13 us a row for a CIFAR
ResNet-20's three boundaries on one core, half what the bit planes of cache format 3 took (a table look-up a
byte).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from litcache.cache.quantize import fields, packed_row_bytes, padded_size

_BLOCK_ELEMENTS = 1 << 18  # codes dequantised at a time: a block's float32 (1 MiB) stays in the CPU's cache
_SIGN_BITS = np.array(0x8080808080808080, dtype=np.uint64).view(np.int64).item()  # bit 7 of every byte


def _every_byte(value: int) -> int:
    """``value`` (a byte) in each byte of a 64-bit word, as the signed integer torch takes."""
    return int.from_bytes(bytes([value]) * 8, "little", signed=True)


@dataclass(frozen=True)
class QuantizedArray:
    """How one quantised boundary of a cache decodes: its codes' width, row shape, channel axis and decoded dtype."""

    bits: int
    row_shape: tuple[int, ...]
    channel_axis: int  # of the row: 0 for (C, H, W), 1 for (tokens, width)
    dtype: torch.dtype

    @property
    def size(self) -> int:
        return math.prod(self.row_shape)

    @property
    def channels(self) -> int:
        return self.row_shape[self.channel_axis]

    @property
    def packed_bytes(self) -> int:
        return packed_row_bytes(self.row_shape, self.bits)

    @property
    def padded(self) -> int:
        return padded_size(self.row_shape)

    def channel_view(self, rows: int) -> tuple[int, int, int]:
        """Rows as (N, C, rest) for channels first, (N, rest, C) for channels last."""
        c = self.channels
        return (rows, c, self.size // c) if self.channel_axis == 0 else (rows, self.size // c, c)

    @property
    def in_words(self) -> bool:
        """Whether q - z can be taken in the 64-bit words: codes of up to 7 bits, each word in one channel (first) or
        the channels a whole number of words (last)."""
        run = self.size // self.channels if self.channel_axis == 0 else self.channels
        return self.bits <= 7 and run % 8 == 0 and self.size % 8 == 0


class _Words:
    """A batch's codes, 8 a 64-bit word, with the views the integer steps use: the first ``rows`` rows of ``held``
    (the buffers kept from the batches before), or new buffers."""

    def __init__(self, spec: QuantizedArray, rows: int, held: _Words | None = None) -> None:
        if held is None:
            self.words = torch.empty((rows, spec.padded // 8), dtype=torch.int64)
            self.field = torch.empty_like(self.words) if len(fields(spec.bits)) > 1 else self.words
        else:
            self.words, self.field = held.words[:rows], held.field[:rows]
        shape = spec.channel_view(rows)
        if spec.in_words:  # the words by channel, and their bytes as the signed q - z they end up holding
            self.grouped = self.words[:, : spec.size // 8].view(*shape[:2], -1)
            self.codes = self.words.view(torch.int8)[:, : spec.size].view(shape)
        else:
            self.codes = self.words.view(torch.uint8)[:, : spec.size].view(shape)  # a view, not a copy


class Dequantizer:
    """Dequantises the rows of one quantised boundary; keeps its working buffers from one call to the next (one
    dequantizer per thread).

    The integer steps (unpacking, q - z) run over the whole batch at once, a few ops of a byte an element; the
    float steps a block of rows at a time, whose float32 stays in the CPU's cache. Fewer, larger ops: each costs
    microseconds of dispatch whatever its size.
    """

    def __init__(self, spec: QuantizedArray) -> None:
        self.spec = spec
        self.block = max(1, _BLOCK_ELEMENTS // spec.size)
        self.fields = fields(spec.bits)
        self.held: _Words | None = None  # the largest batch's buffers so far
        self.values = torch.empty(spec.channel_view(self.block), dtype=torch.float32)

    def buffers_for(self, rows: int) -> _Words:
        if self.held is None or len(self.held.words) < rows:
            self.held = _Words(self.spec, rows)
        return self.held if len(self.held.words) == rows else _Words(self.spec, rows, self.held)

    def words(self, packed: torch.Tensor) -> _Words:
        """Packed rows (N, packed bytes) -> their codes, 8 a word (N, padded / 8) int64, the first in the lowest
        byte."""
        b = self.buffers_for(packed.shape[0])
        start = 0
        for i, (width, offset) in enumerate(self.fields):
            size = self.spec.padded * width // 8  # the field's bytes in a row
            src = packed[:, start : start + size].view(torch.int64)
            start += size
            out = b.field if i else b.words
            parts, mask = out.view(len(out), 8 // width, -1), _every_byte((1 << width) - 1)
            torch.bitwise_and(src, mask, out=parts[:, 0])
            for j in range(1, 8 // width):  # arithmetic shifts: what the sign brings in, the mask drops
                torch.bitwise_right_shift(src, j * width, out=parts[:, j]).bitwise_and_(mask)
            if offset:
                out.bitwise_left_shift_(offset)
            if i:
                b.words.bitwise_or_(out)
        return b

    def __call__(self, shipped: torch.Tensor, pin_memory: bool = False) -> torch.Tensor:
        """Values (N, *row_shape) of rows as :func:`with_scales` ships them (N, packed bytes + 8·C) uint8."""
        spec, rows, split = self.spec, shipped.shape[0], self.spec.packed_bytes
        params = shipped[:, split:].contiguous().view(torch.float32).view(rows, 2, spec.channels)
        out = torch.empty((rows, *spec.row_shape), dtype=spec.dtype, pin_memory=pin_memory)
        flat = out.view(spec.channel_view(rows))
        per_row = (rows, spec.channels, 1) if spec.channel_axis == 0 else (rows, 1, spec.channels)
        scale, zero = params[:, 0].reshape(per_row), params[:, 1].reshape(per_row)
        b = self.words(shipped[:, :split])
        if spec.in_words:  # + (128 - z) in every byte of a word, then bit 7 flipped: q - z as a signed byte
            bias = (128 - zero).to(torch.uint8)
            if spec.channel_axis == 0:  # (N, C, 1) words; (N, 1, C / 8) for channels last
                bias = bias.expand(rows, spec.channels, 8).contiguous()
            b.grouped.add_(bias.view(torch.int64)).bitwise_xor_(_SIGN_BITS)
        for s in range(0, rows, self.block):
            e = min(s + self.block, rows)
            values = self.values[: e - s]
            if spec.in_words:
                values.copy_(b.codes[s:e])
            else:
                torch.sub(b.codes[s:e], zero[s:e], out=values)
            flat[s:e].copy_(values.mul_(scale[s:e]))
        return out


def with_scales(codes: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Rows as a quantised boundary crosses the DataLoader, one array: each row's packed codes (N, packed bytes),
    then its unit's ``(2, C)`` scales and zero points as float32 bytes (so it costs no more transfers than the
    float array it stands for)."""
    scales = np.ascontiguousarray(params, dtype=np.float32).reshape(-1).view(np.uint8)
    out = np.empty((len(codes), codes.shape[1] + len(scales)), dtype=np.uint8)
    out[:, : codes.shape[1]] = codes
    out[:, codes.shape[1] :] = scales
    return out


def quantized_arrays(manifest: Mapping[str, Any], names: Sequence[str]) -> dict[str, QuantizedArray]:
    """How each quantised boundary among ``names`` decodes."""
    q = manifest.get("quantization") or {}
    shapes = manifest["teacher"]["boundary_shapes"]
    dtype = getattr(torch, q.get("decoded_dtype", "float16"))
    out = {}
    for name in names:
        if name in q.get("params", {}):
            k = int(name.rsplit("/", 1)[1])
            axis = int(q.get("channel_axis", {}).get(name, 0 if len(shapes[k]) != 2 else 1))
            out[name] = QuantizedArray(int(q["bits"]), tuple(shapes[k]), axis, dtype)
    return out


@functools.cache
def _per_thread_settings() -> bool:
    """Whether torch's intra-op threads are OpenMP's, whose count is a setting of each calling thread (torch's
    native pool is one for the process, and refuses a new size once it has run)."""
    return "OpenMP" in torch.__config__.parallel_info()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch's ops in this thread run on one thread inside the block (what torch's own pin-memory thread does; a
    thread whose first torch call falls inside the block starts with one thread too)."""
    threads = torch.get_num_threads()
    if threads == 1 or not _per_thread_settings():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
