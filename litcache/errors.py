"""The one error hierarchy of litcache.

Every user-facing error says what was wrong, with which file or value, and what to do about it. The CLI
prints these without a traceback; anything else escaping the library is a bug.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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


class StoreAccessError(LitcacheError):
    """An object store refused to authenticate: no credentials, or credentials it does not accept."""


# by name, so that no store library is imported: botocore's, google-auth's, azure-core's, and S3's error codes
_CREDENTIAL_ERRORS = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "DefaultCredentialsError",
        "RefreshError",
        "ClientAuthenticationError",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }
)


def store_access_error(exc: BaseException, url: str | None = None) -> StoreAccessError | None:
    """``exc`` (or an error it was raised from) as one line, when it is an object store's library refusing to
    authenticate (botocore's NoCredentialsError, google-auth's DefaultCredentialsError, ...); else None."""
    seen: BaseException | None = exc
    for _ in range(8):  # the error, and what it was raised from
        if seen is None:
            return None
        names = {c.__name__ for c in type(seen).__mro__} | {str(getattr(seen, "code", ""))}
        if names & _CREDENTIAL_ERRORS or "InvalidAccessKeyId" in str(seen):
            where = f"{url}: " if url else ""
            return StoreAccessError(
                f"{where}the object store refused access ({type(seen).__name__}: {seen}); give it credentials the "
                "way its library reads them (for s3:// URLs: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                "or ~/.aws/credentials) and run the command again"
            )
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def store_access(url: str | None = None) -> Iterator[None]:
    """Inside the block, an object store's library refusing to authenticate is :class:`StoreAccessError`, one line
    that names ``url`` and what to set; every other error passes as it is."""
    try:
        yield
    except LitcacheError:
        raise
    except Exception as exc:
        error = store_access_error(exc, url)
        if error is None:
            raise
        raise error from exc
