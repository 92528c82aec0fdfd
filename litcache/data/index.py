"""The sample index: where each sample's image bytes are (file, offset, size), its label and its image size.

Built once per set of files by one streaming pass (a tar shard is read member by member, never whole), which
also computes the data fingerprint. It is kept as a small sidecar file (``data.index_dir``, one ``.npz`` of
plain arrays, no pickle) named by what identifies the files: their names relative to the source folder, sizes
and modification times. So sample i is found from any process, dask workers included, with one ranged read.

Fingerprint: SHA-256 over, for every sample in order, its label (int64) and the SHA-256 of its *encoded*
image bytes (first 16 bytes). It needs no decoding, names no path, and the fingerprint of the first n samples
comes from the index alone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import re
import tarfile
from array import array
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from zlib_ng import zlib_ng

from litcache.data.decode import IMAGE_EXTS, DecodeFailure, image_size
from litcache.data.sources import Files, _filesystem
from litcache.errors import DataError

log = logging.getLogger(__name__)

INDEX_VERSION = 1
DIGEST_BYTES = 16
ARRAYS = ("file_id", "offset", "size", "label", "height", "width", "crc", "digest", "keys")
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key/extension split: key up to the first dot


@dataclass(frozen=True)
class SampleIndex:
    """Per sample (N,): which file, where its image bytes are, its label, image size and checksums."""

    files: Files = field(compare=False)
    file_id: np.ndarray  # (N,) int32: which of the files
    offset: np.ndarray  # (N,) int64: first byte of the image in the file
    size: np.ndarray  # (N,) int64: bytes of the image
    label: np.ndarray  # (N,) int64
    height: np.ndarray  # (N,) int32, from the image header
    width: np.ndarray  # (N,) int32
    crc: np.ndarray  # (N,) uint32: CRC-32 of the image bytes, checked on every read
    digest: np.ndarray  # (N, 16) uint8: SHA-256 of the image bytes, first 16 bytes
    keys: np.ndarray  # (K,) uint8: the samples' keys, UTF-8, newline-separated
    complete: bool = True  # False: the pass stopped at a --limit, the files hold more

    def __len__(self) -> int:
        return len(self.label)

    def key(self, i: int) -> str:
        return self.keys.tobytes().split(b"\n")[i].decode()

    def where(self, i: int) -> str:
        """Sample i for a message: the shard (or image folder) and the sample's key."""
        if self.files.kind == "folder":
            return f"image folder {self.files.base}, file {self.files.names[int(self.file_id[i])]}"
        return f"shard {self.files.path(int(self.file_id[i]))}, sample {self.key(i)!r}"

    def head(self, n: int) -> SampleIndex:
        """The first n samples."""
        if n >= len(self):
            return self
        cut = {name: getattr(self, name)[:n] for name in ARRAYS if name != "keys"}
        keys = b"\n".join(self.keys.tobytes().split(b"\n")[:n])
        return replace(self, **cut, keys=np.frombuffer(keys, dtype=np.uint8), complete=False)

    def fingerprint(self) -> str:
        rec = np.zeros(len(self), dtype=[("label", "<i8"), ("digest", "u1", (DIGEST_BYTES,))])
        rec["label"], rec["digest"] = self.label, self.digest
        h = hashlib.sha256(b"litcache-data-v1:label+sha256(encoded image)\n")
        h.update(rec.tobytes())
        return "sha256:" + h.hexdigest()


# the index's per-sample integer columns and their dtypes
COLUMNS = {
    "file_id": np.int32,
    "offset": np.int64,
    "size": np.int64,
    "label": np.int64,
    "height": np.int32,
    "width": np.int32,
    "crc": np.uint32,
}


class _Builder:
    """Typed arrays filled sample by sample: about 60 bytes a sample, whatever the images' size."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.cols = {name: array(np.dtype(dtype).char) for name, dtype in COLUMNS.items()}
        self.digest = bytearray()
        self.keys: list[bytes] = []

    def __len__(self) -> int:
        return len(self.cols["label"])

    def add(self, where: str, key: str, file_id: int, offset: int, data: bytes, label: int) -> None:
        try:
            height, width = image_size(data)
        except DecodeFailure as exc:
            raise DataError(f"{where}: cannot read the image ({exc}); replace or remove the sample") from exc
        crc = zlib_ng.crc32(data) & 0xFFFFFFFF
        row = (file_id, offset, len(data), label, height, width, crc)
        for column, value in zip(self.cols.values(), row, strict=True):
            column.append(value)
        self.digest += hashlib.sha256(data).digest()[:DIGEST_BYTES]
        self.keys.append(key.encode())

    def finish(self, complete: bool) -> SampleIndex:
        if not len(self):
            raise DataError(f"no samples in {self.files.identity('')} under {self.files.base}")
        cols = {name: np.array(self.cols[name], dtype=dtype) for name, dtype in COLUMNS.items()}
        digest = np.frombuffer(bytes(self.digest), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        keys = np.frombuffer(b"\n".join(self.keys), dtype=np.uint8)
        return SampleIndex(self.files, **cols, digest=digest, keys=keys, complete=complete)


def _label(where: str, payload: bytes) -> int:
    try:
        return int(payload.decode().strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{where}: the .cls label is not an integer: {payload[:40]!r}") from exc


def _scan_shard(files: Files, i: int, builder: _Builder, limit: int | None) -> bool:
    """Index shard i member by member; False when ``limit`` samples are reached."""
    shard = files.path(i)
    current: dict[str, Any] = {}
    last_key = None

    def flush() -> None:
        where = f"shard {shard}, sample {current['key']!r}"
        if "image" not in current:
            raise DataError(f"{where} has no image (.{', .'.join(IMAGE_EXTS)}); every sample needs one")
        if "label" not in current:
            raise DataError(f"{where} has no label (.cls); every sample needs one")
        builder.add(where, current["key"], i, current["offset"], current["image"], current["label"])

    reach = tarfile.BLOCKSIZE  # how long the archive must be: a header, or as the last one read says: its data,
    # padded, and a block after it
    try:
        with files.open(i) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                reach = (
                    member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE + tarfile.BLOCKSIZE
                )
                m = _KEY_EXT.match(member.name)
                if not member.isfile() or m is None:
                    continue
                key, ext = m.group(1), m.group(2).lower()
                if current and current["key"] != key:
                    flush()
                    last_key, current = current["key"], {}
                    if limit is not None and len(builder) >= limit:
                        return False
                current["key"] = key
                if ext in IMAGE_EXTS and "image" not in current:
                    current["image"] = _read_member(tar, member)
                    current["offset"] = member.offset_data
                elif ext == "cls":
                    current["label"] = _label(f"shard {shard}, sample {key!r}", _read_member(tar, member))
            end = tar.offset
        # a shard cut on a 512-byte block boundary reads as a shorter archive: its size, as listed, must hold the
        # end-of-archive marker (two zero blocks) after its last member; checked before the last sample, which a
        # cut may have left without its label
        if files.sizes[i] < end + 1024:
            raise EOFError(f"it ends at byte {files.sizes[i]}, before an end-of-archive marker after byte {end}")
        if any(files.read(i, end, end + 1024)):
            raise tarfile.ReadError(f"no end-of-archive marker at byte {end}")
        if current:
            flush()
            last_key = current["key"]
    except (tarfile.TarError, EOFError, OSError) as exc:
        whole = current.get("key") if {"image", "label"} <= current.keys() else last_key  # the last whole sample
        after = f"after sample {whole!r}" if whole else "at its start"
        # by cause: the file (at its listed size) ends before the data its last header promises
        what = "truncated" if isinstance(exc, EOFError) or files.sizes[i] < reach else "corrupt"
        raise DataError(f"shard {shard} is {what} {after} ({exc}); copy it again or remove it from the source") from exc
    return limit is None or len(builder) < limit


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None
    data = f.read()
    if len(data) != member.size:
        raise EOFError("unexpected end of data")
    return data


def build_index(files: Files, limit: int | None = None) -> SampleIndex:
    """Index ``files`` in one streaming pass (stopping after ``limit`` samples when given)."""
    builder = _Builder(files)
    rank = {c: k for k, c in enumerate(files.classes)}
    for i in range(len(files)):
        if files.kind == "wds":
            if not _scan_shard(files, i, builder, limit):
                return builder.finish(complete=False)
            continue
        name = files.names[i]
        where = f"image folder {files.base}, file {name}"
        if name.split("/")[0] not in rank:
            raise DataError(f"{where}: class folder {name.split('/')[0]!r} is not one of {list(files.classes)}")
        try:
            data = bytes(files.read(i, 0, files.sizes[i]))
        except (EOFError, OSError) as exc:
            raise DataError(f"{where}: cannot read it ({exc})") from exc
        builder.add(where, name.rsplit(".", 1)[0], i, 0, data, rank[name.split("/")[0]])
        if limit is not None and len(builder) >= limit:
            return builder.finish(complete=i == len(files) - 1)
    return builder.finish(complete=True)


def _sidecar(files: Files, index_dir: str) -> tuple[Any, str] | None:
    if not index_dir:
        return None
    fs, folder = _filesystem(index_dir)
    return fs, posixpath.join(folder, f"{files.kind}-{files.stamp()}.npz")


def _save(index: SampleIndex, where: tuple[Any, str]) -> None:
    fs, path = where
    buf = io.BytesIO()
    meta = np.frombuffer(f"litcache-index-v{INDEX_VERSION}".encode(), dtype=np.uint8)
    np.savez(buf, meta=meta, **{name: getattr(index, name) for name in ARRAYS})
    try:
        if fs is not None:
            fs.pipe_file(path, buf.getvalue())
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)  # atomic: processes indexing the same files at once each write a whole file
    except OSError as exc:
        log.warning("cannot keep the sample index at %s (%s); it is rebuilt by every process", path, exc)


def _load(files: Files, where: tuple[Any, str]) -> SampleIndex | None:
    fs, path = where
    try:
        raw = fs.cat_file(path) if fs is not None else open(path, "rb").read()  # noqa: SIM115
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if z["meta"].tobytes().decode() != f"litcache-index-v{INDEX_VERSION}":
                return None
            return SampleIndex(files, **{name: z[name] for name in ARRAYS})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring the unreadable sample index %s (%s)", path, exc)
        return None


def open_index(files: Files, index_dir: str, limit: int | None = None) -> SampleIndex:
    """The index of ``files`` from its sidecar in ``index_dir``, else built now and kept there.

    With ``limit`` and no sidecar yet, only the first ``limit`` samples are read (and nothing is kept).
    """
    where = _sidecar(files, index_dir)
    index = _load(files, where) if where else None
    if index is None:
        log.info("indexing %d %s file(s) under %s", len(files), files.kind, files.base)
        index = build_index(files, limit)
        if where is not None and index.complete:
            _save(index, where)
    return index.head(limit) if limit is not None else index
