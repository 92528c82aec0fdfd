"""The cache: a Zarr v3 group of teacher boundaries, logits and labels, keyed by (sample, view).

The format is specified in ``docs/cache-format.md``. In short: rows are view-major (row r is sample
``r % samples`` under view ``r // samples``); every array is chunked along the row axis only, all with the
same rows per chunk; a *unit* (one chunk, or one shard when sharding is on) is the unit of writing; and a unit
counts as written only once its record in ``progress/units`` exists, which is written after its data, with a
CRC-32 of every array's bytes in the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import sys
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
from zarr.codecs.blosc import BloscCname
from zarr.codecs.bytes import Endian
from zarr.core.buffer import default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync
from zlib_ng import zlib_ng

from litcache.config import StoreConfig
from litcache.errors import CacheError

FORMAT = "litcache-cache"
FORMAT_VERSION = 2
PROGRESS = "progress/units"
FROZEN = "teacher/frozen"  # the teacher's parameters and buffers outside its sections, one array each
STATS = "progress/stats"
STAT_FIELDS = ("sum", "sum_sq", "abs_max")  # per boundary and unit, in float64


def boundary_name(k: int) -> str:
    return f"boundary/{k}"


@dataclass(frozen=True)
class ArraySpec:
    """One row-indexed array of the cache: per-row shape and dtype."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def rows_per_chunk(specs: Sequence[ArraySpec], chunk_mb: float, rows: int) -> int:
    """Rows per chunk so the widest array's chunk is about ``chunk_mb`` decoded."""
    widest = max(s.row_bytes for s in specs)
    return max(1, min(rows, int(chunk_mb * 2**20 // widest)))


def build_codecs(cfg: StoreConfig) -> dict[str, Any]:
    """zarr ``compressors=`` for a row array under the store settings.

    Bit rounding is not a zarr filter: the extractor rounds, and the arrays stay plain zarr v3 (bytes and a
    Blosc or zstd compressor) that any zarr reader decodes; the manifest's ``store`` says they are rounded.
    """
    if cfg.codec == "zstd":
        return {"compressors": ZstdCodec(level=cfg.level)}
    if cfg.codec in ("blosc-zstd", "blosc-lz4"):
        cname = BloscCname(cfg.codec.removeprefix("blosc-"))
        blosc = BloscCodec(cname=cname, clevel=cfg.level, shuffle="shuffle", blocksize=cfg.blosc_blocksize)
        return {"compressors": blosc}
    return {"compressors": None}


def bitround(x: np.ndarray, keepbits: int) -> np.ndarray:
    """``x`` with its float mantissas rounded to ``keepbits`` bits, half to even (numcodecs BitRound).

    Idempotent, so values already rounded (on the device, by the extractor) come back unchanged.
    """
    return cast(np.ndarray, numcodecs.BitRound(keepbits).encode(x)).view(x.dtype).reshape(x.shape)


def read_array(arr: zarr.Array, sel: Any = slice(None)) -> np.ndarray:
    """``arr[sel]`` typed as the ndarray it is (zarr types reads as scalars or array-likes)."""
    return np.asarray(arr[sel])


def stored_key(arr: zarr.Array, index: int) -> str:
    """Store key of the ``index``-th stored object (chunk, or shard when sharded) along the row axis of ``arr``."""
    return f"{arr.path}/{arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))}"


def crc32(x: np.ndarray) -> int:
    """CRC-32 (zlib's) of the array's bytes."""
    return zlib_ng.crc32(np.ascontiguousarray(x).data.cast("B")) & 0xFFFFFFFF


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
        meta = arr.metadata
        if arr.shards is not None or arr.chunks[1:] != arr.shape[1:] or not isinstance(meta, ArrayV3Metadata):
            return None
        compressor: numcodecs.abc.Codec | None = None
        for i, codec in enumerate(meta.codecs):
            if isinstance(codec, BytesCodec) and codec.endian in (None, Endian(sys.byteorder)):
                continue
            if isinstance(codec, BloscCodec) and i == len(meta.codecs) - 1:
                shuffle = _BLOSC_SHUFFLE[codec.shuffle.value if codec.shuffle else "noshuffle"]
                compressor = numcodecs.Blosc(codec.cname.value, codec.clevel, shuffle, codec.blocksize)
            elif isinstance(codec, ZstdCodec) and i == len(meta.codecs) - 1:
                compressor = numcodecs.Zstd(level=codec.level, checksum=codec.checksum)
            elif getattr(codec, "codec_config", {}).get("id") != "bitround":  # earlier versions' filter: decodes as is
                return None
        return cls(arr, compressor)

    def keys(self, start: int, stop: int) -> list[tuple[int, str]]:
        """(first row, store key) of every chunk that holds rows start..stop."""
        step = self.array.chunks[0]
        return [(c * step, stored_key(self.array, c)) for c in range(start // step, (stop - 1) // step + 1)]

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


@contextlib.contextmanager
def writing(url: str, what: str, then: str) -> Iterator[None]:
    """Turn an OS error while writing ``what`` of the cache at ``url`` (a full disk, a lost mount, a permission)
    into a one-line :class:`CacheError` that says what to do ``then``."""
    try:
        yield
    except OSError as exc:
        reason = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CacheError(f"cannot write {what} of {url}: {reason}; {then}") from exc


RESUME_HINT = "what was written before is kept: fix that, then run `litcache extract ... --resume`"


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url, **(_opts(url, storage_options) or {}))


def _cache_manifest(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The manifest of the litcache cache at ``url``, or None when ``url`` holds none."""
    try:
        group = zarr.open_group(url, mode="r", storage_options=_opts(url, storage_options))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    manifest = cast(dict[str, Any], group.attrs.get("litcache", {}))
    return manifest if manifest.get("format") == FORMAT else None


def _opts(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(storage_options) if storage_options and "://" in url else None


class Cache:
    """An open cache: manifest, arrays and the progress record."""

    def __init__(self, group: zarr.Group, url: str) -> None:
        self.group = group
        self.url = url
        manifest = dict(cast(dict[str, Any], group.attrs.get("litcache", {})))
        if manifest.get("format") != FORMAT:
            raise CacheError(f"{url} is a Zarr group but not a litcache cache (no 'litcache' manifest)")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CacheError(
                f"{url} has cache format version {manifest.get('format_version')}; this litcache reads "
                f"version {FORMAT_VERSION}: re-extract it with this version"
            )
        if manifest.get("creating"):
            raise CacheError(
                f"{url} was interrupted while its arrays were being created and holds no data: "
                "run `litcache extract ... --overwrite` to start it again"
            )
        self.manifest: dict[str, Any] = manifest
        self._arrays: dict[str, zarr.Array] = {}
        self._codecs: dict[str, ChunkCodec | None] = {}

    # -- layout -----------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def samples(self) -> int:
        return int(self.manifest["data"]["samples"])

    @property
    def views(self) -> int:
        return int(self.manifest["views"])

    @property
    def num_sections(self) -> int:
        return len(self.manifest["teacher"]["sections"])

    @property
    def rows_per_chunk(self) -> int:
        return int(self.manifest["rows_per_chunk"])

    @property
    def rows_per_unit(self) -> int:
        return int(self.manifest["rows_per_unit"])

    @property
    def num_units(self) -> int:
        return math.ceil(self.rows / self.rows_per_unit)

    def unit_rows(self, unit: int) -> tuple[int, int]:
        start = unit * self.rows_per_unit
        return start, min(start + self.rows_per_unit, self.rows)

    def chunk_ranges(self, rows: range | None = None, step: int | None = None) -> list[tuple[int, int]]:
        """Whole-chunk row ranges covering ``rows`` (default: all rows); ragged at the range's ends.

        ``step`` (a multiple of ``rows_per_chunk``, e.g. ``rows_per_unit``) makes them whole units instead.
        """
        rows = rows if rows is not None else range(self.rows)
        step = step or self.rows_per_chunk
        first = rows.start // step * step
        return [(max(s, rows.start), min(s + step, rows.stop)) for s in range(first, rows.stop, step) if s < rows.stop]

    def boundary_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of b0..bS (b0 is stored, or recomputed from ``input`` by the frozen stem: see ``b0_stored``)."""
        return [tuple(s) for s in self.manifest["teacher"]["boundary_shapes"]]

    @property
    def b0_stored(self) -> bool:
        """Whether ``boundary/0`` is an array of the cache (else section 1's input is the stem of ``input``)."""
        return self.manifest["teacher"].get("b0") == "stored"

    def stored_boundaries(self) -> list[int]:
        """Indices k of the ``boundary/k`` arrays, in order."""
        return list(range(0 if self.b0_stored else 1, self.num_sections + 1))

    @property
    def output_name(self) -> str:
        """The array of the teacher's outputs: ``logits`` for a classifier, ``output`` for an image model."""
        return "output" if self.manifest["teacher"].get("output") == "image" else "logits"

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:  # opening reads metadata: once per array, not per read
            try:
                self._arrays[name] = self._open(name)
            except KeyError as exc:
                raise CacheError(f"cache {self.url} lacks array {name!r}; it is corrupt or incomplete") from exc
        return self._arrays[name]

    def _open(self, name: str) -> zarr.Array:
        return cast(zarr.Array, self.group[name])

    def codec(self, name: str) -> ChunkCodec | None:
        """litcache's own chunk codec for array ``name``; None when zarr must read and write it."""
        if name not in self._codecs:
            self._codecs[name] = ChunkCodec.for_array(self.array(name))
        return self._codecs[name]

    def read(self, names: Iterable[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows start..stop of each array in ``names``: every chunk fetched concurrently (one round trip to
        the store for all), then decoded here; arrays ``ChunkCodec`` does not cover are read by zarr."""
        names = list(names)
        decoders = {name: self.codec(name) for name in names}  # opened here: zarr's sync API, not in the loop
        fetches = [(name, row, key) for name, d in decoders.items() if d for row, key in d.keys(start, stop)]
        by_zarr = [name for name, d in decoders.items() if d is None]
        prototype = default_buffer_prototype()

        async def read_all() -> list[Any]:
            reads: list[Awaitable[Any]] = [
                self.array(name).store.get(key, prototype=prototype) for name, _, key in fetches
            ]
            reads += [self.array(name).async_array.getitem(slice(start, stop)) for name in by_zarr]
            return await asyncio.gather(*reads, return_exceptions=True)

        results = sync(read_all())
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
        out = {}
        name = ""
        try:
            for (name, row, key), value in zip(fetches, results, strict=False):
                if value is None:  # zarr would read fill values here: a deleted chunk
                    raise CacheError(f"chunk {key} is missing")
                if isinstance(value, BaseException):
                    raise value
                chunk = decoders[name].decode(value.as_numpy_array())  # type: ignore[union-attr]
                chunks[name].append(chunk[max(start - row, 0) : stop - row])
            for name, value in zip(by_zarr, results[len(fetches) :], strict=True):
                if isinstance(value, BaseException):
                    raise value
                out[name] = np.asarray(value)
        except Exception as exc:  # a chunk that does not decode raises the codec's own error type
            raise CacheError(
                f"cache {self.url} is corrupt: cannot read {name} rows {start}..{stop - 1} ({exc}); check it with "
                f"`litcache inspect --verify {self.url}` and re-extract it (`litcache extract --overwrite`)"
            ) from exc
        for name, parts in chunks.items():
            if name not in out:
                out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return {name: out[name] for name in names}

    def check_unit(self, unit: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Compare ``arrays`` (all rows of ``unit``, any of the row arrays) with the unit's CRC-32s.

        ``read`` refuses a deleted chunk; this catches one whose bytes changed but still decode.
        """
        if not hasattr(self, "_record"):
            self._record = read_array(self.array(PROGRESS))
        s, e = self.unit_rows(unit)
        names = self.data_arrays()
        for name, x in arrays.items():
            if len(x) != e - s:
                raise ValueError(f"check_unit needs all {e - s} rows of unit {unit}, got {len(x)} of {name}")
            if name in names and crc32(x) != self._record[unit, 1 + names.index(name)]:
                raise CacheError(
                    f"cache {self.url} is corrupt: {name} rows {s}..{e - 1} do not match their checksum "
                    f"(a chunk was changed or deleted); run `litcache inspect --verify {self.url}` and re-extract"
                )

    # -- progress ---------------------------------------------------------------------------------------
    def data_arrays(self) -> list[str]:
        return list(self.manifest["progress_arrays"])

    def done_units(self) -> np.ndarray:
        """Boolean mask over units: which are written and vouched for by their progress record."""
        return read_array(self.array(PROGRESS), np.s_[:, 0]) == 1

    @property
    def complete(self) -> bool:
        return bool(self.done_units().all())

    def require_complete(self) -> None:
        done = self.done_units()
        if not done.all():
            raise CacheError(
                f"cache {self.url} is incomplete: {int(done.sum())} of {len(done)} units written; "
                "finish it with `litcache extract ... --resume`"
            )

    def verify(self, units: Iterable[int] | None = None) -> list[str]:
        """Re-read units and compare CRC-32s with the progress record; returns the problems found."""
        record = read_array(self.array(PROGRESS))
        names = self.data_arrays()
        problems = []
        for u in units if units is not None else range(self.num_units):
            if record[u, 0] != 1:
                s, e = self.unit_rows(u)
                problems.append(f"unit {u} (rows {s}..{e - 1}): not written")
                continue
            s, e = self.unit_rows(u)
            for j, name in enumerate(names):
                try:
                    data = read_array(self.array(name), slice(s, e))
                except Exception as exc:  # a chunk that does not decode raises the codec's own error type
                    problems.append(f"unit {u} (rows {s}..{e - 1}): {name} cannot be read ({exc})")
                    continue
                if crc32(data) != record[u, 1 + j]:
                    problems.append(f"unit {u} (rows {s}..{e - 1}): {name} does not match its checksum")
        return problems

    def boundary_stats(self) -> list[dict[str, float]]:
        """Mean, std and max |x| of each stored boundary (``stored_boundaries``) over the units written so far."""
        stats = read_array(self.array(STATS))  # (units, stored boundaries, 3)
        done = self.done_units()
        out = []
        for i, k in enumerate(self.stored_boundaries()):
            shape = self.boundary_shapes()[k]
            n = float(sum(e - s for s, e in map(self.unit_rows, np.flatnonzero(done).tolist()))) * math.prod(shape)
            total, total_sq = stats[done, i, 0].sum(), stats[done, i, 1].sum()
            mean = total / n if n else 0.0
            var = max(total_sq / n - mean * mean, 0.0) if n else 0.0
            absmax = float(stats[done, i, 2].max()) if done.any() else 0.0
            out.append({"boundary": k, "mean": float(mean), "std": math.sqrt(var), "abs_max": absmax})
        return out


class CacheWriter(Cache):
    """A cache opened for writing units."""

    def _open(self, name: str) -> zarr.Array:
        # every chunk is written, even an all-zero one: the progress record, not chunk presence, says what is
        # done, and skipping the emptiness test saves a pass over each chunk
        return super()._open(name).with_config({"write_empty_chunks": True})

    def keepbits(self, name: str) -> int:
        """Mantissa bits kept in array ``name``'s stored values (store.bitround_keepbits for boundaries); 0: exact."""
        if not name.startswith("boundary/"):
            return 0
        return int(self.manifest.get("store", {}).get("bitround_keepbits", 0))

    def write_unit(self, unit: int, arrays: Mapping[str, np.ndarray], stats: np.ndarray | None = None) -> None:
        """Write one whole unit of every data array, then its progress record.

        ``stats`` (B, 3): sum, sum of squares and max |x| per stored boundary of the values as stored (bit-rounded
        when ``store.bitround_keepbits`` is set), when the caller has them already.
        """
        with writing(self.url, f"unit {unit}", RESUME_HINT):
            self._write_unit(unit, arrays, stats)

    def _write_unit(self, unit: int, arrays: Mapping[str, np.ndarray], stats: np.ndarray | None) -> None:
        s, e = self.unit_rows(unit)
        names = self.data_arrays()
        missing = set(names) - set(arrays)
        if missing:
            raise CacheError(f"unit {unit}: no data for {sorted(missing)}")
        record = np.zeros(1 + len(names), dtype=np.uint32)
        bounds = [n for n in names if n.startswith("boundary/")]
        final = np.zeros((len(bounds), len(STAT_FIELDS))) if stats is None else np.array(stats, np.float64)
        stored: list[tuple[Any, str, Any]] = []  # (store, key, bytes) of the chunks encoded here
        for j, name in enumerate(names):
            x = arrays[name]
            if len(x) != e - s:
                raise CacheError(f"unit {unit}: {name} has {len(x)} rows, expected {e - s}")
            keepbits = self.keepbits(name)
            if keepbits:  # a no-op when the extractor rounded on the device; checksums are of what is stored
                x = bitround(x, keepbits)
            codec = self.codec(name)
            if codec is not None and self.array(name).chunks[0] == self.rows_per_unit:  # the unit is one chunk
                stored.append((self.array(name).store, stored_key(self.array(name), unit), codec.encode(x)))
            else:
                self.array(name)[s:e] = x
            record[1 + j] = crc32(x)
            if name.startswith("boundary/") and stats is None:
                k = bounds.index(name)
                x64 = x.astype(np.float64)
                final[k] = (x64.sum(), np.square(x64).sum(), np.abs(x64).max())
        prototype = default_buffer_prototype()

        async def store_all() -> None:
            await asyncio.gather(*(store.set(key, prototype.buffer.from_bytes(data)) for store, key, data in stored))

        if stored:
            sync(store_all())
        self.array(STATS)[unit] = final
        record[0] = 1
        self.array(PROGRESS)[unit] = record  # last: the record vouches for data that is already stored

    def stored_bytes(self) -> int:
        """Bytes the row arrays take in the store (one listing per array)."""
        return sum(int(self.array(name).nbytes_stored()) for name in self.data_arrays())

    def stored_bytes_of_unit(self, unit: int) -> int:
        """Bytes one written unit takes in the store (a size look-up per array)."""
        total = 0
        for name in self.data_arrays():
            arr = self.array(name)
            key = stored_key(arr, (unit * self.rows_per_unit) // arr.shards[0] if arr.shards else unit)
            with contextlib.suppress(FileNotFoundError):  # an all-fill chunk is not stored at all
                total += sync(arr.store.getsize(key))
        return total

    def finish(self) -> dict[str, Any]:
        """Mark the manifest complete (after every unit is) and record boundary statistics."""
        self.require_complete()
        manifest = dict(self.manifest)
        manifest["complete"] = True
        manifest["boundary_stats"] = self.boundary_stats()
        with writing(self.url, "the final manifest", RESUME_HINT):
            self.group.attrs["litcache"] = manifest
        self.manifest = manifest
        return manifest


def create_cache(
    url: str,
    manifest: dict[str, Any],
    specs: Sequence[ArraySpec],
    cfg: StoreConfig,
    small: Mapping[str, np.ndarray],
    storage_options: Mapping[str, Any] | None = None,
) -> CacheWriter:
    """Create an empty cache at ``url`` with the row arrays ``specs`` and small arrays ``small``."""
    rows = int(manifest["rows"])
    chunk = rows_per_chunk(specs, cfg.chunk_mb, rows)
    unit = chunk * cfg.shard_chunks if cfg.shard_chunks else chunk
    manifest = {
        **manifest,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rows_per_chunk": chunk,
        "rows_per_unit": unit,
        "progress_arrays": [s.name for s in specs],
        "arrays": {s.name: {"row_shape": list(s.row_shape), "dtype": s.dtype} for s in specs},
        "complete": False,
    }
    # a provisional manifest from the first write on: an interrupted creation is still recognisably a cache
    # (--overwrite may delete it) that no reader accepts; the full manifest replaces it last
    provisional: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "creating": True}
    then = "free some space (or fix the store), then start again with `litcache extract ... --overwrite`"
    with writing(url, "the new cache's arrays", then):
        group = zarr.open_group(
            url, mode="w", storage_options=_opts(url, storage_options), attributes={"litcache": provisional}
        )
        for spec in specs:
            group.create_array(
                spec.name,
                shape=(rows, *spec.row_shape),
                chunks=(chunk, *spec.row_shape),
                shards=(unit, *spec.row_shape) if cfg.shard_chunks else None,
                dtype=spec.dtype,
                fill_value=0,
                dimension_names=("row",) + tuple(f"d{i}" for i in range(1, len(spec.row_shape) + 1)),
                **build_codecs(cfg),
            )
        units = math.ceil(rows / unit)
        group.create_array(
            PROGRESS,
            shape=(units, 1 + len(specs)),
            chunks=(1, 1 + len(specs)),
            dtype="uint32",
            fill_value=0,
            config={"write_empty_chunks": True},
        )
        n_bounds = sum(s.name.startswith("boundary/") for s in specs)
        group.create_array(
            STATS,
            shape=(units, n_bounds, len(STAT_FIELDS)),
            chunks=(1, n_bounds, len(STAT_FIELDS)),
            dtype="float64",
            fill_value=0.0,
            config={"write_empty_chunks": True},
        )
        for name, value in small.items():
            arr = group.create_array(name, shape=value.shape, dtype=value.dtype, compressors=ZstdCodec(level=3))
            arr[...] = value
        group.attrs["litcache"] = manifest  # last: replaces the provisional manifest
    return CacheWriter(group, url)


def open_cache(url: str, storage_options: Mapping[str, Any] | None = None, writable: bool = False) -> Cache:
    """Open an existing cache (read-only unless ``writable``)."""
    try:
        group = zarr.open_group(url, mode="r+" if writable else "r", storage_options=_opts(url, storage_options))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
        raise CacheError(f"no cache at {url}: run `litcache extract ... -o {url}` first") from exc
    return (CacheWriter if writable else Cache)(group, url)


def prepare_output(url: str, resume: bool, overwrite: bool, storage_options: Mapping[str, Any] | None) -> bool:
    """Decide what to do with an existing output; returns True when an existing cache is resumed."""
    if resume and overwrite:
        raise CacheError("--resume and --overwrite contradict each other: choose one")
    fs, path = _fs(url, storage_options)
    if not fs.exists(path) or (fs.isdir(path) and not fs.ls(path)):
        return False
    manifest = _cache_manifest(url, storage_options)
    if manifest is None:
        raise CacheError(
            f"{url} exists and is not a litcache cache; litcache never overwrites it: choose another output path"
        )
    if not overwrite and manifest.get("creating"):
        raise CacheError(
            f"{url} was interrupted while its arrays were being created and holds no data: "
            "pass --overwrite to start it again"
        )
    if resume:
        return True
    if overwrite:
        fs.rm(path, recursive=True)
        return False
    raise CacheError(
        f"{url} already exists; pass --resume to continue an interrupted extraction into it, "
        "or --overwrite to delete it and start again"
    )
