"""Data: image sources read by sample index, and views that are a pure function of (seed, sample, view).

- :mod:`~litcache.data.sources`: where a split's files are (WebDataset shards or an image folder, local or at
  any fsspec URL); torchvision's CIFAR sets.
- :mod:`~litcache.data.index`: the sample index (file, offset, size, label, image size), built once by one
  streaming pass that also computes the data fingerprint, and kept in a sidecar file.
- :mod:`~litcache.data.decode`: image bytes to pixels, in the data set's channel count.
- :mod:`~litcache.data.images`: a split opened for reading (:class:`ImageSet`), streamed or in memory.
- :mod:`~litcache.data.views`: pad-crop-flip, random-resized-crop and the evaluation view.
- :mod:`~litcache.data.loader`: the views of a set, batch by batch, made ahead of the model;
- :mod:`~litcache.data.prefetch`: work made ahead by a few threads, in order.
"""

from __future__ import annotations

from litcache.data.images import ImageSet, check_source, forget_opened, load_images, split_classes
from litcache.data.index import SampleIndex, build_index, open_index
from litcache.data.loader import eval_batches, iter_views, make_eval_views, make_views
from litcache.data.prefetch import prefetch
from litcache.data.sources import TORCHVISION_SETS, Files, find_files, shard_paths
from litcache.data.views import (
    crop_params,
    to_unit_float,
    transform_spec,
    view_hash,
    view_params,
    view_shape,
)

__all__ = [
    "TORCHVISION_SETS",
    "Files",
    "ImageSet",
    "SampleIndex",
    "build_index",
    "check_source",
    "crop_params",
    "eval_batches",
    "find_files",
    "forget_opened",
    "iter_views",
    "load_images",
    "make_eval_views",
    "make_views",
    "open_index",
    "prefetch",
    "shard_paths",
    "split_classes",
    "to_unit_float",
    "transform_spec",
    "view_hash",
    "view_params",
    "view_shape",
]
