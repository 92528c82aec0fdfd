"""The cache in your own training loop: a ``torch.utils.data.IterableDataset`` of the arrays you name.

It is :class:`~litcache.stream.CacheStream`, the reader ``train-sections`` and ``kd`` use, behind PyTorch's dataset
interface, so it keeps the same guarantees:

- epoch e reads view ``e mod K`` of the cache's K views (the inputs the teacher saw, with its boundaries);
- every row of that view is read at most once per epoch over all ranks and reading processes;
- every rank gets the same number of full batches (computed up front), so DDP never waits on a rank;
- the order is a pure function of (seed, epoch, rank): a run is reproducible, and the next epoch differs.

Each item is already a whole batch: a dict of tensors, one per named array, plus ``row`` (the global row index
of each row). Iterate the dataset directly, or give it to ``DataLoader(dataset, batch_size=None)``
(:func:`make_cache_loader`); reading in parallel is the dataset's own ``workers`` setting, not the DataLoader's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from litcache.cache.reader import Cache, open_cache
from litcache.config import DataConfig, StreamConfig
from litcache.train.stream import CacheStream

log = logging.getLogger(__name__)


class CacheDataset(IterableDataset[dict[str, torch.Tensor]]):
    """Batches of ``arrays`` for one epoch and one rank; call :meth:`set_epoch` before each epoch.

    Args:
        cache: an open :class:`~litcache.Cache`, or its path or fsspec URL.
        arrays: array names, e.g. ``["input", "boundary/1", "boundary/2", "logits", "rows/label"]``
            (``cache.data_arrays()`` lists them; ``docs/cache-format.md`` says what each holds).
        batch_size: rows per batch; every batch is full.
        epoch: the epoch of the run, which sets the view (``epoch mod views``) and the order.
        rank, world: this process's share; default what torchrun or ``torch.distributed`` says.
        seed: the order's seed (``stream.seed`` in a pipeline).
        shuffle_buffer: rows held and shuffled together (larger mixes more units per batch).
        workers: processes that read and decode (0 reads in this process).
        verify: check every unit read against its CRC-32.
        data: the data the cache was extracted from, when it keeps no pixels (``store.input=crc32``): ``input``
            is then made again from it, view by view, and checked against the cache's CRC-32s.
    """

    def __init__(
        self,
        cache: Cache | str,
        arrays: Sequence[str],
        *,
        batch_size: int = 128,
        epoch: int = 0,
        rank: int | None = None,
        world: int | None = None,
        seed: int = 0,
        shuffle_buffer: int = 2048,
        workers: int = 0,
        verify: bool = True,
        pin_memory: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        data: DataConfig | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cache, str):
            cache = open_cache(cache, storage_options)
        cfg = StreamConfig(
            batch_size=batch_size, shuffle_buffer=shuffle_buffer, workers=workers, seed=seed, verify=verify
        )
        self.stream = CacheStream(
            cache,
            arrays,
            cfg,
            pin_memory=pin_memory,
            storage_options=storage_options,
            rank=rank,
            world=world,
            data=data,
        )
        self.epoch = epoch
        self._read_epochs: set[int] = set()

    @property
    def cache(self) -> Cache:
        return self.stream.cache

    @property
    def view(self) -> int:
        """The view this epoch reads."""
        return self.stream.view(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` next: its view and its order (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches this rank gets in the current epoch: the same on every rank."""
        return self.stream.num_batches(self.epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if get_worker_info() is not None:
            raise RuntimeError(
                "a CacheDataset yields whole batches and splits its reading itself: give it to "
                "DataLoader(dataset, batch_size=None, num_workers=0) (litcache.make_cache_loader), and set the "
                "dataset's own workers= to read in parallel"
            )
        if self.epoch in self._read_epochs:
            log.warning(
                "CacheDataset: epoch %d (view %d) is read again in the same order; call set_epoch(epoch) before "
                "each epoch so that every epoch reads its own view",
                self.epoch,
                self.view,
            )
        self._read_epochs.add(self.epoch)
        return self.stream.epoch(self.epoch)


def make_cache_loader(dataset: CacheDataset) -> DataLoader[dict[str, torch.Tensor]]:
    """A ``DataLoader`` over ``dataset``, for frameworks that want one (Lightning, Accelerate): no re-batching, no
    worker processes of its own (the dataset reads with its ``workers``). ``len(loader)`` is the batch count."""
    return DataLoader(dataset, batch_size=None, num_workers=0)


__all__ = ["CacheDataset", "make_cache_loader"]
