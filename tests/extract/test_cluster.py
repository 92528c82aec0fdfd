"""Extraction on a dask.distributed cluster: the same cache as one process, resumable, refusing mixed inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from litcache import open_cache, save_model
from litcache.cli.main import main
from litcache.config import PipelineConfig
from litcache.errors import CompatibilityError
from litcache.extract import extract
from litcache.extract.cluster import extract_on_dask, extract_units
from litcache.models import build_model

distributed = pytest.importorskip("distributed")


pytestmark = pytest.mark.slow  # a dask LocalCluster: seconds to start and stop


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # two worker processes (spawned: every task imports litcache afresh), one thread each
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def assert_same_cache(got_path: Path, want_path: Path) -> None:
    got, want = open_cache(str(got_path)), open_cache(str(want_path))
    assert got.complete and got.manifest["complete"] and got.verify() == []
    for key in ("rows", "views", "seed", "store", "arrays", "transform", "rows_per_unit"):
        assert got.manifest[key] == want.manifest[key], key
    assert got.manifest["teacher"]["fingerprint"] == want.manifest["teacher"]["fingerprint"]
    assert got.manifest["data"]["fingerprint"] == want.manifest["data"]["fingerprint"]
    for name in want.data_arrays():
        a, b = got.array(name)[:], want.array(name)[:]
        if name.startswith("boundary/") or name == "logits":  # other forward batches: rounding only
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=2**-7, atol=2e-3)
        else:
            assert np.array_equal(a, b), name
    stats = [s["abs_max"] for s in got.manifest["boundary_stats"]]
    np.testing.assert_allclose(stats, [s["abs_max"] for s in want.manifest["boundary_stats"]], rtol=2**-7)


def test_dask_extraction_equals_one_process(
    client: Any, tiny_cfg: PipelineConfig, teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dask.zarr"
    summary = extract_on_dask(tiny_cfg, str(teacher_path), str(out), client, units_per_task=3, show_progress=False)
    assert summary["complete"] and summary["units_written"] == summary["units_total"] == 8
    assert summary["tasks"] == 3 and summary["workers"] == 2
    assert_same_cache(out, cache_path)


def test_dask_extraction_resumes_and_never_rewrites_a_unit(
    client: Any, tiny_cfg: PipelineConfig, teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "part.zarr"
    extract(tiny_cfg, str(teacher_path), str(out), max_units=3, show_progress=False)
    first = {p: p.stat().st_mtime_ns for p in (out / "boundary" / "1" / "c").rglob("*") if p.is_file()}
    assert len(first) == 3
    summary = extract_on_dask(
        tiny_cfg, str(teacher_path), str(out), client, resume=True, units_per_task=2, show_progress=False
    )
    assert summary["complete"] and summary["units_written"] == 5
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # the units already written were kept
    assert_same_cache(out, cache_path)
    # a repeated task (as dask retries one) finds its units written and skips them
    again = client.submit(extract_units, [0, 1, 7], tiny_cfg.to_dict(), str(teacher_path), str(out), None, pure=False)
    again = again.result()
    assert again["units_written"] == 0 and again["skipped"] == 3


def test_a_worker_with_other_inputs_refuses_to_write(
    client: Any, tiny_cfg: PipelineConfig, teacher_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mixed.zarr"
    extract(tiny_cfg, str(teacher_path), str(out), max_units=1, show_progress=False)
    cfg = tiny_cfg.to_dict()
    with pytest.raises(CompatibilityError, match="other training data"):  # 32 samples where the cache has 64
        client.submit(extract_units, [1], cfg, str(teacher_path), str(out), 32, pure=False).result()
    torch.manual_seed(1)
    other = tmp_path / "other-teacher.pt"
    save_model(build_model("resnet8").eval(), other)
    with pytest.raises(CompatibilityError, match="other weights"):
        client.submit(extract_units, [1], cfg, str(other), str(out), None, pure=False).result()
    assert open_cache(str(out)).done_units().sum() == 1  # nothing was written


def test_the_cli_extracts_on_a_local_cluster(
    data_dir: Path, teacher_path: Path, cache_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli.zarr"
    args = ["extract", "-t", teacher_path, "-d", data_dir, "-o", out, "--dask", "local:2", "--units-per-task", 3]
    args += ["--set", "store.bits=0"]  # as cache_path
    result = CliRunner().invoke(main, [str(a) for a in args] + ["-q"])
    assert result.exit_code == 0, result.output
    assert "8 units written" in result.output and "complete" in result.output
    assert_same_cache(out, cache_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--dask", "local:two"], "local:N"), (["--dask", "local:2", "--max-units", "1"], "--resume")],
)
def test_the_cli_refuses_bad_dask_options(
    extra: list[str], message: str, data_dir: Path, teacher_path: Path, tmp_path: Path
) -> None:
    args = ["extract", "-t", str(teacher_path), "-d", str(data_dir), "-o", str(tmp_path / "x.zarr"), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x.zarr").exists()
