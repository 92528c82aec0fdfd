"""litcache: cache a teacher's intermediate representations once, train LIT students from the cache."""

from __future__ import annotations

__version__ = "0.1.0"

from litcache.checkpoint import load_model, load_teacher, save_model  # noqa: E402
from litcache.config import ModelConfig, PipelineConfig, load_pipeline  # noqa: E402
from litcache.data import ImageSet, load_images, make_views  # noqa: E402
from litcache.dataset import CacheDataset, make_cache_loader  # noqa: E402
from litcache.errors import (  # noqa: E402
    CacheError,
    CheckpointError,
    CompatibilityError,
    ConfigError,
    DataError,
    LitcacheError,
    MissingExtraError,
    ReportError,
)
from litcache.extract import extract  # noqa: E402
from litcache.losses import ir_loss, kd_loss, lit_loss, pixel_loss  # noqa: E402
from litcache.models import SectionedModel, build_model, check_compatible, probe, probe_boundaries  # noqa: E402
from litcache.objective import LitObjective  # noqa: E402
from litcache.report import build_report  # noqa: E402
from litcache.store import Cache, open_cache  # noqa: E402
from litcache.students import build_student  # noqa: E402

__all__ = [
    "Cache",
    "CacheDataset",
    "CacheError",
    "CheckpointError",
    "CompatibilityError",
    "ConfigError",
    "DataError",
    "ImageSet",
    "LitObjective",
    "LitcacheError",
    "MissingExtraError",
    "ModelConfig",
    "PipelineConfig",
    "ReportError",
    "SectionedModel",
    "__version__",
    "build_model",
    "build_report",
    "build_student",
    "check_compatible",
    "extract",
    "ir_loss",
    "kd_loss",
    "lit_loss",
    "load_images",
    "load_model",
    "load_teacher",
    "load_pipeline",
    "make_cache_loader",
    "make_views",
    "open_cache",
    "pixel_loss",
    "probe",
    "probe_boundaries",
    "save_model",
]
