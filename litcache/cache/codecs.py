"""How the cache's row arrays are encoded: zarr codecs from the store settings, and litcache's own whole-chunk
codec, which reads and writes the very bytes zarr's codec pipeline would, for a fraction of its CPU."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, cast

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
from zlib_ng import zlib_ng

from litcache.cache import _zarr
from litcache.config import StoreConfig


def build_codecs(cfg: StoreConfig) -> dict[str, Any]:
    """zarr ``compressors=`` for a row array under the store settings.

    Bit rounding is not a zarr filter: the extractor rounds, and the arrays stay plain zarr v3 (bytes and a
    Blosc or zstd compressor) that any zarr reader decodes; the manifest's ``store`` says they are rounded.
    """
    if cfg.codec == "zstd":
        return {"compressors": ZstdCodec(level=cfg.level)}
    if cfg.codec in ("blosc-zstd", "blosc-lz4"):
        cname = cfg.codec.removeprefix("blosc-")
        blosc = BloscCodec(cname=cast(Any, cname), clevel=cfg.level, shuffle="shuffle", blocksize=cfg.blosc_blocksize)
        return {"compressors": blosc}
    return {"compressors": None}


def bitround(x: np.ndarray, keepbits: int) -> np.ndarray:
    """``x`` with its float mantissas rounded to ``keepbits`` bits, half to even (numcodecs BitRound).

    Idempotent, so values already rounded (on the device, by the extractor) come back unchanged.
    """
    return cast(np.ndarray, numcodecs.BitRound(keepbits).encode(x)).view(x.dtype).reshape(x.shape)


def crc32(x: np.ndarray) -> int:
    """CRC-32 (zlib's) of the array's bytes."""
    return zlib_ng.crc32(np.ascontiguousarray(x).data.cast("B")) & 0xFFFFFFFF


def row_crc32(rows: np.ndarray) -> np.ndarray:
    """(N,) uint32: the CRC-32 of each row's bytes (a view's pixels, when the cache keeps no pixels)."""
    return np.array([crc32(row) for row in rows], dtype=np.uint32)


_BLOSC_SHUFFLE = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": 2}


@dataclass(frozen=True)
class ChunkCodec:
    """Whole chunks of an unsharded row array, encoded and decoded with numcodecs directly.

    The bytes zarr's codec pipeline reads and writes, at a fraction of its CPU cost per chunk: one store
    request and one (de)compression, none of the pipeline's buffers and copies. Only the layouts litcache
    writes qualify (see ``for_array``); every other array goes through zarr.
    """

    array: zarr.Array
    compressor: numcodecs.abc.Codec | None  # None: stored raw

    @classmethod
    def for_array(cls, arr: zarr.Array) -> ChunkCodec | None:
        """A codec when ``arr`` is unsharded, chunked along rows only, and stored as [BitRound] bytes
        [blosc | zstd], little-endian; else None."""
        codecs = _zarr.v3_codecs(arr)
        if arr.shards is not None or arr.chunks[1:] != arr.shape[1:] or codecs is None:
            return None
        compressor: numcodecs.abc.Codec | None = None
        for i, codec in enumerate(codecs):
            if isinstance(codec, BytesCodec) and _zarr.name(codec.endian) in (None, sys.byteorder):
                continue
            if isinstance(codec, BloscCodec) and i == len(codecs) - 1:
                shuffle = _BLOSC_SHUFFLE[_zarr.name(codec.shuffle) or "noshuffle"]
                compressor = numcodecs.Blosc(_zarr.name(codec.cname), codec.clevel, shuffle, codec.blocksize)
            elif isinstance(codec, ZstdCodec) and i == len(codecs) - 1:
                compressor = numcodecs.Zstd(level=codec.level, checksum=codec.checksum)
            elif getattr(codec, "codec_config", {}).get("id") != "bitround":  # earlier versions' filter: decodes as is
                return None
        return cls(arr, compressor)

    def keys(self, start: int, stop: int) -> list[tuple[int, str]]:
        """(first row, store key) of every chunk that holds rows start..stop."""
        step = self.array.chunks[0]
        return [(c * step, _zarr.chunk_key(self.array, c)) for c in range(start // step, (stop - 1) // step + 1)]

    def decode(self, stored: Any) -> np.ndarray:
        out = np.empty(self.array.chunks, dtype=self.array.dtype)
        if self.compressor is None:
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(stored, np.uint8)
        else:
            self.compressor.decode(stored, out)
        return out

    def encode(self, rows: np.ndarray) -> Any:
        """One chunk's stored bytes from its rows (a short last chunk is padded with the fill value, as zarr
        stores it). ``rows`` are stored as given: a filter in the array's metadata (BitRound, in caches of
        earlier versions) is not applied."""
        if len(rows) < self.array.chunks[0]:
            full = np.full(self.array.chunks, self.array.fill_value, dtype=self.array.dtype)
            full[: len(rows)] = rows
            rows = full
        rows = np.ascontiguousarray(rows, dtype=self.array.dtype)
        return rows.tobytes() if self.compressor is None else self.compressor.encode(rows)
