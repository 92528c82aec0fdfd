from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from litcache import open_cache
from litcache.cache.reader import Cache
from litcache.config import PipelineConfig, StreamConfig
from litcache.errors import CacheError
from litcache.extract import extract
from litcache.train.stream import ROW, CacheStream, batches_per_rank, epoch_ranges, rebatch, shuffle_batches

SAMPLES = 40  # rows per view; 6 rows per chunk, so views 1 and 2 start and end inside a chunk
VIEWS = 3
ARRAYS = ["rows/view", "rows/sample", "input", "boundary/2"]


@pytest.fixture(scope="module")
def stream_cache(
    tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., PipelineConfig], teacher_path: Path
) -> Cache:
    """40 samples x 3 views = 120 rows in chunks of 6 rows: 8 ranges per view, ragged at both ends of views 1, 2."""
    out = tmp_path_factory.mktemp("stream") / "cache.zarr"
    cfg = make_cfg(f"extract.views={VIEWS}", "store.chunk_mb=0.1875")
    extract(cfg, str(teacher_path), str(out), limit=SAMPLES, show_progress=False)
    cache = open_cache(str(out))
    assert (cache.samples, cache.views, cache.rows_per_chunk) == (SAMPLES, VIEWS, 6)
    return cache


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def make_stream(cache: Cache, **cfg: int) -> CacheStream:
    settings = {"batch_size": 8, "shuffle_buffer": 16, "workers": 0, "seed": 0, **cfg}
    return CacheStream(cache, ARRAYS, StreamConfig(**settings))


def epoch_rows(stream: CacheStream, epoch: int) -> list[np.ndarray]:
    """The ``row`` of every batch of one epoch, checking that each batch is full."""
    batches = []
    for batch in stream.epoch(epoch):
        assert set(batch) == {*ARRAYS, ROW}
        assert all(len(v) == stream.cfg.batch_size for v in batch.values())
        batches.append(batch[ROW].numpy())
    return batches


def view_rows(view: int) -> set[int]:
    return set(range(view * SAMPLES, (view + 1) * SAMPLES))


@pytest.mark.parametrize("batch_size", [8, 7])
def test_epoch_reads_the_rows_of_view_epoch_mod_k(stream_cache: Cache, batch_size: int) -> None:
    stream = make_stream(stream_cache, batch_size=batch_size)
    expected_inputs = stream_cache.array("input")[:]
    expected_b2 = stream_cache.array("boundary/2")[:]
    for epoch in range(2 * VIEWS):
        view = epoch % VIEWS
        batches = list(stream.epoch(epoch))
        assert len(batches) == stream.num_batches(epoch) == SAMPLES // batch_size
        rows = np.concatenate([b[ROW].numpy() for b in batches])
        assert len(rows) == len(set(rows.tolist())) == SAMPLES // batch_size * batch_size
        assert set(rows.tolist()) <= view_rows(view)
        if SAMPLES % batch_size == 0:
            assert set(rows.tolist()) == view_rows(view)
        for b in batches:  # every array of a batch belongs to the rows it names
            r = b[ROW].numpy()
            assert b["rows/view"].tolist() == [view] * batch_size
            assert np.array_equal(b["rows/sample"].numpy(), r - view * SAMPLES)
            assert np.array_equal(b["input"].numpy(), expected_inputs[r])
            assert np.array_equal(b["boundary/2"].numpy(), expected_b2[r])


def test_same_seed_same_order_next_epoch_differs(stream_cache: Cache) -> None:
    first = [epoch_rows(make_stream(stream_cache), e) for e in range(VIEWS + 1)]
    again = [epoch_rows(make_stream(stream_cache), e) for e in range(VIEWS + 1)]
    for a, b in zip(first, again, strict=True):
        assert [x.tolist() for x in a] == [x.tolist() for x in b]
    epoch0, epoch_k = np.concatenate(first[0]), np.concatenate(first[VIEWS])  # the same view, a new order
    assert sorted(epoch0.tolist()) == sorted(epoch_k.tolist())
    assert epoch0.tolist() != epoch_k.tolist()
    assert np.concatenate(first[1]).tolist() != (epoch0 + SAMPLES).tolist()
    other_seed = np.concatenate(epoch_rows(make_stream(stream_cache, seed=1), 0))
    assert other_seed.tolist() != epoch0.tolist()


def test_shuffle_mixes_rows_across_chunks(stream_cache: Cache) -> None:
    rows = epoch_rows(make_stream(stream_cache, shuffle_buffer=SAMPLES), 0)
    chunks_in_first_batch = {int(r) // stream_cache.rows_per_chunk for r in rows[0]}
    assert len(chunks_in_first_batch) > 2


@pytest.mark.parametrize("batch_size", [8, 6])
def test_dataloader_workers_read_every_row_once(stream_cache: Cache, batch_size: int) -> None:
    stream = make_stream(stream_cache, workers=2, batch_size=batch_size)
    for epoch in (0, 1):
        batches = epoch_rows(stream, epoch)
        assert len(batches) == stream.num_batches(epoch) == SAMPLES // batch_size
        rows = np.concatenate(batches).tolist()
        assert len(rows) == len(set(rows)) and set(rows) <= view_rows(epoch)
        if SAMPLES % batch_size == 0:
            assert set(rows) == view_rows(epoch)
    again = epoch_rows(make_stream(stream_cache, workers=2, batch_size=batch_size), 1)
    assert [b.tolist() for b in again] == [b.tolist() for b in epoch_rows(stream, 1)]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_equal_batch_counts_and_disjoint_rows(
    stream_cache: Cache, monkeypatch: pytest.MonkeyPatch, world: int, workers: int
) -> None:
    batch_size = 4
    for epoch in (0, 1):
        expected = batches_per_rank(epoch_ranges(stream_cache, epoch, seed=0), world, batch_size)
        assert expected > 0
        per_rank = []
        for rank in range(world):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(world))
            stream = make_stream(stream_cache, workers=workers, batch_size=batch_size)
            assert stream.world() == (rank, world)
            assert stream.num_batches(epoch) == expected
            batches = epoch_rows(stream, epoch)
            assert len(batches) == expected
            per_rank.append(np.concatenate(batches).tolist())
        every_row = [r for rows in per_rank for r in rows]
        assert len(every_row) == len(set(every_row)) == world * expected * batch_size
        assert set(every_row) <= view_rows(epoch)


def test_ranks_split_whole_ranges_in_a_shared_order(stream_cache: Cache) -> None:
    ranges = epoch_ranges(stream_cache, 1, seed=0)
    assert ranges == epoch_ranges(stream_cache, 1, seed=0)
    assert ranges != epoch_ranges(stream_cache, 1 + VIEWS, seed=0)  # same view, new order
    assert sorted(ranges) == sorted(epoch_ranges(stream_cache, 1 + VIEWS, seed=0))
    assert sorted(ranges)[0] == (40, 42) and sorted(ranges)[-1] == (78, 80)  # view 1 is ragged at both ends
    assert sum(e - s for s, e in ranges) == SAMPLES


def test_batches_per_rank_is_the_smallest_rank_share() -> None:
    ranges = [(0, 6), (6, 12), (12, 14), (14, 20), (20, 21)]
    assert batches_per_rank(ranges, 1, 4) == 21 // 4
    assert batches_per_rank(ranges, 2, 4) == min(6 + 2 + 1, 6 + 6) // 4
    assert batches_per_rank(ranges, 3, 2) == min(6 + 6, 6 + 1, 2) // 2
    assert batches_per_rank(ranges, 6, 1) == 0  # a rank without a range gets nothing


def test_stream_refuses_arrays_the_cache_lacks(stream_cache: Cache) -> None:
    with pytest.raises(CacheError, match="boundary/9"):
        CacheStream(stream_cache, ["input", "boundary/9"], StreamConfig())


# -- stages on small inputs ---------------------------------------------------------------------------------


def chunk(start: int, stop: int) -> dict[str, np.ndarray]:
    rows = np.arange(start, stop, dtype=np.int64)
    return {ROW: rows, "x": rows * 10, "img": np.repeat(rows[:, None], 3, axis=1)}


def run_shuffle(sizes: list[int], bufsize: int, batch_size: int, seed: int = 0, epoch: int = 0) -> list[dict]:
    bounds = np.cumsum([0, *sizes])
    chunks = [chunk(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    return list(shuffle_batches(bufsize, batch_size, seed, epoch)(iter(chunks)))


@pytest.mark.parametrize(("sizes", "bufsize"), [([3, 5, 4, 6, 2], 10), ([3, 5, 4, 6, 4], 7), ([7], 100), ([2] * 9, 1)])
def test_shuffle_batches_emits_a_permutation_in_full_batches(sizes: list[int], bufsize: int) -> None:
    total = sum(sizes)
    batches = run_shuffle(sizes, bufsize, 4)
    lengths = [len(b[ROW]) for b in batches]
    assert lengths == [4] * (total // 4) + ([total % 4] if total % 4 else [])
    rows = np.concatenate([b[ROW] for b in batches])
    assert sorted(rows.tolist()) == list(range(total))
    for b in batches:
        assert np.array_equal(b["x"], b[ROW] * 10)
        assert np.array_equal(b["img"][:, 2], b[ROW])


def test_shuffle_batches_is_seeded_by_seed_epoch_and_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    def order(**kw: int) -> list[int]:
        return np.concatenate([b[ROW] for b in run_shuffle([5, 5, 5, 5], 20, 4, **kw)]).tolist()

    base = order(seed=3, epoch=1)
    assert base == order(seed=3, epoch=1)
    assert base != list(range(20))
    assert base != order(seed=3, epoch=2)
    assert base != order(seed=4, epoch=1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert base != order(seed=3, epoch=1)


def test_shuffle_batches_of_nothing_is_nothing() -> None:
    assert list(shuffle_batches(8, 4, 0, 0)(iter([]))) == []


def tensor_batch(start: int, stop: int) -> dict[str, torch.Tensor]:
    rows = torch.arange(start, stop)
    return {ROW: rows, "x": rows * 10}


def test_rebatch_passes_full_batches_and_joins_tails_in_order() -> None:
    sizes = [4, 4, 2, 3, 1, 4, 4, 3, 2]
    bounds = np.cumsum([0, *sizes]).tolist()
    parts = [tensor_batch(s, e) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    out = list(rebatch(iter(parts), 4))
    assert out[0] is parts[0] and out[1] is parts[1]  # full batches pass through untouched
    assert [len(b[ROW]) for b in out] == [4] * (sum(sizes) // 4)
    rows = torch.cat([b[ROW] for b in out])
    assert rows.tolist() == list(range(len(rows)))  # the order of arrival; the short rest is dropped
    assert all(torch.equal(b["x"], b[ROW] * 10) for b in out)


def test_rebatch_joins_many_small_tails() -> None:
    parts = [tensor_batch(i, i + 1) for i in range(10)]
    out = list(rebatch(iter(parts), 3))
    assert [b[ROW].tolist() for b in out] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert list(rebatch(iter([tensor_batch(0, 2)]), 3)) == []


def test_a_sharded_cache_is_read_in_whole_shards_and_checked(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sharded.zarr"
    extract(make_cfg("store.chunk_mb=0.125", "store.shard_chunks=4"), str(teacher_path), str(out), show_progress=False)
    cache = open_cache(str(out))
    assert (cache.rows_per_chunk, cache.rows_per_unit) == (4, 16)
    assert all(e - s == 16 for s, e in epoch_ranges(cache, 0, 0))  # one shard a range, not one chunk
    assert sorted(np.concatenate(epoch_rows(make_stream(cache), 0)).tolist()) == sorted(range(64))
    group = zarr.open_group(str(out), mode="r+")
    unit = group["boundary/2"][16:32]
    unit[5, 0, 0, 0] += 1  # one value of one inner chunk, rewritten after the record vouched for the shard
    group["boundary/2"][16:32] = unit
    with pytest.raises(CacheError, match="do not match their checksum"):
        for _ in make_stream(open_cache(str(out))).epoch(0):
            pass


def test_a_unit_cut_by_the_edge_of_a_view_is_checked_too(stream_cache: Cache, tmp_path: Path) -> None:
    """Rows 36..41 are one unit: 36..39 of view 0, 40..41 of view 1. Epoch 1 reads only 40..41 of it."""
    import shutil

    out = tmp_path / "cache.zarr"
    shutil.copytree(stream_cache.url, out)
    assert (stream_cache.rows_per_unit, stream_cache.unit_rows(6)) == (6, (36, 42))
    assert (40, 42) in epoch_ranges(stream_cache, 1, 0)  # a range that is part of a unit
    group = zarr.open_group(str(out), mode="r+")
    unit = group["boundary/2"][36:42]
    unit[4, 0, 0, 0] += 1  # row 40: view 1's, changed after the record vouched for the unit
    group["boundary/2"][36:42] = unit
    clean = [b for b in make_stream(open_cache(str(out))).epoch(2)]  # view 2 does not touch unit 6
    assert clean
    with pytest.raises(CacheError, match=r"boundary/2 rows 36\.\.41 do not match their checksum"):
        for _ in make_stream(open_cache(str(out))).epoch(1):
            pass
    unchecked = make_stream(open_cache(str(out)), verify=False)  # stream.verify=false reads it as it is
    rows = np.concatenate([b[ROW].numpy() for b in unchecked.epoch(1)])
    assert 40 in rows
