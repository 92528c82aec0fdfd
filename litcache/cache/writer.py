"""Writing a cache: creating its arrays, writing whole units with their progress record, finishing it.

Each unit has one writer, which stores every row array's rows of the unit first, then the unit's statistics, and
its record in ``progress/units`` last, so a crash leaves at most units without a record (``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import errno
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from litcache.cache import _zarr
from litcache.cache.codecs import bitround, build_codecs, crc32
from litcache.cache.layout import (
    FORMAT,
    FORMAT_VERSION,
    PROGRESS,
    STAT_FIELDS,
    STATS,
    ArraySpec,
    float_error,
    rows_per_chunk,
)
from litcache.cache.reader import Cache, filesystem, manifest_at, open_group, storage_opts
from litcache.config import MANTISSA_BITS, StoreConfig
from litcache.errors import CacheError


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


class CacheWriter(Cache):
    """A cache opened for writing units."""

    def _open(self, name: str) -> zarr.Array:
        # every chunk is written, even an all-zero one: the progress record, not chunk presence, says what is
        # done, and skipping the emptiness test saves a pass over each chunk
        return super()._open(name).with_config({"write_empty_chunks": True})

    def keepbits(self, name: str) -> int:
        """Mantissa bits kept in array ``name``'s stored values (store.bitround_keepbits for float boundaries);
        0: exact (or quantised codes)."""
        if not name.startswith("boundary/") or self.quant_bits:
            return 0
        return int(self.manifest.get("store", {}).get("bitround_keepbits", 0))

    def write_unit(self, unit: int, arrays: Mapping[str, np.ndarray], stats: np.ndarray | None = None) -> None:
        """Write one whole unit of every row array and every unit array (``quant/k``: the unit's own row), then its
        progress record.

        ``stats`` (B, 3): sum, sum of squares and max |x| per stored boundary of the values as stored (bit-rounded
        when ``store.bitround_keepbits`` is set, dequantised when quantised), when the caller has them already;
        a quantised unit needs them.
        """
        with writing(self.url, f"unit {unit}", RESUME_HINT):
            self._write_unit(unit, arrays, stats)

    def _write_unit(self, unit: int, arrays: Mapping[str, np.ndarray], stats: np.ndarray | None) -> None:
        s, e = self.unit_rows(unit)
        names, per_unit = self.data_arrays(), self.unit_arrays()
        missing = set(names + per_unit) - set(arrays)
        if missing:
            raise CacheError(f"unit {unit}: no data for {sorted(missing)}")
        if self.quant_bits and stats is None:
            raise CacheError(f"unit {unit}: a quantised unit needs the statistics of its dequantised boundaries")
        record = np.zeros(1 + len(names) + len(per_unit), dtype=np.uint32)
        bounds = [n for n in names if n.startswith("boundary/")]
        final = np.zeros((len(bounds), len(STAT_FIELDS))) if stats is None else np.array(stats, np.float64)
        stored: list[tuple[zarr.Array, str, Any]] = []  # (array, key, bytes) of the chunks encoded here
        for j, name in enumerate(names):
            x = arrays[name]
            if len(x) != e - s:
                raise CacheError(f"unit {unit}: {name} has {len(x)} rows, expected {e - s}")
            keepbits = self.keepbits(name)
            if keepbits:  # a no-op when the extractor rounded on the device; checksums are of what is stored
                x = bitround(x, keepbits)
            codec = self.codec(name)
            if codec is not None and self.array(name).chunks[0] == self.rows_per_unit:  # the unit is one chunk
                stored.append((self.array(name), _zarr.chunk_key(self.array(name), unit), codec.encode(x)))
            else:
                self.array(name)[s:e] = x
            record[1 + j] = crc32(x)
            if name.startswith("boundary/") and stats is None:
                k = bounds.index(name)
                x64 = x.astype(np.float64)
                peak = float(np.abs(x64).max())
                error = float_error(peak, keepbits or MANTISSA_BITS[str(x.dtype)])
                final[k] = (x64.sum(), np.square(x64).sum(), peak, error)
        if stored:
            _zarr.write_objects(stored)
        for j, name in enumerate(per_unit, start=1 + len(names)):
            x = np.ascontiguousarray(arrays[name], dtype=self.array(name).dtype)
            self.array(name)[unit] = x
            record[j] = crc32(x)
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
            key = _zarr.chunk_key(arr, (unit * self.rows_per_unit) // arr.shards[0] if arr.shards else unit)
            with contextlib.suppress(FileNotFoundError):  # an all-fill chunk is not stored at all
                total += _zarr.object_size(arr, key)
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
    unit_specs: Sequence[ArraySpec] = (),
) -> CacheWriter:
    """Create an empty cache at ``url`` with the row arrays ``specs``, the arrays of one row per unit
    ``unit_specs`` (a quantised boundary's scales) and small arrays ``small``."""
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
        "unit_arrays": {s.name: {"row_shape": list(s.row_shape), "dtype": s.dtype} for s in unit_specs},
        "complete": False,
    }
    # a provisional manifest from the first write on: an interrupted creation is still recognisably a cache
    # (--overwrite may delete it) that no reader accepts; the full manifest replaces it last
    provisional: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "creating": True}
    then = "free some space (or fix the store), then start again with `litcache extract ... --overwrite`"
    with writing(url, "the new cache's arrays", then):
        group = zarr.open_group(
            url, mode="w", storage_options=storage_opts(url, storage_options), attributes={"litcache": provisional}
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
        for spec in unit_specs:  # one chunk per unit: each unit's writer writes its own
            group.create_array(
                spec.name,
                shape=(units, *spec.row_shape),
                chunks=(1, *spec.row_shape),
                dtype=spec.dtype,
                fill_value=0,
                config={"write_empty_chunks": True},
            )
        group.create_array(
            PROGRESS,
            shape=(units, 1 + len(specs) + len(unit_specs)),
            chunks=(1, 1 + len(specs) + len(unit_specs)),
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


def prepare_output(url: str, resume: bool, overwrite: bool, storage_options: Mapping[str, Any] | None) -> bool:
    """Decide what to do with an existing output; returns True when an existing cache is resumed."""
    if resume and overwrite:
        raise CacheError("--resume and --overwrite contradict each other: choose one")
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path) or (fs.isdir(path) and not fs.ls(path)):
        return False
    manifest = manifest_at(url, storage_options)
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


def open_writer(url: str, storage_options: Mapping[str, Any] | None = None) -> CacheWriter:
    """Open an existing cache to write (or rewrite) units: an interrupted extraction, or one dask task's share."""
    return CacheWriter(open_group(url, storage_options, "r+"), url)
