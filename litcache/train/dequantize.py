"""Quantised boundaries dequantised in torch, a batch at a time, past the stream's workers.

The workers ship a quantised boundary as it is stored, its rows' packed bit planes (a quarter of float16's bytes at
4 bits), each row followed by its unit's ``(2, C)`` scales and zero points (:func:`with_scales`); the stream turns
them into values here, in the process that consumes the batches. The format and its numpy reference are
:mod:`litcache.cache.quantize`; this gives the very same values, bit for bit, as x' = (q - z)·s in float32 (q - z
is exact, the product rounds once), cast to the decoded dtype: the reference's per-channel table
``((levels - z)·s).astype(dtype)`` element by element.

A block of rows at a time, in buffers kept from one batch to the next (memory touched for the first time costs more
than the arithmetic), eight codes to a 64-bit word:

    words   each plane byte looked up as the 8 code bits it holds, in place; the planes' words added (their bits
            do not overlap)
    q - z   for codes of up to 7 bits, in the words too: + (128 - z) in every byte cannot carry (it stays in
            1..255), and flipping bit 7 leaves q - z as a signed byte
    values  int8 -> float32, times s, -> the decoded dtype
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

from litcache.cache.quantize import packed_row_bytes, plane_tables

_BLOCK_ELEMENTS = 1 << 18  # codes dequantised at a time: a block's float32 (1 MiB) stays in the CPU's cache
_SIGN_BITS = np.array(0x8080808080808080, dtype=np.uint64).view(np.int64).item()  # bit 7 of every byte


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


class _Buffers:
    """The working buffers of a block of ``rows`` rows, with the views the loop uses made once."""

    def __init__(self, spec: QuantizedArray, rows: int, whole: _Buffers | None = None) -> None:
        """New buffers, or the first ``rows`` rows of ``whole``'s (a block that is short)."""
        planes = (rows, spec.bits, spec.packed_bytes // spec.bits)
        if whole is None:
            self.index = torch.empty(planes, dtype=torch.int32)  # plane bytes, offset to their plane's table
            self.looked_up = torch.empty(planes, dtype=torch.int64)
            self.words = torch.empty(planes[::2], dtype=torch.int64)  # (rows, nb): 8 codes a word
            self.values = torch.empty(spec.channel_view(rows), dtype=torch.float32)
        else:
            self.index, self.looked_up = whole.index[:rows], whole.looked_up[:rows]
            self.words, self.values = whole.words[:rows], whole.values[:rows]
        self.index_flat, self.looked_up_flat = self.index.view(-1), self.looked_up.view(-1)
        if spec.in_words:  # the words by channel, and their bytes as the signed q - z they end up holding
            self.grouped = self.words.view(*self.values.shape[:2], -1)
            self.signed = self.words.view(torch.int8).view(self.values.shape)
        else:
            self.codes = self.words.view(torch.uint8)[:, : spec.size].view(self.values.shape)  # a view, not a copy


class Dequantizer:
    """Dequantises the rows of one quantised boundary; keeps its working buffers from one call to the next (one
    dequantizer per thread)."""

    def __init__(self, spec: QuantizedArray) -> None:
        self.spec = spec
        self.block = max(1, _BLOCK_ELEMENTS // spec.size)
        self.tables = torch.from_numpy(np.concatenate([t.view(np.int64) for t in plane_tables(spec.bits)]))
        self.plane_offsets = torch.arange(spec.bits, dtype=torch.int32).view(1, spec.bits, 1) * 256
        self.buffers: dict[int, _Buffers] = {}  # by rows: the whole block's, and a short last block's

    def buffers_for(self, rows: int) -> _Buffers:
        if rows not in self.buffers:
            whole = self.buffers.get(self.block) if rows <= self.block else None
            if whole is None and rows < self.block:
                whole = self.buffers[self.block] = _Buffers(self.spec, self.block)
            self.buffers[rows] = _Buffers(self.spec, rows, whole)
        return self.buffers[rows]

    def words(self, packed: torch.Tensor, buffers: _Buffers | None = None) -> torch.Tensor:
        """Packed rows (m, bits * nb) -> (m, nb) int64, 8 codes a word, the first code in the lowest byte."""
        b = buffers or self.buffers_for(packed.shape[0])
        torch.add(packed.view(b.index.shape), self.plane_offsets, out=b.index)
        torch.index_select(self.tables, 0, b.index_flat, out=b.looked_up_flat)
        return torch.sum(b.looked_up, 1, out=b.words)

    def __call__(self, shipped: torch.Tensor, pin_memory: bool = False) -> torch.Tensor:
        """Values (N, *row_shape) of rows as :func:`with_scales` ships them (N, packed bytes + 8·C) uint8."""
        spec, rows, split = self.spec, shipped.shape[0], self.spec.packed_bytes
        packed = shipped[:, :split]
        params = shipped[:, split:].contiguous().view(torch.float32).view(rows, 2, spec.channels)
        out = torch.empty((rows, *spec.row_shape), dtype=spec.dtype, pin_memory=pin_memory)
        flat = out.view(spec.channel_view(rows))
        per_row = (rows, spec.channels, 1) if spec.channel_axis == 0 else (rows, 1, spec.channels)
        scale, zero = params[:, 0].reshape(per_row), params[:, 1].reshape(per_row)
        if spec.in_words:  # 128 - z in every byte of a word: (N, C, 1) words, or (N, 1, C / 8) for channels last
            bias = (128 - zero).to(torch.uint8)
            if spec.channel_axis == 0:
                bias = bias.expand(rows, spec.channels, 8).contiguous()
            bias = bias.view(torch.int64)
        for s in range(0, rows, self.block):
            e = min(s + self.block, rows)
            b = self.buffers_for(e - s)
            self.words(packed[s:e], b)
            if spec.in_words:
                b.grouped.add_(bias[s:e]).bitwise_xor_(_SIGN_BITS)
                b.values.copy_(b.signed)
            else:
                torch.sub(b.codes, zero[s:e], out=b.values)
            flat[s:e].copy_(b.values.mul_(scale[s:e]))
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
