"""Progress bars for long work (tqdm), silent when disabled or when stderr is not a terminal in CI logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, **kwargs: Any) -> Iterator[tqdm]:
    """A tqdm bar that is always closed; ``enabled=False`` gives a bar that draws nothing."""
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, **kwargs)
    try:
        yield bar
    finally:
        bar.close()
