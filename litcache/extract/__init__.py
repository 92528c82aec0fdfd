"""Stage one: run the teacher once over every (sample, view), and write what it computes to a cache.

- :mod:`.run`: the extraction (:func:`extract`): views, the teacher's forward, hand-off to the writer threads;
- :mod:`.on_device`: what runs where the teacher runs (cast, rounding, statistics) before the copy to the host;
- :mod:`.manifest`: the arrays and the manifest a cache records, and the check that a resume continues it;
- :mod:`.cluster`: the same units spread over a dask.distributed cluster;
- :mod:`.recompute`: ``litcache verify --teacher``, rows recomputed by the teacher and compared with the cache.

Stage two (:mod:`litcache.train`) never imports this package.
"""

from __future__ import annotations

from litcache._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "extract": "litcache.extract.run",
        "extract_on_dask": "litcache.extract.cluster",
        "verify_with_teacher": "litcache.extract.recompute",
    },
)
