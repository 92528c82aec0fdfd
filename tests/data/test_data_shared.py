"""The real CIFAR-10 shards: streamed and in-memory extraction give the same cache, with the pixels the previous
in-memory path decoded (webdataset + Pillow)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from litcache import open_cache
from litcache.config import load_pipeline
from litcache.data import load_images, make_views
from litcache.extract import extract

SAMPLES = 300


@pytest.mark.slow
@pytest.mark.shared_data
def test_streamed_and_in_memory_extraction_give_the_same_cache(
    shared_cifar10: Path, teacher_path: Path, index_dir: Path, tmp_path: Path
) -> None:
    base = [f"data.source={json.dumps(str(shared_cifar10))}", f"data.index_dir={json.dumps(str(index_dir))}"]
    caches = {}
    for mode in ("false", "true"):
        cfg = load_pipeline("tiny", [*base, f"data.in_memory={mode}"])
        out = tmp_path / f"in_memory_{mode}.zarr"
        assert extract(cfg, str(teacher_path), str(out), limit=SAMPLES, show_progress=False)["complete"]
        caches[mode] = open_cache(str(out))
    streamed, held = caches["false"], caches["true"]
    assert streamed.rows == 2 * SAMPLES
    assert streamed.manifest["data"] == held.manifest["data"]
    assert streamed.manifest["data"]["identity"] == "wds:train-0.tar,train-1.tar,train-2.tar,train-3.tar,train-4.tar"
    for name in held.data_arrays():
        assert np.array_equal(streamed.array(name)[:], held.array(name)[:]), name

    # the pixels are those the previous path decoded: webdataset's reader and Pillow, views from that array
    import webdataset as wds
    from PIL import Image

    pixels, labels = [], []
    for sample in wds.WebDataset(str(shared_cifar10 / "train-0.tar"), shardshuffle=False, empty_check=False):
        with Image.open(io.BytesIO(sample["jpg"])) as im:
            pixels.append(np.asarray(im.convert("RGB")))
        labels.append(int(sample["cls"]))
        if len(pixels) == SAMPLES:
            break
    images = load_images(cfg.data, "train", SAMPLES)
    assert images.images is not None and np.array_equal(images.images, np.stack(pixels))
    assert np.array_equal(held.array("rows/label")[:SAMPLES], labels)
    rows = np.arange(streamed.rows)
    x = make_views(images, cfg.data, cfg.extract.seed, rows % SAMPLES, rows // SAMPLES)
    assert np.array_equal(streamed.array("input")[:], x.numpy())
