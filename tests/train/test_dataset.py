"""The cache in one's own loop: CacheDataset keeps train-sections' guarantees, and the public API around it."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import litcache
from litcache import CacheDataset, load_model, make_cache_loader, open_cache
from litcache.cache.reader import Cache
from litcache.config import StreamConfig
from litcache.train.stream import ROW, CacheStream
from litcache.train.students import frozen_state

ARRAYS = ["input", "boundary/1", "logits", "rows/label"]
EXAMPLE = Path(__file__).parents[2] / "examples" / "train_from_cache.py"


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def cache(cache_path: Path) -> Cache:
    return open_cache(str(cache_path))


def rows_of(batches: object) -> list[list[int]]:
    return [b[ROW].tolist() for b in batches]  # type: ignore[attr-defined]


def test_the_same_batches_as_the_trainer_reads(cache: Cache) -> None:
    """train-sections reads CacheStream.epoch with the pipeline's stream settings: same rows, same order."""
    dataset = CacheDataset(cache, ARRAYS, batch_size=16, shuffle_buffer=64, seed=3)
    trainer = CacheStream(
        cache, ["boundary/2", "boundary/3"], StreamConfig(batch_size=16, shuffle_buffer=64, seed=3, workers=0)
    )
    for epoch in range(3):
        dataset.set_epoch(epoch)
        batches = list(dataset)
        assert rows_of(batches) == rows_of(trainer.epoch(epoch))
        assert len(batches) == len(dataset) == cache.samples // 16
        assert dataset.view == epoch % cache.views
        rows = np.concatenate([b[ROW].numpy() for b in batches])
        assert sorted(rows.tolist()) == list(range(dataset.view * cache.samples, (dataset.view + 1) * cache.samples))
        for b in batches:
            assert set(b) == {*ARRAYS, ROW} and all(len(v) == 16 for v in b.values())
            assert torch.equal(b["boundary/1"], torch.from_numpy(cache.array("boundary/1")[:][b[ROW].numpy()]))


@pytest.mark.parametrize(("world", "workers"), [(2, 0), (3, 0), (2, 2)])
def test_ranks_given_explicitly_get_equal_counts_and_disjoint_rows(cache: Cache, world: int, workers: int) -> None:
    for epoch in (0, 1):
        per_rank = []
        for rank in range(world):
            dataset = CacheDataset(
                cache, ["rows/view"], batch_size=8, epoch=epoch, rank=rank, world=world, workers=workers
            )
            batches = list(dataset)
            assert len(batches) == len(dataset) > 0
            assert all((b["rows/view"] == epoch % cache.views).all() for b in batches)
            per_rank.append([r for b in batches for r in b[ROW].tolist()])
        assert len({len(rows) for rows in per_rank}) == 1  # equal batch counts: DDP never waits on a rank
        every = [r for rows in per_rank for r in rows]
        assert len(every) == len(set(every))  # no row twice across ranks


def test_rank_and_world_go_together(cache: Cache) -> None:
    with pytest.raises(ValueError, match="rank and world"):
        CacheDataset(cache, ARRAYS, rank=1)
    with pytest.raises(ValueError, match="0 <= rank < world"):
        CacheDataset(cache, ARRAYS, rank=2, world=2)


def test_reading_an_epoch_twice_warns(cache: Cache, caplog: pytest.LogCaptureFixture) -> None:
    dataset = CacheDataset(str(cache.url), ["rows/view"], batch_size=16)  # a path works as well as a Cache
    with caplog.at_level(logging.WARNING, logger="litcache.train.trainer.dataset"):
        list(dataset)
        assert not caplog.records
        list(dataset)
    assert "set_epoch" in caplog.text


def test_loader_factory_and_a_worker_dataloader(cache: Cache) -> None:
    dataset = CacheDataset(cache, ["rows/label"], batch_size=16, epoch=1)
    loader = make_cache_loader(dataset)
    assert len(loader) == len(dataset)
    assert rows_of(loader) == rows_of(CacheDataset(cache, ["rows/label"], batch_size=16, epoch=1))
    wrong = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    with pytest.raises(RuntimeError, match="workers="):
        next(iter(wrong))


def test_the_public_api_for_ones_own_loop() -> None:
    for name in ("CacheDataset", "make_cache_loader", "build_student", "ir_loss", "kd_loss", "lit_loss", "pixel_loss"):
        assert name in litcache.__all__ and hasattr(litcache, name), name


@pytest.mark.slow
def test_the_example_trains_a_student_from_the_cache(
    cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(EXAMPLE.read_text().splitlines()) < 60
    out = tmp_path / "student.pt"
    argv = [str(EXAMPLE), str(cache_path), "--epochs", "3", "--kd-epochs", "1", "--batch-size", "16"]
    monkeypatch.setattr(sys, "argv", [*argv, "--device", "cpu", "-o", str(out)])
    torch.manual_seed(0)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == [f"epoch {e} (view {e % 2})" for e in range(4)]
    ir = [float(line.rsplit(" ", 1)[1]) for line in lines[:3]]
    assert ir[2] < ir[0]  # the IR loss falls
    student, meta = load_model(out)
    assert student.spec["name"] == "resnet8" and meta["mode"] == "lit-kd"
    teacher = frozen_state(open_cache(str(cache_path)))
    state = student.state_dict()
    for name, value in teacher.items():  # the stem and head stayed the teacher's
        assert torch.equal(state[name], value), name
