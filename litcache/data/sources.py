"""Where the samples of a split live: WebDataset shards or an image folder, local or at any fsspec URL.

A source is a list of files under one base folder, named relative to it (so a data set can move between
folders and machines), with their sizes and modification times (which key the sample index). Files are read
by byte ranges: ``os.pread`` for local files, ``fs.cat_file`` for remote ones. torchvision's CIFAR sets are not
files of this kind; :mod:`litcache.data.images` loads them into memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litcache.config import DataConfig
from litcache.data.decode import IMAGE_EXTS
from litcache.errors import DataError

TORCHVISION_SETS = {"cifar10": ("CIFAR10", 10), "cifar100": ("CIFAR100", 100)}
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}  # image-folder layouts: <source>/<split>/<class>/


def torchvision_name(cfg: DataConfig) -> str | None:
    """The torchvision data set ``cfg.source`` names (``cifar10``, ``torchvision:cifar100``), else None."""
    name = cfg.source.removeprefix("torchvision:").lower()
    return name if name in TORCHVISION_SETS and not Path(cfg.source).exists() else None


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not m:
        return [pattern]
    lo, hi = int(m.group(1)), int(m.group(2))
    width = len(m.group(1)) if m.group(1).startswith("0") else 0
    return [
        p
        for i in range(lo, hi + 1)
        for p in _expand_braces(pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :])
    ]


def _natural_key(path: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _mtime(info: dict[str, Any]) -> str:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created", "ETag"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


@dataclass(frozen=True)
class Files:
    """The files of one split: ``kind`` is ``"wds"`` (tar shards) or ``"folder"`` (one image per file)."""

    kind: str
    base: str  # the folder (local path or URL) that ``names`` are relative to
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    mtimes: tuple[str, ...]
    classes: tuple[str, ...] = ()  # image folders: class names, sorted; label = position
    fs: Any = field(default=None, compare=False)  # an fsspec file system; None = the local one

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> str:
        """Where file i is, for reading and for messages."""
        if self.fs is None:
            return os.path.join(self.base, self.names[i])
        return self.fs.unstrip_protocol(posixpath.join(self.base, self.names[i]))

    def open(self, i: int) -> Any:
        """File i opened for a sequential read (the index pass)."""
        if self.fs is None:
            return open(self.path(i), "rb", buffering=1 << 20)
        return self.fs.open(posixpath.join(self.base, self.names[i]), "rb", block_size=8 << 20)

    def read(self, i: int, start: int, stop: int) -> bytearray:
        """Bytes [start, stop) of file i; a short read (the file shrank) raises :class:`EOFError`."""
        if self.fs is None:
            buf = bytearray(stop - start)
            fd = os.open(self.path(i), os.O_RDONLY)
            try:
                n = os.preadv(fd, [buf], start)
            finally:
                os.close(fd)
        else:
            buf = bytearray(self.fs.cat_file(posixpath.join(self.base, self.names[i]), start=start, end=stop))
            n = len(buf)
        if n != stop - start:
            raise EOFError(f"{self.path(i)} ends at byte {start + n}, expected {stop}")
        return buf

    def stamp(self) -> str:
        """What identifies these files now (names, sizes, modification times): the key of their index."""
        desc = [self.kind, list(self.classes), list(zip(self.names, self.sizes, self.mtimes, strict=True))]
        return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:24]

    def identity(self, split: str) -> str:
        """A name for the data with no absolute path in it, e.g. ``wds:train-0.tar,train-1.tar``."""
        if self.kind == "folder":
            return f"imagefolder:{posixpath.basename(self.base.rstrip('/')) or split} ({len(self.classes)} classes)"
        names = list(self.names)
        if len(names) > 8:
            names = [names[0], names[1], "...", names[-1], f"({len(self.names)} shards)"]
        return "wds:" + ",".join(names)


def _filesystem(url: str) -> tuple[Any, str]:
    """(fsspec file system or None for local, path without protocol)."""
    if "://" not in url:
        return None, str(Path(url).expanduser())
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(url)
    return (None, path) if isinstance(fs, LocalFileSystem) else (fs, path)


class _Lister:
    """glob / isdir / find with details, on the local disk (fsspec's local file system) or a remote one."""

    def __init__(self, fs: Any) -> None:
        import fsspec

        self.remote = fs
        self.fs = fs if fs is not None else fsspec.filesystem("file")

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def glob(self, pattern: str) -> dict[str, dict[str, Any]]:
        return dict(self.fs.glob(pattern, detail=True))

    def find(self, path: str) -> dict[str, dict[str, Any]]:
        return dict(self.fs.find(path, detail=True))

    def subfolders(self, path: str) -> list[str]:
        return sorted(
            posixpath.basename(e["name"].rstrip("/")) for e in self.fs.ls(path, detail=True) if e["type"] == "directory"
        )

    def files(self, kind: str, base: str, found: dict[str, dict[str, Any]], classes: tuple[str, ...] = ()) -> Files:
        """Files of ``found`` (path -> details, in sample order), named relative to ``base``."""
        return Files(
            kind=kind,
            base=base,
            names=tuple(posixpath.relpath(p, base) for p in found),
            sizes=tuple(int(info.get("size") or 0) for info in found.values()),
            mtimes=tuple(_mtime(info) for info in found.values()),
            classes=classes,
            fs=self.remote,
        )


def _shards(lister: _Lister, folder: str, split: str) -> dict[str, dict[str, Any]]:
    for pattern in (f"{split}-*.tar", f"{split}*.tar"):
        found = lister.glob(posixpath.join(folder, pattern))
        if found:
            return {p: found[p] for p in sorted(found, key=_natural_key)}
    return {}


def _image_folder(lister: _Lister, root: str, classes_root: str) -> Files | None:
    """``root/<class>/**/<image>`` as Files, classes named by ``classes_root``'s subfolders (the train split's)."""
    found = lister.find(root)
    classes = lister.subfolders(classes_root)
    rank = {c: i for i, c in enumerate(classes)}
    images = {}
    for p, info in found.items():
        rel = posixpath.relpath(p, root)
        if "/" in rel and rel.rsplit(".", 1)[-1].lower() in IMAGE_EXTS:
            images[p] = info
    if not images:
        return None
    order = sorted(images, key=lambda p: (rank.get(posixpath.relpath(p, root).split("/")[0], -1), p))
    return lister.files("folder", root, {p: images[p] for p in order}, tuple(classes))


def find_files(cfg: DataConfig, split: str) -> Files:
    """The files of ``split`` that ``cfg.source`` names: shards ``{split}-*.tar`` in a folder, a brace/glob
    pattern of shards, or an image folder ``<source>/{split}/<class>/*.jpg`` (``val`` stands in for ``test``).
    """
    source = cfg.source.replace("{split}", split)
    fs, path = _filesystem(source)
    lister = _Lister(fs)
    if lister.isdir(path):
        shards = _shards(lister, path, split)
        if shards:
            return lister.files("wds", path, shards)
        roots = [path] if "{split}" in cfg.source else [posixpath.join(path, d) for d in SPLIT_FOLDERS[split]]
        for root in roots:
            if lister.isdir(root):
                train_root = posixpath.join(path, "train")
                classes_root = train_root if root != path and lister.isdir(train_root) else root
                files = _image_folder(lister, root, classes_root)
                if files is not None:
                    return files
                raise DataError(f"image folder {root} has no images in class folders (<class>/*.jpg|png|webp)")
        raise DataError(
            f"no '{split}-*.tar' shards and no '{split}/' image folder in {source}; expected e.g. "
            f"{source}/{split}-0.tar or {source}/{split}/<class>/<image>.jpg"
        )
    found: dict[str, dict[str, Any]] = {}
    for pattern in _expand_braces(path):
        hits = lister.glob(pattern)
        found.update({p: hits[p] for p in sorted(hits, key=_natural_key)})
    if not found and not any(c in path for c in "*?[{"):
        raise DataError(
            f"data folder {source} is missing (no such folder or file); give --data an existing folder of shards, "
            f"a shard pattern such as 'shards/{split}-*.tar', or {', '.join(TORCHVISION_SETS)}"
        )
    if not found and not lister.isdir(posixpath.dirname(_expand_braces(path)[0]) or "."):
        raise DataError(f"data folder {posixpath.dirname(path)} (of the pattern {source}) is missing")
    if not found:
        raise DataError(f"no files match the data pattern {source!r}; expected WebDataset .tar shards")
    if not found:
        raise DataError(
            f"data source {cfg.source!r} is neither a torchvision data set ({', '.join(TORCHVISION_SETS)}) "
            "nor a folder, pattern or URL of WebDataset .tar shards or an image folder"
        )
    return lister.files("wds", posixpath.commonpath([posixpath.dirname(p) for p in found]), found)


def shard_paths(source: str, split: str) -> list[str]:
    """Paths (or URLs) of the tar shards of ``split`` under a folder, or those a brace/glob pattern names."""
    files = find_files(DataConfig(source=source), split)
    if files.kind != "wds":
        raise DataError(f"{source} is an image folder, not WebDataset shards")
    return [files.path(i) for i in range(len(files))]
