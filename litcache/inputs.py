"""The section-1 input of a cache's rows: its stored pixels, or, when the cache keeps none (``store.input =
crc32``), the views regenerated from the data and checked against their CRC-32s.

Views are a pure function of (seed, sample, view), so a cache may keep four bytes a row instead of the pixels;
stage two then needs the data the cache was extracted from, and makes each view again in the stream's workers.
Both stages use this module: the stream (training) and ``verify --teacher`` (which recomputes rows).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from litcache.cache.codecs import row_crc32
from litcache.cache.layout import INPUT_CRC
from litcache.cache.reader import Cache
from litcache.config import DataConfig
from litcache.data import ImageSet, load_images, make_views
from litcache.data.views import view_config
from litcache.errors import CacheError

ROW_ARRAYS = ("rows/sample", "rows/view", INPUT_CRC)  # what regenerating a row's view reads from the cache


class RegeneratedInputs:
    """The views of a cache that keeps no pixels, made from ``data`` as the cache's were, and checked row by row.

    Open the data (:meth:`open`) in each process that makes views: its sample index is read once per process.
    """

    def __init__(self, cache: Cache, data: DataConfig) -> None:
        m = cache.manifest
        self.url = cache.url
        self.samples = cache.samples
        self.seed = int(m["seed"])
        self.identity, self.fingerprint = m["data"]["identity"], m["data"]["fingerprint"]
        self.config = view_config(data, m["transform"], int(m["data"]["channels"]))
        # the samples the cache was extracted from: the same draw of held-out samples (none when it records none)
        held = m["data"].get("holdout") or {"samples": 0, "seed": 0}
        self.config = dataclasses.replace(self.config, holdout=int(held["samples"]), holdout_seed=int(held["seed"]))
        self._images: ImageSet | None = None

    def open(self) -> ImageSet:
        """The training split the cache was extracted from, refused (in one line) when it is other data."""
        if self._images is None:
            images = load_images(self.config, "train", self.samples)
            if images.fingerprint() != self.fingerprint:
                raise CacheError(
                    f"cache {self.url} keeps no pixels (store.input=crc32): its views are made again from the data "
                    f"it was extracted from ({self.identity}), but {images.identity} is other data (its "
                    "fingerprint differs): pass that data with --data (or data.source)"
                )
            # one view made here loads the image decoders (torchvision's, seconds to import) before the stream's
            # workers fork, so each worker does not import them again
            make_views(images, self.config, self.seed, np.zeros(1, np.int64), np.zeros(1, np.int64))
            self._images = images
        return self._images

    def views(self, rows: dict[str, np.ndarray], first_row: int) -> np.ndarray:
        """The views (N, C, H, W) uint8 of rows ``first_row``... given their ``ROW_ARRAYS``; a view whose pixels do
        not match the cache's CRC-32 stops with the sample and view it is."""
        samples, views = rows["rows/sample"].astype(np.int64), rows["rows/view"].astype(np.int64)
        x = make_views(self.open(), self.config, self.seed, samples, views).numpy()
        bad = np.flatnonzero(row_crc32(x) != rows[INPUT_CRC])
        if len(bad):
            i = int(bad[0])
            raise CacheError(
                f"cache {self.url}: view {views[i]} of sample {samples[i]} (row {first_row + i}) made again from "
                f"{self.identity} does not match the view the teacher saw (its CRC-32 differs): the data or the "
                "view code changed since extraction; re-extract the cache, or extract with store.input=pixels"
            )
        return x
