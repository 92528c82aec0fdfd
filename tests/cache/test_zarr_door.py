"""Each private zarr use of ``litcache.cache._zarr``, pinned against what zarr itself reads and writes.

Torch-free, like the whole ``litcache.cache`` package: ``.ci/zarr-newest`` runs these tests (with the other
torch-free cache tests) against the newest zarr 3.x that installs, so a zarr release that moves its internals
shows up here first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

from litcache.cache import _zarr

pytestmark = pytest.mark.zarr_only


def rows_array(path: Path, shards: tuple[int, ...] | None = None) -> tuple[zarr.Array, np.ndarray]:
    x = np.arange(64 * 3 * 2, dtype=np.float32).reshape(64, 3, 2)
    arr = zarr.create_array(
        str(path), shape=x.shape, chunks=(16, 3, 2), shards=shards, dtype="float32", compressors=ZstdCodec(level=1)
    )
    arr[:] = x
    return arr, x


def test_gather_runs_on_zarrs_loop_and_returns_failures_in_place() -> None:
    async def value(v: int) -> int:
        await asyncio.sleep(0)
        return v

    async def fail() -> int:
        raise ValueError("boom")

    results = _zarr.gather([value(1), fail(), value(3)])
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)


def test_chunk_key_is_where_zarr_stores_the_chunk(tmp_path: Path) -> None:
    arr, _ = rows_array(tmp_path / "a.zarr")
    stored = {p.relative_to(tmp_path / "a.zarr").as_posix() for p in (tmp_path / "a.zarr").rglob("*") if p.is_file()}
    keys = {_zarr.chunk_key(arr, i) for i in range(4)}
    assert keys <= stored and len(keys) == 4
    sharded, _ = rows_array(tmp_path / "s.zarr", shards=(32, 3, 2))
    files = {p.relative_to(tmp_path / "s.zarr").as_posix() for p in (tmp_path / "s.zarr").rglob("c/*/*/*")}
    assert {_zarr.chunk_key(sharded, i) for i in range(2)} == files  # shards


def test_v3_codecs_lists_the_pipeline_and_refuses_v2(tmp_path: Path) -> None:
    arr, _ = rows_array(tmp_path / "a.zarr")
    codecs = _zarr.v3_codecs(arr)
    assert codecs is not None and isinstance(codecs[0], BytesCodec) and isinstance(codecs[-1], ZstdCodec)
    blosc = zarr.create_array(
        str(tmp_path / "b.zarr"), shape=(8,), dtype="uint8", compressors=BloscCodec(cname="zstd", clevel=1)
    )
    assert isinstance(_zarr.v3_codecs(blosc)[-1], BloscCodec)  # type: ignore[index]
    v2 = zarr.create_array(str(tmp_path / "v2.zarr"), shape=(8,), dtype="uint8", zarr_format=2)
    assert _zarr.v3_codecs(v2) is None


def test_read_objects_gives_the_stored_bytes(tmp_path: Path) -> None:
    arr, x = rows_array(tmp_path / "a.zarr")
    chunk, missing = _zarr.read_objects(arr, [_zarr.chunk_key(arr, 1), "c/9/0/0"])
    assert missing is None
    decoded = np.frombuffer(numcodecs.Zstd().decode(chunk.tobytes()), dtype=np.float32).reshape(16, 3, 2)
    np.testing.assert_array_equal(decoded, x[16:32])


def test_fetch_reads_what_the_store_holds_local_or_not(tmp_path: Path) -> None:
    local, x = rows_array(tmp_path / "a.zarr")
    memory = zarr.create_array(
        zarr.storage.MemoryStore(), shape=x.shape, chunks=(16, 3, 2), dtype="float32", compressors=None
    )
    memory[:] = x
    key = _zarr.chunk_key(local, 2)
    got = _zarr.fetch([(local, key), (memory, key), (local, "c/9/0/0"), (memory, "c/9/0/0")])
    assert isinstance(local.store, zarr.storage.LocalStore) and not isinstance(memory.store, zarr.storage.LocalStore)
    assert np.array_equal(got[0], np.frombuffer((tmp_path / "a.zarr" / key).read_bytes(), dtype=np.uint8))
    assert np.array_equal(got[1].view(np.float32).reshape(16, 3, 2), x[32:48])  # stored raw in memory
    assert got[2] is None and got[3] is None  # not stored, either way


def test_write_objects_stores_what_zarr_reads(tmp_path: Path) -> None:
    arr, x = rows_array(tmp_path / "a.zarr")
    new = np.full((16, 3, 2), 7.5, dtype=np.float32)
    _zarr.write_objects([(arr, _zarr.chunk_key(arr, 2), numcodecs.Zstd(level=1).encode(new))])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[32:48], new)
    np.testing.assert_array_equal(arr[:32], x[:32])  # the other chunks are untouched


def test_object_size_is_the_stored_size(tmp_path: Path) -> None:
    arr, _ = rows_array(tmp_path / "a.zarr")
    key = _zarr.chunk_key(arr, 0)
    assert _zarr.object_size(arr, key) == (tmp_path / "a.zarr" / key).stat().st_size
    with pytest.raises(FileNotFoundError):
        _zarr.object_size(arr, "c/9/0/0")


def test_chunk_key_of_an_array_in_a_group(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    arr = group.create_array("boundary/1", shape=(32, 2), chunks=(16, 2), dtype="float32")
    arr[:] = 1.0
    assert _zarr.chunk_key(arr, 1) == "boundary/1/c/1/0"
    assert (tmp_path / "g.zarr" / "boundary/1/c/1/0").is_file()
