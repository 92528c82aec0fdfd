"""litcache: cache a teacher's intermediate representations once, train LIT students from the cache."""

from __future__ import annotations

__version__ = "0.1.0"

from litcache.checkpoint import load_model, load_teacher, save_model  # noqa: E402
from litcache.config import ModelConfig, PipelineConfig, load_pipeline  # noqa: E402
from litcache.data import ImageSet, load_images, make_views  # noqa: E402
from litcache.errors import (  # noqa: E402
    CacheError,
    CheckpointError,
    CompatibilityError,
    ConfigError,
    DataError,
    LitcacheError,
)
from litcache.extract import extract  # noqa: E402
from litcache.models import SectionedModel, build_model, check_compatible, probe, probe_boundaries  # noqa: E402
from litcache.store import Cache, open_cache  # noqa: E402

__all__ = [
    "Cache",
    "CacheError",
    "CheckpointError",
    "CompatibilityError",
    "ConfigError",
    "DataError",
    "ImageSet",
    "LitcacheError",
    "ModelConfig",
    "PipelineConfig",
    "SectionedModel",
    "__version__",
    "build_model",
    "check_compatible",
    "extract",
    "load_images",
    "load_model",
    "load_teacher",
    "load_pipeline",
    "make_views",
    "open_cache",
    "probe",
    "probe_boundaries",
    "save_model",
]
