"""Work made ahead of its consumer by a few threads, batch by batch, in order.

While the consumer (the model) holds batch k, ``workers`` threads make batch k + 1 (torchvision's decoders and
Pillow's resampling release the GIL). At most ``ahead + 1`` batches are in memory at once, so memory is bounded by
the batches in flight, not by the data set. An error in a thread (a corrupt image, say) is raised in the consumer
when it reaches that batch, as the same exception.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T", torch.Tensor, np.ndarray)


MIN_CHUNK = 16  # samples: smaller pieces cost more in hand-offs than they gain


def _join(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def prefetch(
    make: Callable[[np.ndarray, np.ndarray | None], T],
    batches: Iterable[tuple[Any, np.ndarray, np.ndarray | None]],
    workers: int,
    ahead: int = 1,
) -> Generator[tuple[Any, T], None, None]:
    """``(tag, make(samples, views))`` for each ``(tag, samples, views)`` of ``batches``, in order.

    Each batch is split among ``workers`` threads; ``ahead`` batches are made while the consumer holds one.
    ``workers=0`` makes each batch in the calling thread, when it is asked for.
    """
    if workers == 0:
        for tag, samples, views in batches:
            yield tag, make(samples, views)
        return
    pending: deque[tuple[Any, list[Future[T]]]] = deque()
    source = iter(batches)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="litcache-data") as pool:
        try:
            while True:
                while len(pending) <= ahead:
                    item = next(source, None)
                    if item is None:
                        break
                    tag, samples, views = item
                    step = max(MIN_CHUNK, -(-len(samples) // workers))
                    futures = [
                        pool.submit(make, samples[s : s + step], None if views is None else views[s : s + step])
                        for s in range(0, len(samples), step)
                    ]
                    pending.append((tag, futures))
                if not pending:
                    return
                tag, futures = pending.popleft()
                yield tag, _join([f.result() for f in futures])
        finally:
            for _, futures in pending:
                for f in futures:
                    f.cancel()
