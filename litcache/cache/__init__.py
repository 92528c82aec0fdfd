"""The cache format: layout and manifest, codecs, writer, reader, verification and summary.

Stage one writes it (:mod:`litcache.extract`), stage two reads it (:mod:`litcache.train`). It knows no networks
and no training, and imports neither torch nor either stage; zarr's private API is used in :mod:`._zarr` only.
"""

from __future__ import annotations

from litcache._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Cache": "litcache.cache.reader",
        "open_cache": "litcache.cache.reader",
        "CacheWriter": "litcache.cache.writer",
        "create_cache": "litcache.cache.writer",
        "open_writer": "litcache.cache.writer",
        "verify_cache": "litcache.cache.verify",
        "summarize": "litcache.cache.summary",
    },
)
