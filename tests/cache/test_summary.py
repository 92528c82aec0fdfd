from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from litcache import open_cache
from litcache.cache.summary import channel_stats, format_summary, summarize


def test_summary_sizes_and_identity(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    s = summarize(cache)
    json.dumps(s)  # JSON-ready
    assert (s["format_version"], s["complete"], s["rows"], s["samples"], s["views"]) == (4, True, 128, 64, 2)
    assert (s["units_written"], s["units_total"]) == (8, 8)
    assert s["teacher"]["model"] == "resnet8" and s["teacher"]["sections"] == ["layer1", "layer2", "layer3"]
    assert s["teacher"]["fingerprint"] == cache.manifest["teacher"]["fingerprint"]
    for name, a in s["arrays"].items():
        on_disk = sum(p.stat().st_size for p in (cache_path / name).rglob("*") if p.is_file())
        assert a["stored_bytes"] == on_disk, name
        assert a["raw_fp32_bytes"] == 4 * int(np.prod(a["shape"])), name
    assert s["arrays"]["boundary/1"]["shape"] == [128, 16, 32, 32]
    assert s["arrays"]["boundary/1"]["dtype"] == "float16"
    assert s["arrays"]["input"]["dtype"] == "uint8"
    assert "teacher/frozen/net.conv1.weight" in s["arrays"] and "teacher/frozen/net.fc.weight" in s["arrays"]
    assert s["stored_bytes"] == sum(s["arrays"][n]["stored_bytes"] for n in cache.data_arrays())
    elements = sum(int(np.prod(s["arrays"][f"boundary/{k}"]["shape"])) for k in (1, 2, 3))
    bound_bytes = sum(s["arrays"][f"boundary/{k}"]["stored_bytes"] for k in (1, 2, 3))
    assert s["boundary_bytes_per_element"] == bound_bytes / elements


def test_channel_stats_match_numpy(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    stats = channel_stats(cache, scheduler="sync")
    assert sorted(stats) == ["boundary/1", "boundary/2", "boundary/3"]
    for name, st in stats.items():
        x = cache.array(name)[:].astype(np.float64)
        axes = (0, 2, 3)
        np.testing.assert_allclose(st["mean"], x.mean(axis=axes), rtol=1e-9)
        np.testing.assert_allclose(st["std"], x.std(axis=axes), rtol=1e-7)
        np.testing.assert_array_equal(st["min"], x.min(axis=axes))
        np.testing.assert_array_equal(st["max"], x.max(axis=axes))


def test_text_summary(cache_path: Path) -> None:
    text = format_summary(summarize(open_cache(str(cache_path))))
    assert "complete (8/8 units)" in text
    assert "128 = 64 samples x 2 views" in text
    for name in ("boundary/3", "logits", "input", "rows/label"):
        assert name in text
