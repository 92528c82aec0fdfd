"""The one error hierarchy of litcache.

Every user-facing error says what was wrong, with which file or value, and what to do about it. The CLI
prints these without a traceback; anything else escaping the library is a bug.
"""

from __future__ import annotations


class LitcacheError(Exception):
    """Base class of all errors litcache raises on purpose."""


class ConfigError(LitcacheError):
    """A pipeline file, a ``--set`` override or a config value is invalid."""


class DataError(LitcacheError):
    """A data source cannot be found, read or understood."""


class CompatibilityError(LitcacheError):
    """Two models (or a model and a cache) do not fit together."""


class CacheError(LitcacheError):
    """A cache is missing, incomplete, corrupt, or would be overwritten."""


class CheckpointError(LitcacheError):
    """A checkpoint cannot be read or does not hold what was asked for."""


class UnsafeCheckpointError(CheckpointError):
    """A file holds pickled Python objects whose loading would run code (named by the globals it imports)."""


class OutputError(LitcacheError):
    """An output path is not this command's to write (it exists and is another's work), or a write failed: a full
    disk, a permission, a read-only file system (see :mod:`litcache.outputs`)."""


class MissingExtraError(LitcacheError):
    """A feature needs an optional dependency that is not installed; the message names the extra to install."""


class ReportError(LitcacheError):
    """A path given to ``litcache report`` is not a run, a cache, a metrics file or a checkpoint."""
