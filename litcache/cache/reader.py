"""Reading a cache: the manifest, the arrays, whole chunks decoded by litcache's codec, and the progress record.

The format is specified in ``docs/cache-format.md``. In short: rows are view-major (row r is sample
``r % samples`` under view ``r // samples``); every array is chunked along the row axis only, all with the
same rows per chunk; a *unit* (one chunk, or one shard when sharding is on) is the unit of writing; and a unit
counts as written only once its record in ``progress/units`` exists, which is written after its data, with a
CRC-32 of every array's bytes in the unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np
import zarr

from litcache.cache import _zarr
from litcache.cache.codecs import ChunkCodec, crc32
from litcache.cache.layout import FORMAT, FROZEN, INPUT, PROGRESS, READABLE_VERSIONS, STATS
from litcache.cache.quantize import dequantize
from litcache.errors import CacheError, store_access


def read_array(arr: zarr.Array, sel: Any = slice(None)) -> np.ndarray:
    """``arr[sel]`` typed as the ndarray it is (zarr types reads as scalars or array-likes)."""
    return np.asarray(arr[sel])


def filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_opts(url, storage_options) or {}))


def manifest_at(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest of the litcache cache at ``url``, or None when ``url`` holds none."""
    try:
        with store_access(url):  # an object store without credentials: one line that says what to do
            group = zarr.open_group(url, mode="r", storage_options=storage_opts(url, storage_options))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    manifest = cast(dict[str, Any], group.attrs.get("litcache", {}))
    return manifest if manifest.get("format") == FORMAT else None


def storage_opts(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(storage_options) if storage_options and "://" in url else None


class Cache:
    """An open cache: manifest, arrays and the progress record."""

    def __init__(self, group: zarr.Group, url: str) -> None:
        self.group = group
        self.url = url
        manifest = dict(cast(dict[str, Any], group.attrs.get("litcache", {})))
        if manifest.get("format") != FORMAT:
            raise CacheError(f"{url} is a Zarr group but not a litcache cache (no 'litcache' manifest)")
        if manifest.get("format_version") not in READABLE_VERSIONS:
            raise CacheError(
                f"{url} has cache format version {manifest.get('format_version')}; this litcache reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}: re-extract it with this version"
            )
        if manifest.get("format_version") == 3 and manifest.get("quantization"):
            raise CacheError(
                f"{url} has cache format version 3, whose quantised codes are bit planes; this litcache packs them "
                "as bit fields (version 4) and reads version 3 only where its boundaries are floats: re-extract it "
                "with this version"
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

    # -- what is stored, and how it decodes -------------------------------------------------------------------
    @property
    def quant_bits(self) -> int:
        """Bits of the boundaries' integer codes (0: float boundaries)."""
        return int((self.manifest.get("quantization") or {}).get("bits", 0))

    def is_quantized(self, name: str) -> bool:
        return name in (self.manifest.get("quantization") or {}).get("params", {})

    def quant_params_name(self, name: str) -> str:
        """The unit array of quantised boundary ``name``'s scales and zero points."""
        return str(self.manifest["quantization"]["params"][name])

    @property
    def input_stored(self) -> bool:
        """Whether the cache holds the views' pixels (``input``); else stage two regenerates them from the data
        and checks them against ``rows/input_crc``."""
        return INPUT in self.manifest["arrays"]

    def stored_names(self, names: Iterable[str]) -> list[str]:
        """The stored arrays that decode ``names``: each quantised boundary with its scales (unit arrays)."""
        out = list(names)
        out += [self.quant_params_name(n) for n in out if self.is_quantized(n)]
        return list(dict.fromkeys(out))

    def read(self, names: Iterable[str], start: int, stop: int, *, decode: bool = True) -> dict[str, np.ndarray]:
        """Rows start..stop of each array in ``names``, decoded (quantised boundaries dequantised to
        ``quantization.decoded_dtype``); ``decode=False`` gives the stored arrays (the codes of a quantised
        boundary), and an array of one row per unit in ``names`` (a unit array ``quant/k``, the progress record)
        gives the rows of the units that hold rows start..stop."""
        names = list(names)
        wanted = self.stored_names(names) if decode else names
        units = (start // self.rows_per_unit, (stop - 1) // self.rows_per_unit + 1)
        per_unit = {*self.unit_arrays(), PROGRESS}
        stored = self.read_stored({n: units if n in per_unit else (start, stop) for n in wanted})
        if decode:
            for name in names:
                if self.is_quantized(name):
                    stored[name] = self.dequantize(name, stored[name], stored[self.quant_params_name(name)], start)
        return {name: stored[name] for name in names}

    def dequantize(self, name: str, codes: np.ndarray, params: np.ndarray, start: int) -> np.ndarray:
        """The values of quantised boundary ``name`` from its codes of rows ``start``... and the scales of the units
        that hold them (``params``, from the first of those units)."""
        q = self.manifest["quantization"]
        k = int(name.rsplit("/", 1)[1])
        row_shape = self.boundary_shapes()[k]
        out = np.empty((len(codes), *row_shape), dtype=q["decoded_dtype"])
        first_unit = start // self.rows_per_unit
        for i in range(len(params)):
            s = max((first_unit + i) * self.rows_per_unit - start, 0)
            e = min((first_unit + i + 1) * self.rows_per_unit - start, len(codes))
            out[s:e] = dequantize(codes[s:e], params[i], q["bits"], row_shape, q["decoded_dtype"])
        return out

    def read_stored(self, ranges: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
        """Rows ``ranges[name]`` of each stored array: every chunk fetched (concurrently, in one round trip, from a
        remote store), then decoded here; arrays ``ChunkCodec`` does not cover are read by zarr."""
        decoders = {name: self.codec(name) for name in ranges}  # opened here: zarr's sync API, not in the loop
        fetches = [(name, row, key) for name, d in decoders.items() if d for row, key in d.keys(*ranges[name])]
        by_zarr = [name for name, d in decoders.items() if d is None]
        objects = _zarr.fetch([(self.array(name), key) for name, _, key in fetches])
        results = _zarr.gather([self.array(name).async_array.getitem(slice(*ranges[name])) for name in by_zarr])
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in ranges}
        out = {}
        name = ""
        try:
            for (name, row, key), value in zip(fetches, objects, strict=True):
                if value is None:  # zarr would read fill values here: a deleted chunk
                    raise CacheError(f"chunk {key} is missing")
                if isinstance(value, BaseException):
                    raise value
                start, stop = ranges[name]
                chunk = decoders[name].decode(value)  # type: ignore[union-attr]
                chunks[name].append(chunk[max(start - row, 0) : stop - row])
            for name, value in zip(by_zarr, results, strict=True):
                if isinstance(value, BaseException):
                    raise value
                out[name] = np.asarray(value)
        except Exception as exc:  # a chunk that does not decode raises the codec's own error type
            start, stop = ranges.get(name, (0, 0))
            raise CacheError(
                f"cache {self.url} is corrupt: cannot read {name} rows {start}..{stop - 1} ({exc}); check it with "
                f"`litcache inspect --verify {self.url}` and re-extract it (`litcache extract --overwrite`)"
            ) from exc
        for name, parts in chunks.items():
            if name not in out:
                out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out

    def read_unit(
        self, unit: int, names: Iterable[str], verify: bool = True, *, decode: bool = True
    ) -> dict[str, np.ndarray]:
        """All rows of ``unit`` of each array in ``names``, checked against the unit's CRC-32s (``verify``), then
        decoded; ``decode=False`` gives them as stored, a quantised boundary's codes with its scales (the unit's
        row of ``quant_params_name``), for a reader that dequantises them later."""
        s, e = self.unit_rows(unit)
        names = list(names)
        # with the unit's checksums, in the same round trip to the store as its data
        stored = self.read([*self.stored_names(names), *([PROGRESS] if verify else [])], s, e, decode=False)
        if verify:
            self.check_unit(unit, stored, stored.pop(PROGRESS)[0])
        if not decode:
            return stored
        for name in names:
            if self.is_quantized(name):
                stored[name] = self.dequantize(name, stored[name], stored[self.quant_params_name(name)], s)
        return {name: stored[name] for name in names}

    def check_unit(self, unit: int, arrays: Mapping[str, np.ndarray], record: np.ndarray | None = None) -> None:
        """Compare ``arrays`` (as stored: all rows of ``unit`` of any row array, the unit's row of any unit array)
        with the unit's CRC-32s: ``record``, its row of the progress record, read here when not given.

        ``read`` refuses a deleted chunk; this catches one whose bytes changed but still decode.
        """
        if record is None:
            record = self.read_stored({PROGRESS: (unit, unit + 1)})[PROGRESS][0]
        s, e = self.unit_rows(unit)
        columns = self.data_arrays() + self.unit_arrays()
        for name, x in arrays.items():
            per_unit = name in self.unit_arrays()
            if len(x) != (1 if per_unit else e - s):
                raise ValueError(f"check_unit needs all {e - s} rows of unit {unit}, got {len(x)} of {name}")
            if name in columns and crc32(x[0] if per_unit else x) != record[1 + columns.index(name)]:
                raise CacheError(
                    f"cache {self.url} is corrupt: {name} rows {s}..{e - 1} do not match their checksum "
                    f"(a chunk was changed or deleted); run `litcache inspect --verify {self.url}` and re-extract"
                )

    def frozen_arrays(self) -> dict[str, np.ndarray]:
        """The teacher's parameters and buffers outside its sections (``teacher/frozen/<key>``), by state-dict key."""
        group = cast(zarr.Group, self.group[FROZEN])
        return {name: np.asarray(arr[...]) for name, arr in group.arrays()}

    # -- progress ---------------------------------------------------------------------------------------
    def data_arrays(self) -> list[str]:
        """The row arrays, in the order of the progress record's checksums."""
        return list(self.manifest["progress_arrays"])

    def unit_arrays(self) -> list[str]:
        """The arrays of one row per unit (a quantised boundary's scales), whose checksums follow the row arrays'."""
        return list(self.manifest.get("unit_arrays", {}))

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
        names = self.data_arrays() + self.unit_arrays()
        problems = []
        for u in units if units is not None else range(self.num_units):
            if record[u, 0] != 1:
                s, e = self.unit_rows(u)
                problems.append(f"unit {u} (rows {s}..{e - 1}): not written")
                continue
            s, e = self.unit_rows(u)
            for j, name in enumerate(names):
                try:
                    per_unit = name in self.unit_arrays()
                    data = read_array(self.array(name), u if per_unit else slice(s, e))
                except Exception as exc:  # a chunk that does not decode raises the codec's own error type
                    problems.append(f"unit {u} (rows {s}..{e - 1}): {name} cannot be read ({exc})")
                    continue
                if crc32(data) != record[u, 1 + j]:
                    problems.append(f"unit {u} (rows {s}..{e - 1}): {name} does not match its checksum")
        return problems

    def boundary_stats(self) -> list[dict[str, float]]:
        """Mean, std, max |x| and the error bound (the largest error of a stored value against the teacher's float32;
        format version 3) of each stored boundary (``stored_boundaries``) over the units written so far."""
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
            entry = {"boundary": k, "mean": float(mean), "std": math.sqrt(var), "abs_max": absmax}
            if stats.shape[2] > 3:  # format version 3: the largest error of a stored value
                entry["error_bound"] = float(stats[done, i, 3].max()) if done.any() else 0.0
            out.append(entry)
        return out


def open_group(url: str, storage_options: Mapping[str, Any] | None, mode: str) -> zarr.Group:
    """The Zarr group of the cache at ``url``; a one-line error when there is none."""
    try:
        with store_access(url):  # an object store without credentials: one line that says what to do
            return zarr.open_group(url, mode=mode, storage_options=storage_opts(url, storage_options))  # type: ignore[arg-type]
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
        raise CacheError(f"no cache at {url}: run `litcache extract ... -o {url}` first") from exc


def open_cache(url: str, storage_options: Mapping[str, Any] | None = None) -> Cache:
    """Open an existing cache for reading (:func:`litcache.cache.writer.open_writer` opens one to write units)."""
    return Cache(open_group(url, storage_options, "r"), url)
