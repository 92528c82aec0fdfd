"""Lazy exports for package ``__init__`` modules: a name's module is imported when the name is first used.

So ``import litcache`` (or one stage's package) loads nothing of the other stage, and ``litcache.CacheDataset``
still works (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], defined: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each public name to its module; ``defined``
    are the names the package defines itself (listed by ``dir`` beside the exports)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted({*exports, *defined})

    return __getattr__, __dir__
