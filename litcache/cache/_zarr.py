"""zarr's private API, behind one door: nothing else in litcache imports from ``zarr.core``.

litcache reads and writes whole chunks of its row arrays itself (:mod:`litcache.cache.codecs`), which needs three
things zarr 3.1 does not offer publicly: running a batch of the store's coroutines on zarr's own event loop (an
fsspec store is bound to it), the store key of a chunk, and the array's v3 codec list. Each has a test in
``tests/cache/test_zarr_door.py``; ``.ci/zarr-newest`` runs them against the newest zarr 3.x that installs.
The stores' ``get``/``set``/``getsize`` coroutines, ``LocalStore.root`` (whose objects :func:`fetch` reads straight
from their files) and ``zarr.buffer`` are public API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.buffer import default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync
from zarr.storage import LocalStore


def gather(awaitables: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run ``awaitables`` concurrently on zarr's event loop; each result, or the exception it raised, in order
    (none: no trip to the loop)."""
    if not awaitables:
        return []

    async def run() -> list[Any]:
        return await asyncio.gather(*awaitables, return_exceptions=True)

    return sync(run())


def name(setting: Any) -> str | None:
    """A codec setting's name (a Blosc cname or shuffle, a byte order): zarr 3.1 holds these as enums, later
    versions as plain strings."""
    return None if setting is None else str(getattr(setting, "value", setting))


def chunk_key(arr: zarr.Array, index: int) -> str:
    """Store key of the ``index``-th stored object (chunk, or shard when sharded) along the row axis of ``arr``."""
    key = arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))
    return f"{arr.path}/{key}" if arr.path else key


def v3_codecs(arr: zarr.Array) -> tuple[Any, ...] | None:
    """The codec pipeline of a zarr v3 array, first to last; None for a zarr v2 array."""
    meta = arr.metadata
    return tuple(meta.codecs) if isinstance(meta, ArrayV3Metadata) else None


def read_objects(arr: zarr.Array, keys: Sequence[str]) -> list[Any]:
    """The stored bytes (a numpy uint8 array) of each key of ``arr``'s store: None for a key not stored, the
    exception for one that failed (see :func:`fetch`)."""
    return fetch([(arr, key) for key in keys])


def fetch(objects: Sequence[tuple[zarr.Array, str]]) -> list[Any]:
    """The stored bytes (a numpy uint8 array) of each ``(array, key)``: None for a key not stored, the exception for
    one that failed.

    A local store's objects are read here, in this thread, from their files, as ``LocalStore.get`` reads them:
    it hands each read to a thread pool through zarr's event loop, which costs the stream's readers more CPU than
    reading the file (2 ms a unit of 8 objects). Other stores' objects are fetched concurrently on zarr's loop.
    """
    out: list[Any] = [None] * len(objects)
    elsewhere = []
    for i, (arr, key) in enumerate(objects):
        if not isinstance(arr.store, LocalStore):
            elsewhere.append(i)
            continue
        try:
            out[i] = np.frombuffer((Path(arr.store.root) / key).read_bytes(), dtype=np.uint8)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            out[i] = None  # as LocalStore.get: not stored
        except OSError as exc:
            out[i] = exc
    prototype = default_buffer_prototype()
    results = gather([objects[i][0].store.get(objects[i][1], prototype=prototype) for i in elsewhere])
    for i, r in zip(elsewhere, results, strict=True):
        out[i] = r if r is None or isinstance(r, BaseException) else r.as_numpy_array()
    return out


def write_objects(items: Sequence[tuple[zarr.Array, str, bytes]]) -> None:
    """Store each ``(array, key, bytes)`` concurrently; the first failure is raised."""
    prototype = default_buffer_prototype()
    results = gather([arr.store.set(key, prototype.buffer.from_bytes(data)) for arr, key, data in items])
    for r in results:
        if isinstance(r, BaseException):
            raise r


def object_size(arr: zarr.Array, key: str) -> int:
    """Bytes of one stored object of ``arr``'s store (FileNotFoundError when it is not stored)."""
    (size,) = gather([arr.store.getsize(key)])
    if isinstance(size, BaseException):
        raise size
    return int(size)
