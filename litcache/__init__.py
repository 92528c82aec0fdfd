"""litcache: cache a teacher's intermediate representations once, train LIT students from the cache.

The package is lazy: a name below is imported when it is first used, so ``import litcache`` is cheap and using
stage two (``litcache.CacheDataset``) loads nothing of stage one. The packages name the architecture:

- :mod:`litcache.cache`: the format, its writer, reader and checks (no networks, no training);
- :mod:`litcache.extract`: stage one, the teacher run once over every view, writing the cache;
- :mod:`litcache.train`: stage two, students trained from the cache without the teacher;
- :mod:`litcache.models`, :mod:`litcache.data`, :mod:`litcache.report`: models by section paths, image data and
  views, plots and summaries.
"""

from __future__ import annotations

from litcache._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Cache": "litcache.cache.reader",
    "open_cache": "litcache.cache.reader",
    "CacheDataset": "litcache.train.dataset",
    "make_cache_loader": "litcache.train.dataset",
    "LitObjective": "litcache.train.objective",
    "build_student": "litcache.train.students",
    "ir_loss": "litcache.train.losses",
    "kd_loss": "litcache.train.losses",
    "lit_loss": "litcache.train.losses",
    "pixel_loss": "litcache.train.losses",
    "ModelConfig": "litcache.config",
    "PipelineConfig": "litcache.config",
    "load_pipeline": "litcache.config",
    "ImageSet": "litcache.data.images",
    "load_images": "litcache.data.images",
    "make_views": "litcache.data.loader",
    "SectionedModel": "litcache.models.sections",
    "build_model": "litcache.models.registry",
    "check_compatible": "litcache.models.probing",
    "probe": "litcache.models.probing",
    "probe_boundaries": "litcache.models.probing",
    "load_model": "litcache.models.checkpoint",
    "load_teacher": "litcache.models.checkpoint",
    "save_model": "litcache.models.checkpoint",
    "build_report": "litcache.report",
    **{
        name: "litcache.errors"
        for name in (
            "CacheError",
            "CheckpointError",
            "CompatibilityError",
            "ConfigError",
            "DataError",
            "LitcacheError",
            "MissingExtraError",
            "ReportError",
        )
    },
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, list(globals()))
__all__ = ["__version__", *sorted(_EXPORTS)]
