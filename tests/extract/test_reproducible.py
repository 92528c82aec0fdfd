"""The same inputs give the same cache: a hash of everything a cache holds, recorded, for a teacher whose numbers
are exact on any CPU (``user_models.exact_pools``). A change that alters what litcache stores for the same
inputs (layout, codes, statistics, checksums, metadata) changes the hash; record the new one only on purpose."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from litcache import build_model, save_model
from litcache.config import PipelineConfig
from litcache.extract import extract

TESTS = Path(__file__).parents[1]
MODEL = '{factory: user_models:exact_pools, sections: ["1", "2"]}'
# recorded with the store settings below; a deliberate format change records new ones (and says so)
RECORDED = {
    "float16": "c381bb48ab89ed45c1e31241f5a516bf483b56baa6dd37a965e6c9ce0391a254",  # format 4 (the version alone)
    "bits=4": "68c7df1fb172a8e4461ce05aef7c0d853412e0b5b7c76fcdc49771cd9ccd5141",  # format 4: codes as bit fields
}
STORES = {"float16": [], "bits=4": ["store.bits=4"]}
MANIFEST_VOLATILE = ("created", "litcache_version", "pipeline")  # the time, the release, the run's own settings


def cache_digest(path: Path) -> str:
    """SHA-256 over every array's name, metadata (zarr.json) and decoded values, and the manifest less its
    volatile keys: what a reader sees, independent of the compressor library's version."""
    group = zarr.open_group(str(path), mode="r")
    manifest = {k: v for k, v in group.attrs["litcache"].items() if k not in MANIFEST_VOLATILE}
    manifest["teacher"] = {k: v for k, v in manifest["teacher"].items() if k != "checkpoint"}  # a path
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    for name, arr in sorted(group.members(max_depth=None)):
        if isinstance(arr, zarr.Array):
            meta = json.loads((path / name / "zarr.json").read_text())
            h.update(name.encode() + json.dumps(meta, sort_keys=True).encode())
            h.update(np.ascontiguousarray(arr[...]).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("store", list(STORES))
def test_the_same_inputs_give_the_same_cache(
    store: str, make_cfg: Callable[..., PipelineConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    cfg = make_cfg(f"teacher.model={MODEL}", f"train.student={MODEL}", *STORES[store])
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    save_model(build_model(cfg.teacher.model, 10, cfg.data.mean, cfg.data.std), teacher)
    digests = []
    for run in ("a", "b"):
        extract(cfg, str(teacher), str(tmp_path / f"{run}.zarr"), show_progress=False)
        digests.append(cache_digest(tmp_path / f"{run}.zarr"))
    assert digests[0] == digests[1]
    assert digests[0] == RECORDED[store], f"the {store} cache changed: {digests[0]}"
