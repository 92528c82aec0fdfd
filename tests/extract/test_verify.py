"""``litcache verify``: checksums, the manifest's invariants, and rows recomputed by the teacher."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner, Result

from litcache import build_model, open_cache, save_model
from litcache.cache.verify import sample_rows, tolerance, verify_cache
from litcache.cli.main import main
from litcache.config import PipelineConfig
from litcache.errors import CompatibilityError
from litcache.extract import extract
from litcache.extract.recompute import verify_with_teacher


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_clean_cache_verifies_with_its_teacher(cache_path: Path, teacher_path: Path) -> None:
    report = verify_with_teacher(open_cache(str(cache_path)), str(teacher_path), fraction=0.25, show_progress=False)
    assert report.ok, report.lines()
    assert report.checked["units"] == 8 and report.checked["rows_recomputed"] == 32
    worst = report.checked["worst_relative_error"]
    assert 0 < worst["boundary/2"] <= 2**-7 and worst["logits"] < 1e-4  # rounding to 7 bits, exact float32
    result = run("verify", cache_path, "--teacher", teacher_path, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["ok"]


@pytest.mark.parametrize("keepbits", [0, 4])
def test_the_bound_follows_the_stores_rounding(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path, keepbits: int
) -> None:
    out = tmp_path / "c.zarr"
    extract(make_cfg(f"store.bitround_keepbits={keepbits}"), str(teacher_path), str(out), limit=16, show_progress=False)
    cache = open_cache(str(out))
    assert tolerance(cache, "boundary/1") == 2.0 ** -(keepbits or 10) and tolerance(cache, "logits") == 2.0**-23
    report = verify_with_teacher(cache, str(teacher_path), fraction=1.0, show_progress=False)
    assert report.ok, report.lines()


def test_rows_that_differ_from_the_teacher_are_named(cache_copy: Path, teacher_path: Path) -> None:
    """A row rewritten with a consistent checksum (a bug, not a bit flip): only the teacher can tell."""
    from litcache.cache.codecs import crc32
    from litcache.cache.layout import PROGRESS
    from litcache.cache.writer import open_writer

    cache = open_writer(str(cache_copy))
    rows = sample_rows(cache, 0.25, 0)
    row = int(rows[3])
    unit, offset = divmod(row, cache.rows_per_unit)
    s, e = cache.unit_rows(unit)
    group = zarr.open_group(str(cache_copy), mode="r+")
    block = group["boundary/3"][s:e]
    block[offset] *= 1.5
    group["boundary/3"][s:e] = block
    record = group[PROGRESS][unit]
    record[1 + cache.data_arrays().index("boundary/3")] = crc32(block)
    group[PROGRESS][unit] = record
    assert verify_cache(open_cache(str(cache_copy)), show_progress=False).ok  # the checksums agree
    result = run("verify", cache_copy, "--teacher", teacher_path, "--fraction", "0.25")
    assert result.exit_code == 1
    assert f"row {row} (unit {unit}): boundary/3 differs from the teacher's" in result.output
    assert "1 PROBLEMS" in result.output


def test_checksums_and_invariants_name_their_unit(cache_copy: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    block = group["input"][16:32]
    block[0, 0, 0, 0] ^= 0xFF
    group["input"][16:32] = block  # unit 1, its record untouched
    labels = group["rows/label"][32:48]
    labels[2] = 10
    group["rows/label"][32:48] = labels
    result = run("verify", cache_copy, "--json")
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    where = {(p["where"], p["detail"]) for p in problems}
    assert ("unit 1 (rows 16..31)", "input does not match its checksum") in where
    assert ("unit 2 (rows 32..47)", "rows/label does not match its checksum") in where
    assert any(p["where"] == "unit 2 (rows 32..47)" and "labels outside 0..9" in p["detail"] for p in problems)


def test_an_incomplete_cache_names_the_missing_units(
    make_cfg: Callable[..., PipelineConfig], teacher_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.zarr"
    extract(make_cfg(), str(teacher_path), str(out), max_units=3, show_progress=False)
    result = run("verify", out)
    assert result.exit_code == 1 and "unit 3 (rows 48..63): not written" in result.output


def test_another_teacher_is_refused(cache_path: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    other = tmp_path / "other.pt"
    save_model(build_model("resnet8"), other)
    with pytest.raises(CompatibilityError, match="is not the teacher .* was extracted with"):
        verify_with_teacher(open_cache(str(cache_path)), str(other), show_progress=False)
    result = run("verify", cache_path, "--teacher", other)
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output


def test_sample_rows_is_seeded_and_within_written_units(cache_path: Path, tmp_path: Path) -> None:
    cache = open_cache(str(cache_path))
    a, b = sample_rows(cache, 0.1, 0), sample_rows(cache, 0.1, 0)
    assert np.array_equal(a, b) and len(a) == 13 and len(set(a.tolist())) == 13
    assert not np.array_equal(a, sample_rows(cache, 0.1, 1))
    shutil.copytree(cache_path, tmp_path / "c.zarr")
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r+")
    group["progress/units"][0] = 0  # unit 0 not written
    rows = sample_rows(open_cache(str(tmp_path / "c.zarr")), 1.0, 0)
    assert rows.min() >= 16 and len(rows) == 112
