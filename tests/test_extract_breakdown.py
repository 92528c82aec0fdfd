"""benchmarks/extract_breakdown.py at its smallest size on the tiny teacher and shards: every variant it documents
runs (its stand-ins called for every unit, or the script stops) and every figure it prints is there and finite."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "extract_breakdown.py"
VARIANTS = {
    "forward only",
    "default",
    "no writes",
    "no writes, no stats",
    "inline writes",
    "store.codec=none",
    "store.codec=blosc-lz4",
}


# about 4-6 s a store on a busy 2-core CPU: the default store always runs, float16 with the slow tests
STORES = [pytest.param([], id="bits=4"), pytest.param(["--store", "bits=0"], id="float16", marks=pytest.mark.slow)]


@pytest.mark.parametrize("store", STORES)
def test_extract_breakdown_measures_every_variant(
    store: list[str], data_dir: Path, teacher_path: Path, tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("extract_breakdown", SCRIPT)
    assert spec is not None and spec.loader is not None
    extract_breakdown = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract_breakdown)
    argv = ["--teacher", str(teacher_path), "--data", str(data_dir), "--images", "8", "--reps", "1", "--threads", "1"]
    result = extract_breakdown.main([*argv, "--work", str(tmp_path), *store])

    quantised = not store
    assert result["store"]["bits"] == (4 if quantised else 0)
    assert result["rows"] == 16 and result["units"] >= 1
    assert set(result["variants"]) == VARIANTS
    for name, v in result["variants"].items():
        assert len(v["seconds"]) == 1 and v["median_s"] > 0, name
        assert math.isfinite(v["ratio"]) and v["ratio"] > 0, name
        assert math.isfinite(v["ms_per_unit_over_forward"]), name
    parts = result["unit_parts_ms"]
    assert any(p.startswith("quantize_unit") for p in parts) == quantised
    for prefix in ("teacher_rows", "unit_stats", "encode_unit", "blosc-zstd 1 alone", "write_unit"):
        assert [p for p in parts if p.startswith(prefix)], prefix
    assert all(math.isfinite(ms) and ms > 0 for ms in parts.values()), parts
    assert result["boundary_bytes_per_unit"] > 0
    # 4-bit codes take about half a byte an element (a third on trained activations); float16 up to two
    assert 0 < result["bytes_per_boundary_element"] < (0.75 if quantised else 2.5)
