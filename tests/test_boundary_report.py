"""benchmarks/boundary_report.py: the relative RMS error against a hand-computed case, and the report of a cache
against its teacher."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))

from boundary_report import RelativeRms, boundary_report  # noqa: E402

from litcache import open_cache  # noqa: E402
from litcache.models.checkpoint import load_model  # noqa: E402


def test_relative_rms_is_the_error_rms_over_the_values_std() -> None:
    # exact values 1 and 3: std 1 (ddof 0); stored 1.5 and 2.5: errors +0.5 and -0.5, RMS 0.5
    assert RelativeRms().add(np.array([1.5, 2.5]), np.array([1.0, 3.0])).value == pytest.approx(0.5)
    # batch by batch, the same; a large offset cancels nothing (the std is 1, the RMS error 0.5)
    split = RelativeRms().add(np.array([1e6 + 1.5]), np.array([1e6 + 1]))
    split.add(np.array([1e6 + 2.5]), np.array([1e6 + 3]))
    assert (split.std, split.value) == (1.0, 0.5)
    # errors of 1 against values of std 2: 0.5
    exact = np.array([0.0, 0.0, 4.0, 4.0])
    assert RelativeRms().add(exact + np.array([1, -1, 1, -1]), exact).value == pytest.approx(0.5)


def test_report_of_a_float_cache_against_its_teacher(cache_path: Path, teacher_path: Path) -> None:
    cache = open_cache(str(cache_path))  # float16 with 7 mantissa bits (store.bits=0), 16 rows a unit
    report = boundary_report(cache, load_model(teacher_path)[0], rows=20, repeats=1)
    assert [b["boundary"] for b in report] == [f"boundary/{k}" for k in cache.stored_boundaries()]
    for b in report:
        assert b["error_rows"] == 32  # whole units: two of 16 rows
        # rounding to 7 mantissa bits moves a value by at most 2^-8 of itself: far below the values' spread
        assert 0 < b["rel_rms_error"] < 2**-7
        assert b["bytes_per_element"] == pytest.approx(
            (cache.array(b["boundary"]).nbytes_stored()) / (cache.rows * b["elements_per_row"])
        )
        assert b["encode_rows"] == 16 and b["encode_mb"] == pytest.approx(16 * b["elements_per_row"] * 2 / 1e6)
        assert b["compress_mb_per_s"] >= b["encode_mb_per_s"] > 0  # the compression is a part of the encode
