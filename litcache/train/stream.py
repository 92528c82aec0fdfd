"""Stage two's reader: a WebDataset pipeline over the cache.

    unit ranges of view (epoch mod K), shuffled from (seed, epoch)      identical on every rank
      -> split_by_node -> split_by_worker                              each range read by one worker
      -> read whole units of just the arrays the job needs             numpy, no per-row objects; quantised
                                                                       boundaries as stored, codes and scales
      -> seeded shuffle buffer, batching                               (seed, epoch, rank, worker)
      -> main process: re-batch worker tails, stop after the batch count computed up front,
         dequantise (litcache.train.dequantize)                        a quarter of the bytes through the
                                                                       DataLoader's shared memory (4-bit codes)

Every rank gets the same number of batches, computed before the epoch from the cache's row count and the
range order all ranks share, and no row is read twice in an epoch across ranks and workers.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import webdataset as wds

from litcache.cache.layout import INPUT
from litcache.cache.reader import Cache, open_cache
from litcache.config import DataConfig, StreamConfig
from litcache.errors import CacheError
from litcache.inputs import ROW_ARRAYS, RegeneratedInputs
from litcache.train.dequantize import Dequantizer, QuantizedArray, one_thread, quantized_arrays, with_scales

Batch = dict[str, np.ndarray]
ROW = "row"  # every batch carries the global row index of each of its rows


def view_of_epoch(cache: Cache, epoch: int) -> int:
    """The view epoch ``epoch`` of a run reads: the run's stages share one counter, so no view repeats early."""
    return epoch % cache.views


def epoch_ranges(cache: Cache, epoch: int, seed: int) -> list[tuple[int, int]]:
    """Whole-unit row ranges of view ``epoch % views``, in the order every rank shares for (seed, epoch).

    A unit is one chunk, or one shard of a sharded cache: every range read whole can be checked against its
    unit's checksums.
    """
    view = view_of_epoch(cache, epoch)
    rows = range(view * cache.samples, (view + 1) * cache.samples)
    ranges = cache.chunk_ranges(rows, cache.rows_per_unit)
    random.Random(f"litcache:{seed}:{epoch}").shuffle(ranges)
    return ranges


def batches_per_rank(ranges: Sequence[tuple[int, int]], world: int, batch_size: int) -> int:
    """Full batches every rank can deliver: the smallest rank's rows (after split_by_node) // batch size."""
    rows = [sum(e - s for s, e in ranges[r::world]) for r in range(world)]
    return min(rows) // batch_size


def read_chunks(
    url: str,
    names: Sequence[str],
    storage_options: Mapping[str, Any] | None,
    verify: bool = True,
    inputs: RegeneratedInputs | None = None,
    dequantize_later: bool = False,
) -> Callable[..., Any]:
    """Stage: one read of each array per range (whole units); yields one dict of arrays per range.

    ``verify`` checks every unit read against its CRC-32 (zlib-ng: about 1 ms a unit, small beside decoding). A
    range that is part of a unit (where a view starts or ends inside one) is read as the whole unit, checked, and
    cut: the unit's chunks are decoded whole anyway, so only the checksum of the rest is extra. ``inputs``: the
    cache keeps no pixels, and ``input`` is made again here from the data, view by view, and checked.
    ``dequantize_later``: a quantised boundary comes as stored, each row its packed codes followed by its unit's
    scales (:func:`~litcache.train.dequantize.with_scales`), for :func:`dequantize_batches` past the workers.
    """
    opened: dict[int, Cache] = {}
    regenerate = inputs is not None and INPUT in names
    stored = [n for n in names if n != INPUT or not regenerate]
    stored += [n for n in ROW_ARRAYS if regenerate and n not in stored]

    def stage(src: Iterable[dict[str, int]]) -> Iterator[Batch]:
        pid = os.getpid()  # a zarr group must not cross a fork: open one per process
        if pid not in opened:
            opened[pid] = open_cache(url, storage_options)
        cache = opened[pid]
        quantized = [n for n in stored if dequantize_later and cache.is_quantized(n)]
        for d in src:
            s, e = d["start"], d["stop"]
            if verify:
                unit = s // cache.rows_per_unit
                us, _ = cache.unit_rows(unit)
                read = cache.read_unit(unit, stored, decode=not quantized)
                out = {name: read[name][s - us : e - us] for name in stored}
            else:
                read = cache.read(cache.stored_names(stored) if quantized else stored, s, e, decode=not quantized)
                out = {name: read[name] for name in stored}
            for name in quantized:  # a range lies in one unit: its scales are the first row read
                out[name] = with_scales(out[name], read[cache.quant_params_name(name)][0])
            if regenerate:
                assert inputs is not None
                out[INPUT] = inputs.views(out, s)
                out = {name: out[name] for name in names}
            out[ROW] = np.arange(s, e, dtype=np.int64)
            yield out

    return stage


def _gather(parts: list[Batch], idx: np.ndarray) -> Batch:
    """Rows ``idx`` of the parts' concatenation, gathered straight from the parts into new arrays."""
    starts = np.cumsum([0] + [len(p[ROW]) for p in parts])
    which = np.searchsorted(starts, idx, side="right") - 1
    local = idx - starts[which]
    out = {k: np.empty((len(idx), *v.shape[1:]), v.dtype) for k, v in parts[0].items()}
    for j, part in enumerate(parts):
        mask = which == j
        if mask.any():
            rows = local[mask]
            for k, v in part.items():
                out[k][mask] = v[rows]
    return out


def split_by_rank(rank: int, world: int) -> Callable[..., Any]:
    """Stage: every ``world``-th item from ``rank`` on (``wds.split_by_node`` with a rank given, not looked up)."""

    def stage(src: Iterable[Any]) -> Iterator[Any]:
        yield from itertools.islice(src, rank, None, world)

    return stage


def shuffle_batches(
    bufsize: int, batch_size: int, seed: int, epoch: int, rank: int | None = None
) -> Callable[..., Any]:
    """Stage: hold at least ``bufsize`` rows, permute them, emit full batches; the tail at the end.

    The permutation is seeded from (seed, epoch, rank, worker), so a run is reproducible and epochs differ;
    ``rank`` defaults to what torchrun or ``torch.distributed`` says.
    Each batch is gathered from the held chunks directly: one copy of each row, and no buffer-sized arrays
    (fresh memory is slow to touch, and the buffer is tens of MB).
    """

    def stage(src: Iterable[Batch]) -> Iterator[Batch]:
        found, _, worker, _ = wds.utils.pytorch_worker_info()
        rng = np.random.default_rng([seed, epoch, found if rank is None else rank, worker])
        pending: list[Batch] = []
        held = 0
        for chunk in itertools.chain(src, [None]):
            if chunk is not None:
                pending.append(chunk)
                held += len(chunk[ROW])
                if held < bufsize:
                    continue
            if not held:
                return
            order = rng.permutation(held)
            full = held // batch_size * batch_size
            for s in range(0, full, batch_size):
                yield _gather(pending, order[s : s + batch_size])
            rest = _gather(pending, order[full:])
            pending, held = ([rest], held - full) if held > full else ([], 0)
            if chunk is None and held:
                yield rest

    return stage


def to_tensors(src: Iterable[Batch]) -> Iterator[dict[str, torch.Tensor]]:
    """Stage: numpy batches -> tensors (zero-copy)."""
    for b in src:
        yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}


def dequantize_batches(
    batches: Iterable[dict[str, torch.Tensor]], quantized: Mapping[str, QuantizedArray], pin_memory: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Each quantised boundary's codes, with the scales each row came with, -> its values; ``quantized``: how each
    decodes. The same batches, in the same order.

    Past the workers: they ship a quarter of float16's bytes (at 4 bits) through the DataLoader's shared memory,
    and the values are written once, straight into the batch. In the consumer's thread: on a thread of its own,
    one batch ahead, it took 8 us a row more CPU (its allocations, the codes crossing cores) and was no faster on
    2 cores. One intra-op thread: a batch is small, and more would contend with the workers for the cores.
    """
    decoders = {name: Dequantizer(spec) for name, spec in quantized.items()}  # their buffers kept for the epoch
    for b in batches:
        with one_thread():  # not around the yield: the consumer runs with its own threads
            out = {k: decoders[k](v, pin_memory) if k in decoders else v for k, v in b.items()}
        yield out


def rebatch(batches: Iterable[dict[str, torch.Tensor]], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Pass full batches through; join the short tails of several workers into full batches."""
    pending: list[dict[str, torch.Tensor]] = []
    held = 0
    for b in batches:
        n = len(b[ROW])
        if n == batch_size and not pending:
            yield b
            continue
        pending.append(b)
        held += n
        while held >= batch_size:
            joined = {k: torch.cat([p[k] for p in pending]) for k in pending[0]}
            yield {k: v[:batch_size] for k, v in joined.items()}
            rest = {k: v[batch_size:] for k, v in joined.items()}
            held -= batch_size
            pending = [rest] if held else []


class CacheStream:
    """Batches of chosen cache arrays, epoch by epoch, for one rank.

    ``rank``/``world`` default to what torchrun or ``torch.distributed`` says (``RANK``/``WORLD_SIZE``); give
    both to read one rank's share without either (a framework that launches its own processes, a test).
    """

    def __init__(
        self,
        cache: Cache,
        arrays: Sequence[str],
        cfg: StreamConfig,
        *,
        pin_memory: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        rank: int | None = None,
        world: int | None = None,
        data: DataConfig | None = None,
    ) -> None:
        if (rank is None) != (world is None) or (rank is not None and world is not None and not 0 <= rank < world):
            raise ValueError(f"give both rank and world, with 0 <= rank < world; got rank={rank}, world={world}")
        self.inputs = None
        if INPUT in arrays and not cache.input_stored:  # made again from the data, in the readers
            if data is None:
                raise CacheError(
                    f"cache {cache.url} keeps no pixels (store.input=crc32): reading its inputs needs the data it "
                    f"was extracted from ({cache.manifest['data']['identity']}): pass it with --data"
                )
            self.inputs = RegeneratedInputs(cache, data)
            self.inputs.open()  # here, once: other data is refused before any worker starts
        missing = [n for n in arrays if n not in cache.data_arrays() and not (n == INPUT and self.inputs)]
        if missing:
            raise CacheError(f"cache {cache.url} has no arrays {missing}; it holds {cache.data_arrays()}")
        cache.require_complete()
        self.cache = cache
        self.arrays = list(arrays)
        self.cfg = cfg
        self.pin_memory = pin_memory
        self.storage_options = storage_options
        self._rank_world = None if rank is None or world is None else (rank, world)
        # quantised boundaries cross the shuffle and the DataLoader as codes, dequantised past the workers
        self.quantized = quantized_arrays(cache.manifest, self.arrays)

    def world(self) -> tuple[int, int]:
        """This stream's (rank, world size)."""
        if self._rank_world is not None:
            return self._rank_world
        rank, world, _, _ = wds.utils.pytorch_worker_info()
        return rank, world

    def view(self, epoch: int) -> int:
        """The view epoch ``epoch`` of a run reads."""
        return view_of_epoch(self.cache, epoch)

    def num_batches(self, epoch: int) -> int:
        _, world = self.world()
        return batches_per_rank(epoch_ranges(self.cache, epoch, self.cfg.seed), world, self.cfg.batch_size)

    def read_stage(self) -> Callable[..., Any]:
        """The stage that turns range descriptors into arrays (benchmarks swap in other readers here)."""
        return read_chunks(
            self.cache.url, self.arrays, self.storage_options, self.cfg.verify, self.inputs, bool(self.quantized)
        )

    def pipeline(self, epoch: int) -> wds.DataPipeline:
        descriptors = [{"start": s, "stop": e} for s, e in epoch_ranges(self.cache, epoch, self.cfg.seed)]
        given = self._rank_world
        return wds.DataPipeline(
            lambda: iter(descriptors),
            wds.split_by_node if given is None else split_by_rank(*given),
            wds.split_by_worker,
            self.read_stage(),
            shuffle_batches(
                self.cfg.shuffle_buffer, self.cfg.batch_size, self.cfg.seed, epoch, None if given is None else given[0]
            ),
            to_tensors,
        )

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of ``epoch``: exactly ``num_batches(epoch)`` of them, each ``batch_size`` rows."""
        nb = self.num_batches(epoch)
        pipe = self.pipeline(epoch)
        source: Iterable[dict[str, torch.Tensor]] = pipe
        if self.cfg.workers > 0:
            source = torch.utils.data.DataLoader(
                pipe,
                batch_size=None,
                num_workers=self.cfg.workers,
                pin_memory=self.pin_memory,
                persistent_workers=False,
                prefetch_factor=4,
            )
        batches: Iterator[dict[str, torch.Tensor]] = itertools.islice(rebatch(source, self.cfg.batch_size), nb)
        if self.quantized:
            batches = dequantize_batches(batches, self.quantized, self.pin_memory)
        if self.pin_memory and self.cfg.workers == 0:  # the DataLoader pins when workers read
            return ({k: v.pin_memory() for k, v in b.items()} for b in batches)
        return batches
