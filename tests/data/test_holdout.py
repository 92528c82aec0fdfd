"""The validation split (data.holdout): a fixed part of the training split that no cache and no training reads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from litcache.cache.reader import open_cache
from litcache.cli.main import main
from litcache.config import DataConfig, PipelineConfig
from litcache.data import load_images
from litcache.data.holdout import held_out
from litcache.errors import ConfigError, DataError
from litcache.extract import extract
from litcache.train.stream import CacheStream
from litcache.train.supervised import evaluate_checkpoint

HOLDOUT = 16  # of the 64 generated training samples


def _keys(images) -> list[str]:
    return [images.index.key(i) for i in range(len(images))]


@pytest.fixture(scope="module")
def held(make_cfg: Callable[..., PipelineConfig]) -> PipelineConfig:
    return make_cfg(f"data.holdout={HOLDOUT}", "data.holdout_seed=3")


def test_the_parts_divide_the_training_split(held: PipelineConfig, tiny_cfg: PipelineConfig) -> None:
    whole = load_images(tiny_cfg.data, "train")
    train, val = load_images(held.data, "train"), load_images(held.data, "val")
    assert (len(train), len(val)) == (64 - HOLDOUT, HOLDOUT)
    assert sorted(_keys(train) + _keys(val)) == sorted(_keys(whole))  # every sample in exactly one part
    rows = held_out(held.data, 64)
    assert _keys(val) == [whole.index.key(int(i)) for i in rows]  # in the training split's order
    assert np.array_equal(val.labels, whole.labels[rows])
    assert np.array_equal(val.batch(np.arange(HOLDOUT)), whole.batch(rows))  # the same pixels
    assert not np.array_equal(held_out(dataclasses.replace(held.data, holdout_seed=4), 64), rows)  # the seed draws


def test_a_limit_takes_the_first_training_samples_and_holds_out_the_same(held: PipelineConfig) -> None:
    train = load_images(held.data, "train")
    first = load_images(held.data, "train", limit=10)
    assert _keys(first) == _keys(train)[:10]
    assert set(_keys(load_images(held.data, "val", limit=5))) <= set(_keys(load_images(held.data, "val")))


def test_a_part_is_fingerprinted_by_its_own_samples(held: PipelineConfig, tmp_path: Path, dataset) -> None:
    """The fingerprint of the training part equals the fingerprint of shards that hold just those samples."""
    from conftest import write_shard

    train = load_images(held.data, "train")
    kept = np.setdiff1d(np.arange(64), held_out(held.data, 64))
    write_shard(tmp_path / "train-0.tar", "train", dataset["train_images"][kept], dataset["train_labels"][kept])
    alone = load_images(DataConfig(source=str(tmp_path), index_dir=str(tmp_path / "index")), "train")
    assert train.fingerprint() == alone.fingerprint() != load_images(held.data, "val").fingerprint()
    memory = load_images(dataclasses.replace(held.data, in_memory=True), "train")  # decoded: the same part
    assert memory.fingerprint() == train.fingerprint() and np.array_equal(memory.images, train.batch(np.arange(48)))


def test_the_cache_holds_no_held_out_sample_and_says_so(held: PipelineConfig, teacher_path: Path, tmp_path) -> None:
    cfg = held.replace(store=dataclasses.replace(held.store, input="crc32"))  # its views are made from the data
    out = tmp_path / "cache.zarr"
    extract(cfg, str(teacher_path), str(out), show_progress=False)
    cache = open_cache(str(out))
    data = cache.manifest["data"]
    assert data["holdout"] == {"samples": HOLDOUT, "seed": 3, "of": 64, "part": "train"}
    assert data["samples"] == 64 - HOLDOUT and data["fingerprint"] == load_images(held.data, "train").fingerprint()
    assert "held out" in data["identity"]
    # stage two makes the views again from the data the manifest names: the same draw, whatever --data says of it
    # (each regenerated view is checked against the CRC-32 the cache keeps of the view the teacher saw)
    for data in (held.data, dataclasses.replace(held.data, holdout=0)):
        batches = list(CacheStream(cache, ["input", "rows/sample"], cfg.stream, rank=0, world=1, data=data).epoch(0))
        assert batches and all(int(b["rows/sample"].max()) < 64 - HOLDOUT for b in batches)


def test_a_cache_without_a_holdout_keeps_its_manifest(cache_path: Path) -> None:
    assert "holdout" not in open_cache(str(cache_path)).manifest["data"]  # older caches compare equal on resume


def test_evaluate_scores_the_held_out_samples(held: PipelineConfig, teacher_path: Path) -> None:
    result = evaluate_checkpoint(teacher_path, held, split="val")
    assert result["samples"] == HOLDOUT and result["split"] == "val" and "held out" in result["data"]
    args = ["evaluate", "-m", str(teacher_path), "-d", held.data.source, "--split", "val", "--json"]
    args += ["--set", f"data.index_dir={json.dumps(held.data.index_dir)}", "--set", f"data.holdout={HOLDOUT}"]
    out = CliRunner().invoke(main, [*args, "--set", "data.holdout_seed=3"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["accuracy"] == result["accuracy"]


def test_a_split_without_a_holdout_or_too_large_a_holdout_is_refused(held: PipelineConfig) -> None:
    with pytest.raises(DataError, match="split 'val' .* data.holdout is 0: set it"):
        load_images(dataclasses.replace(held.data, holdout=0), "val")
    with pytest.raises(DataError, match="data.holdout is 64, but the training split has 64 samples"):
        load_images(dataclasses.replace(held.data, holdout=64), "train")
    with pytest.raises(ConfigError, match="data.holdout must be >= 0"):
        DataConfig(holdout=-1)


def test_a_teacher_trains_without_the_held_out_samples(held: PipelineConfig, tmp_path: Path) -> None:
    from litcache.models.checkpoint import load_model
    from litcache.train.supervised import train_teacher

    train_teacher(held, tmp_path / "t.pt", epochs=1, show_progress=False)
    _, meta = load_model(tmp_path / "t.pt")
    assert meta["samples"] == 64 - HOLDOUT and "held out" in meta["data"]
