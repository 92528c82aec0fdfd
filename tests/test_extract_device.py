"""benchmarks/extract_device.py at a tiny size on the CPU: extract() against forward-only for each store, every
part of the breakdown timed, the bytes per boundary element, and the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "extract_device.py"


@pytest.mark.slow  # a ResNet-50 is built, calibrated and extracted 6 times: about 15-60 s on a busy 2-core CPU
def test_extract_device_times_every_part_of_every_store(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("extract_device", SCRIPT)
    assert spec is not None and spec.loader is not None
    extract_device = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract_device)
    out = tmp_path / "extract_device.json"
    argv = ["--device", "cpu", "--input", "random", "--size", "64", "--images", "3", "--batch-size", "2"]
    returned = extract_device.main([*argv, "--reps", "1", "--work", str(tmp_path / "work"), "--out", str(out)])

    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert result["device"] == "cpu" and result["sections"] == ["layer1", "layer2", "layer3", "layer4"]
    assert set(result["stores"]) == {"bits=4", "bits=8", "float16"}
    for label, store in result["stores"].items():
        assert store["rows"] == 3 and store["units"] >= 1
        assert set(store["parts_median_s"]) == {"views", "device", "copy", "encode", "write"}
        assert all(t >= 0 for t in store["parts_median_s"].values()), label
        assert set(store["split_ms_per_row"]) == {"teacher_rows", "per_unit", "write_chunks", "write_records"}
        assert all(t >= 0 for t in store["split_ms_per_row"].values()), label
        assert store["parts_median_s"]["device"] > 0 and store["parts_median_s"]["encode"] > 0, label
        assert store["median_extract_s"] > 0 and store["median_forward_only_s"] > 0
        assert math.isfinite(store["ratio"]) and store["ratio"] > 0, label
        assert 0 < store["bytes_per_boundary_element"] < 2.5, label
        assert set(store["bytes_per_element_by_boundary"]) == {f"boundary/{k}" for k in range(1, 5)}
    stores = result["stores"]
    # smaller codes store fewer bytes: the comparison the script exists for
    assert stores["bits=4"]["bytes_per_boundary_element"] < stores["bits=8"]["bytes_per_boundary_element"]
    assert stores["bits=8"]["bytes_per_boundary_element"] < stores["float16"]["bytes_per_boundary_element"]
    assert {"boundary/1", "input", "logits"} <= set(stores["bits=4"]["encode_median_s_by_array"])
