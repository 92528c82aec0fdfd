"""The validation split: a fixed, seeded part of the training split that no cache and no training ever reads.

``data.holdout`` samples are drawn once from the *whole* training split with ``data.holdout_seed``, so every
stage (``train-teacher``, ``extract``, ``evaluate --split val``) and every ``--limit`` agree on them: split
``"train"`` is the rest, in its order, and ``--limit N`` keeps its first N; split ``"val"`` is the held-out
samples, in their order. A part's data fingerprint covers exactly its samples, as a whole split's covers its
own (:meth:`SampleIndex.fingerprint` over the part's rows, or the part's pixels), and the part says which
draw made it (:func:`holdout_entry`, in the cache's manifest).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from litcache.config import DataConfig
from litcache.data.index import SampleIndex
from litcache.errors import DataError

SPLITS = ("train", "val", "test")
PARTS = ("train", "val")  # the splits a holdout divides: both are read from the training split's files


def files_split(split: str) -> str:
    """The split whose files hold ``split``'s samples: the validation samples are training samples."""
    return "train" if split == "val" else split


def held_out(cfg: DataConfig, total: int) -> np.ndarray:
    """The indices (sorted) of the ``cfg.holdout`` samples held out of a training split of ``total`` samples."""
    if not 0 < cfg.holdout < total:
        raise DataError(
            f"data.holdout is {cfg.holdout}, but the training split has {total} samples: hold out fewer, so that "
            "some are left to train on"
        )
    rng = np.random.default_rng([cfg.holdout_seed, total])
    return np.sort(rng.permutation(total)[: cfg.holdout])


def part_rows(cfg: DataConfig, part: str, total: int) -> np.ndarray:
    """Indices into the whole training split of the samples of ``part`` (``train`` or ``val``), in order."""
    held = held_out(cfg, total)
    if part == "val":
        return held
    keep = np.ones(total, dtype=bool)
    keep[held] = False
    return np.flatnonzero(keep)


def take_index(index: SampleIndex, rows: np.ndarray) -> SampleIndex:
    """The samples ``rows`` of ``index``, in that order: an index of just them (its fingerprint covers them)."""
    picked = {name: getattr(index, name)[rows] for name in ("file_id", "offset", "size", "label", "height", "width")}
    keys = index.keys.tobytes().split(b"\n")
    kept = b"\n".join(keys[int(i)] for i in rows)
    return dataclasses.replace(
        index,
        **picked,
        crc=index.crc[rows],
        digest=index.digest[rows],
        keys=np.frombuffer(kept, dtype=np.uint8),
        complete=False,
    )


def holdout_entry(cfg: DataConfig, part: str, total: int) -> dict[str, Any]:
    """What a part records of its draw (the manifest's ``data.holdout``)."""
    return {"samples": cfg.holdout, "seed": cfg.holdout_seed, "of": total, "part": part}


def part_identity(identity: str, cfg: DataConfig, part: str) -> str:
    """The identity of a part of the training split ``identity``."""
    draw = f"{cfg.holdout} held out (seed {cfg.holdout_seed})"
    return f"{identity} without the {draw}" if part == "train" else f"{identity}: the {draw}"
