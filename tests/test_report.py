"""`litcache report` of a tiny `litcache run` and of the separate commands' outputs, checked number by number."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from torch import nn

import litcache.report.plots
from litcache import build_model, build_report, load_model, open_cache
from litcache.cache.reader import Cache
from litcache.cache.summary import summarize
from litcache.cli.main import main
from litcache.config import PipelineConfig
from litcache.errors import MissingExtraError
from litcache.recipe import run_pipeline
from litcache.report.cache_stats import boundary_statistics, sampled_units
from litcache.report.sizes import count_macs
from litcache.train.trainer import train_end_to_end, train_sections

SMALL = ("store.chunk_mb=0.25", "stream.batch_size=16", "stream.shuffle_buffer=64", "train.device=cpu")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., PipelineConfig]) -> Path:
    """`litcache run` of a resnet14 teacher and a resnet8 student (and its scratch baseline), 2 + 1 epochs."""
    out = tmp_path_factory.mktemp("run") / "tiny-run"
    cfg = make_cfg(*SMALL, "teacher.model=resnet14", "train.epochs=2", "kd.epochs=1", "log.tensorboard=false")
    run_pipeline(cfg, out, baselines=True, show_progress=False)
    return out


def md_table(markdown: str, first_columns: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header starts with ``first_columns``, as {header: cell}."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_columns} |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (c.strip() for c in line.strip().strip("|").split("|")), strict=True)))
    return rows


def hook_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of the conv and linear layers, counted another way: forward hooks and the layers' own shapes."""
    total = 0

    def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out.numel() * module.in_channels // module.groups * kh * kw
        else:
            total += out.numel() * module.in_features  # type: ignore[operator]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.slow
def test_report_of_a_run_has_its_files_and_numbers(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    build_report([str(tiny_run)], out, show_progress=False)
    for name in ("ir_loss.png", "loss.png", "lr.png", "scores.png", "cache-tiny-run-cache.zarr.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    markdown = (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    results = json.loads((tiny_run / "results.json").read_text())

    models = {row["model"].strip("`"): row for row in md_table(markdown, "model")}
    assert list(models) == ["teacher", "lit-resnet8", "scratch-resnet8"]
    teacher_params = results["models"][0]["params"]
    for rec in results["models"]:
        row = models[rec["name"]]
        model, _ = load_model(rec["checkpoint"])
        params = sum(p.numel() for p in model.parameters())
        assert row["parameters"] == f"{params:,}" == f"{rec['params']:,}"
        assert row["MACs"] == f"{hook_macs(model, (3, 32, 32)):,}"
        assert row["accuracy"] == f"{rec['accuracy']:.4f}"
        assert row["seconds"] == f"{rec['seconds']:.1f}"
        assert row["compression"] == f"{teacher_params / params:.2f}x"
    assert models["teacher"]["architecture"] == "`resnet14`" and models["lit-resnet8"]["role"] == "student"
    assert float(models["lit-resnet8"]["compression"].rstrip("x")) > 1.5  # resnet14 -> resnet8
    assert "same weights fingerprint" in markdown  # the teacher checkpoint is recognised as the cache's teacher
    assert f"{results['models'][1]['test_samples']} test samples" in markdown  # where the accuracy came from

    stages = {row["log"].strip("`"): row for row in md_table(markdown, "log")}
    assert list(stages) == ["teacher.pt", "students/resnet8/sections", "students/resnet8/student.pt"] + [
        "baselines/scratch-resnet8.pt"
    ]
    sections = [json.loads(line) for line in (tiny_run / "students/resnet8/sections/metrics.jsonl").open()]
    assert stages["students/resnet8/sections"]["epochs"] == "2"
    assert stages["students/resnet8/sections"]["seconds"] == f"{sum(r['seconds'] for r in sections):.1f}"
    assert stages["students/resnet8/student.pt"]["stage"] == "kd"

    (cache_row,) = md_table(markdown, "cache")
    s = summarize(open_cache(str(tiny_run / "cache.zarr")))
    assert cache_row["stored MB"] == f"{s['stored_bytes'] / 1e6:.2f}"
    assert cache_row["bytes per boundary element"] == f"{s['boundary_bytes_per_element']:.3f}"
    assert cache_row["extraction seconds"] == f"{results['cache']['extract_seconds']:.1f}"
    assert cache_row["samples x views"] == f"{s['samples']} x {s['views']}"
    boundaries = md_table(markdown, "boundary")
    assert [b["boundary"] for b in boundaries] == ["`boundary/1`", "`boundary/2`", "`boundary/3`"]
    zeros = report["caches"][0]["boundaries"]["boundaries"]["boundary/2"]["zero_fraction"]
    assert boundaries[1]["zeros (sample)"] == f"{100 * zeros:.2f}%"
    assert "FlopCounterMode" in markdown and "3 x 32 x 32 (the input shape of cache" in markdown
    for name in report["plots"].values():
        assert f"]({name})" in markdown


@pytest.mark.slow
def test_several_runs_share_each_plot(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_cfg: Callable[..., PipelineConfig]
) -> None:
    other = tmp_path / "other-run"
    shutil.copytree(tiny_run / "students/resnet8/sections", other / "sections")
    drawn: dict[str, list[str]] = {}
    real = litcache.report.plots._draw_curves

    def spy(path: Path, title: str, panels: list[Any], ylabel: str, log_y: bool) -> bool:
        drawn[path.name] = [line[0] for _, lines in panels for line in lines]
        return real(path, title, panels, ylabel, log_y)

    monkeypatch.setattr(litcache.report.plots, "_draw_curves", spy)
    result = CliRunner().invoke(main, ["report", str(tiny_run), str(other), "-o", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, result.output
    assert "tiny-run: students/resnet8/sections" in drawn["ir_loss.png"]
    assert "other-run: sections" in drawn["ir_loss.png"]
    assert {label.split(":")[0] for label in drawn["lr.png"]} == {"tiny-run", "other-run"}
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert {row["run"] for row in md_table(markdown, "run | log")} == {"tiny-run", "other-run"}


@pytest.mark.slow
def test_report_of_the_separate_commands_with_evaluation(
    cache_path: Path, data_dir: Path, make_cfg: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    """A folder as the README's commands leave it, teacher checkpoint deleted, sections trained one per process."""
    runs = tmp_path / "runs"
    shutil.copytree(cache_path, runs / "cache.zarr")
    cfg = make_cfg(*SMALL, "log.tensorboard=false")
    for k in (1, 2, 3):
        train_sections(cfg, str(runs / "cache.zarr"), runs / "sections", section=k, epochs=2, show_progress=False)
    train_end_to_end(cfg, str(runs / "cache.zarr"), runs / "student.pt", sections_dir=runs / "sections")
    result = CliRunner().invoke(
        main, ["report", str(runs), "-d", str(data_dir), "--test-limit", "8", "-o", str(tmp_path / "r"), "-q"]
    )
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "r" / "report.md").read_text()
    models = {row["model"].strip("`"): row for row in md_table(markdown, "model")}
    assert list(models) == ["teacher (from the cache)", "student.pt"]
    resnet8 = build_model("resnet8")
    assert models["teacher (from the cache)"]["parameters"] == f"{sum(p.numel() for p in resnet8.parameters()):,}"
    assert models["teacher (from the cache)"]["accuracy"] == "–"  # no checkpoint to evaluate
    assert "evaluated by litcache report on" in markdown and "8 test samples" in markdown
    logs = [row["log"] for row in md_table(markdown, "log")]
    assert logs == ["`sections [s1]`", "`sections [s2]`", "`sections [s3]`", "`student.pt`"]


def test_report_of_a_cache_reads_a_bounded_sample(
    cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[int, int]] = []
    real = Cache.read

    def spy(self: Cache, names: Any, start: int, stop: int, **kwargs: Any) -> dict[str, np.ndarray]:
        reads.append((start, stop))
        return real(self, names, start, stop, **kwargs)

    monkeypatch.setattr(Cache, "read", spy)
    result = CliRunner().invoke(main, ["report", str(cache_path), "--sample-units", "3", "-o", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    cache = open_cache(str(cache_path))
    units = sampled_units(cache, 3)
    assert len(units) == 3 and units[0] == 0 and units[-1] == cache.num_units - 1
    assert reads == [cache.unit_rows(u) for u in units]  # one read per sampled unit, nothing else
    assert (tmp_path / "cache-cache.png").read_bytes().startswith(PNG)
    (row,) = md_table((tmp_path / "report.md").read_text(), "cache")
    assert row["rows"] == "128" and row["complete"] == "yes"


def test_boundary_statistics_match_numpy_on_the_sampled_rows(cache_path: Path) -> None:
    cache = open_cache(str(cache_path))
    stats = boundary_statistics(cache, units=2, show_progress=False)
    rows = np.concatenate([np.arange(*cache.unit_rows(u)) for u in stats["units_sampled"]])
    assert stats["rows_sampled"] == len(rows) == 2 * cache.rows_per_unit
    for name, st in stats["boundaries"].items():
        x = cache.array(name)[:][rows].astype(np.float64)  # (rows, C, H, W)
        assert st["zero_fraction"] == pytest.approx(float((x == 0).mean()), abs=0)
        np.testing.assert_allclose(st["channel_rms"], np.sqrt((x**2).mean(axis=(0, 2, 3))), rtol=1e-6)
        np.testing.assert_allclose(st["channel_abs_max"], np.abs(x).max(axis=(0, 2, 3)), rtol=0)
        assert st["mean"] == pytest.approx(x.mean(), rel=1e-6)
        assert sum(st["histogram_counts"]) == x.size == st["elements"]
        assert st["whole_cache"]["abs_max"] >= st["abs_max"]


def test_macs_of_a_linear_and_a_conv() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    assert count_macs(net, (3, 4, 4)) == 8 * 4 * 4 * 3 * 9 + 128 * 10
    resnet20 = build_model("resnet20")
    assert count_macs(resnet20, (3, 32, 32)) == hook_macs(resnet20, (3, 32, 32))
    assert 40e6 < count_macs(resnet20, (3, 32, 32)) < 42e6  # the literature's 41 M for CIFAR ResNet-20


def test_report_without_matplotlib_names_the_extra(
    cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'litcache\[report\]'"):
        build_report([str(cache_path)], tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r").exists()  # refused before any work
    result = CliRunner().invoke(main, ["report", str(cache_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "litcache[report]" in result.output and "Traceback" not in result.output


def test_report_refuses_a_path_that_is_not_there_or_holds_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "holds nothing to report" in result.output


def test_a_cache_that_does_not_open_is_left_out_and_said_so(cache_copy: Path, tiny_run: Path, tmp_path: Path) -> None:
    group = zarr.open_group(str(cache_copy), mode="r+")
    group.attrs["litcache"] = {**group.attrs["litcache"], "format_version": 1}  # type: ignore[dict-item]
    report = build_report([str(tiny_run / "teacher.pt"), str(cache_copy)], tmp_path / "r", show_progress=False)
    assert not report["caches"] and "cache format version 1" in report["left_out"][0]
    assert "## Left out" in (tmp_path / "r" / "report.md").read_text()
