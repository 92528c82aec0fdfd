"""The report's PNG plots, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state).

Every curve plot puts all runs on one set of axes: a colour per training log, a line style per run.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litcache.errors import MissingExtraError
from litcache.outputs import write_bytes
from litcache.report.models import SCORES, ModelRow
from litcache.report.runs import Run, TrainingLog

STYLES = ("-", "--", ":", "-.")
Line = tuple[str, list[int], list[float], str]  # label, x, y, line style


def _save(fig: Any, path: Path) -> None:
    """The figure as a PNG at ``path``, written whole or not at all (:mod:`litcache.outputs`)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    write_bytes(path, buf.getbuffer())


def require_matplotlib() -> None:
    """Fail early, before any work, when the ``report`` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            "litcache report draws its plots with matplotlib, which is not installed: "
            "pip install 'litcache[report]' (or pip install matplotlib)"
        ) from exc


def _figure(rows: int, cols: int, width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width * cols, height * rows), layout="constrained")


def _section_number(key: str) -> int:
    found = re.search(r"(\d+)$", key)
    return int(found[1]) if found else 0


def _draw_curves(path: Path, title: str, panels: list[tuple[str, list[Line]]], ylabel: str, log_y: bool) -> bool:
    from matplotlib.ticker import MaxNLocator

    panels = [(name, lines) for name, lines in panels if lines]
    if not panels:
        return False
    fig = _figure(1, len(panels), 5.0, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, lines) in zip(axes, panels, strict=True):
        for label, xs, ys, style in lines:
            ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch of the run")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if log_y and all(y > 0 for _, _, ys, _ in lines for y in ys):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    fig.suptitle(title)
    _save(fig, path)
    return True


def _logs(runs: Sequence[Run]) -> list[tuple[Run, TrainingLog, str]]:
    return [(run, lg, STYLES[i % len(STYLES)]) for i, run in enumerate(runs) for lg in run.logs]


def _label(run: Run, lg: TrainingLog, runs: Sequence[Run]) -> str:
    return f"{run.label}: {lg.label}" if len(runs) > 1 else lg.label


def plot_ir_loss(runs: Sequence[Run], path: Path) -> bool:
    """One panel per section: its IR loss over the run's epochs, a line per training log."""
    logs = _logs(runs)
    keys = sorted({k for _, lg, _ in logs for k in lg.fields() if k.startswith("ir/")}, key=_section_number)
    panels = [
        (
            f"IR loss, section {_section_number(k)}",
            [(_label(r, lg, runs), *lg.epochs(k), st) for r, lg, st in logs if k in lg.fields()],
        )
        for k in keys
    ]
    return _draw_curves(path, "IR loss (MSE to the teacher's boundary)", panels, "IR loss", log_y=True)


def plot_end_to_end_loss(runs: Sequence[Run], path: Path) -> bool:
    """The KD term where there is one, else the loss of a stage without IR parts (labels: teacher, scratch)."""
    lines: list[Line] = []
    for run, lg, style in _logs(runs):
        keys = lg.fields()
        key = "kd" if "kd" in keys else None if any(k.startswith("ir/") for k in keys) else "loss"
        if key is not None:
            lines.append((f"{_label(run, lg, runs)} ({key})", *lg.epochs(key), style))
    return _draw_curves(path, "KD and label loss", [("", lines)], "loss", log_y=True)


def plot_lr(runs: Sequence[Run], path: Path) -> bool:
    """The learning rate at the end of each epoch."""
    lines = [(_label(r, lg, runs), *lg.epochs("lr"), st) for r, lg, st in _logs(runs) if "lr" in lg.fields()]
    return _draw_curves(path, "Learning rate", [("", lines)], "learning rate", log_y=False)


def plot_scores(rows: Sequence[ModelRow], path: Path, several_runs: bool) -> bool:
    """Bars of every evaluated model's test scores (accuracy, top-5, PSNR, SSIM: one panel each)."""
    present = [k for k in SCORES if any(k in r.scores for r in rows)]
    if not present:
        return False
    fig = _figure(1, len(present), max(4.0, 0.9 * len(rows) + 1.5), 3.8)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, key in zip(axes, present, strict=True):
        scored = [r for r in rows if key in r.scores]
        labels = [f"{r.run}: {r.name}" if several_runs else r.name for r in scored]
        values = [r.scores[key] for r in scored]
        bars = ax.bar(
            range(len(scored)), values, color=["tab:gray" if r.role == "teacher" else "tab:blue" for r in scored]
        )
        ax.bar_label(bars, fmt="%.4g", fontsize="small")
        ax.set_xticks(range(len(scored)), labels, rotation=30, ha="right", fontsize="small")
        ax.set_title(f"test {key}")
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return True


def plot_boundaries(stats: dict[str, Any], path: Path) -> None:
    """Per stored boundary: the histogram of sampled values (log counts) and the scale of each channel."""
    bounds = list(stats["boundaries"].items())
    fig = _figure(len(bounds), 2, 5.0, 2.8)
    axes = fig.subplots(len(bounds), 2, squeeze=False)
    for (hist_ax, chan_ax), (name, b) in zip(axes, bounds, strict=True):
        edges, counts = b["histogram_edges"], b["histogram_counts"]
        hist_ax.stairs(counts, edges, fill=True)
        hist_ax.set_yscale("log")
        hist_ax.set_title(
            f"{name} {tuple(b['shape'])}: values, {100 * b['zero_fraction']:.1f}% zeros", fontsize="small"
        )
        hist_ax.set_xlabel("value")
        channels = range(len(b["channel_rms"]))
        chan_ax.plot(channels, b["channel_abs_max"], label="max |x|")
        chan_ax.plot(channels, b["channel_rms"], label="RMS")
        chan_ax.plot(channels, b["channel_std"], label="std", alpha=0.7)
        if all(v > 0 for v in b["channel_abs_max"]):
            chan_ax.set_yscale("log")
        chan_ax.set_title(f"{name}: scale per channel", fontsize="small")
        chan_ax.set_xlabel("channel")
        chan_ax.legend(fontsize="x-small")
    sampled = f"{stats['rows_sampled']} rows from {len(stats['units_sampled'])} of {stats['units_total']} units"
    fig.suptitle(f"{stats['url']}: {sampled}")
    _save(fig, path)
