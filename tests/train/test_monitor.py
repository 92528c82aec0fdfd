"""TensorBoard event files beside metrics.jsonl when tensorboard is installed; nothing otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the test extra has it

import litcache.train.monitor
from litcache.config import LogConfig, PipelineConfig
from litcache.errors import ConfigError
from litcache.train.loop import train_one_epoch
from litcache.train.monitor import TensorBoardMonitor, open_monitor
from litcache.train.trainer import train_end_to_end, train_sections

# 64 rows per view / 16 = 4 steps an epoch
SETTINGS = ("train.device=cpu", "stream.batch_size=16", "stream.shuffle_buffer=64", "log.every_steps=3")


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_metrics(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_training_writes_epoch_and_step_scalars(
    make_cfg: Callable[..., PipelineConfig], cache_path: Path, tmp_path: Path
) -> None:
    cfg = make_cfg(*SETTINGS)
    sections = tmp_path / "sections"
    train_sections(cfg, str(cache_path), sections, epochs=2, show_progress=False)
    got = scalars(sections / "tensorboard" / "all")
    records = read_metrics(sections / "metrics.jsonl")
    for key in ("loss", "ir/s1", "ir/s3", "lr", "samples_per_s", "view"):
        assert [s for s, _ in got[f"epoch/{key}"]] == [0, 1], key
        assert [v for _, v in got[f"epoch/{key}"]] == pytest.approx([r[key] for r in records], rel=1e-6), key
    assert "epoch/epoch" not in got and "epoch/run_epoch" not in got
    assert [s for s, _ in got["step/loss"]] == [0, 3, 6]  # 8 steps, every 3rd
    assert {"step/ir/s2", "step/lr"} <= got.keys()
    assert got["step/lr"][0][1] == pytest.approx(cfg.train.lr)  # the first step's rate, before the schedule moves

    student = tmp_path / "student.pt"
    train_end_to_end(cfg, str(cache_path), student, sections_dir=sections, epochs=1, show_progress=False)
    got = scalars(tmp_path / "student.pt.tensorboard")
    assert [s for s, _ in got["epoch/kd"]] == [2]  # the run's epoch: the KD pass follows 2 section epochs
    assert got["epoch/kd"][0][1] == pytest.approx(read_metrics(tmp_path / "student.pt.metrics.jsonl")[0]["kd"])


def test_without_tensorboard_nothing_changes(
    make_cfg: Callable[..., PipelineConfig], cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec finds nothing
    assert not litcache.train.monitor.tensorboard_installed()
    out = tmp_path / "without"
    train_sections(make_cfg(*SETTINGS), str(cache_path), out, epochs=1, show_progress=False)
    assert not (out / "tensorboard").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        ".litcache-output.json",  # the mark of train-sections' own folder (litcache/outputs.py)
        "config.yaml",
        "metrics.jsonl",
        "section-s1.pt",
        "section-s2.pt",
        "section-s3.pt",
        "train-state-all.pt",
    ]
    monkeypatch.undo()
    off = tmp_path / "off"
    train_sections(make_cfg(*SETTINGS, "log.tensorboard=false"), str(cache_path), off, epochs=1, show_progress=False)
    assert not (off / "tensorboard").exists()


def test_a_fresh_run_replaces_old_event_files_and_a_resumed_one_keeps_them(tmp_path: Path) -> None:
    folder = tmp_path / "tb"
    for fresh, expected in ((True, 1), (False, 2), (True, 1)):
        monitor = open_monitor(LogConfig(), folder, fresh=fresh)
        assert monitor is not None
        monitor.on_epoch(0, {"loss": 1.0})
        monitor.close()
        assert len(list(folder.glob("events.out.tfevents.*"))) == expected


def test_the_loop_reads_losses_only_on_logged_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every float(tensor) waits for a GPU: with a monitor, one reading per part on every N-th step only."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(12)]

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        mse = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        return {"loss": 2 * mse, "mse": mse}

    monitor = TensorBoardMonitor(tmp_path, every_steps=5)
    reads = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: reads.append(1) or real_float(t))
    train_one_epoch(step, optimizer, scheduler, batches, show_progress=False, monitor=monitor, first_step=100)
    monkeypatch.undo()
    monitor.close()
    assert len(reads) == 2 + 2 * 3  # the epoch's two means, and two parts on steps 100, 105, 110
    assert [s for s, _ in scalars(tmp_path)["step/mse"]] == [100, 105, 110]


@pytest.mark.slow
def test_litcache_imports_without_the_optional_extras() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = sys.modules['tensorboard'] = None; import litcache, litcache.report; "
        "from litcache.config import LogConfig; from litcache.train.monitor import open_monitor; "
        "assert open_monitor(LogConfig(), 'unused') is None; print('ok')"
    )
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_log_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="log.every_steps"):
        LogConfig(every_steps=-1)
