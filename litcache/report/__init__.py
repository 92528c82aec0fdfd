"""``litcache report``: plots and a markdown summary of runs and caches.

:func:`build_report` finds what each path holds (:mod:`~litcache.report.runs`), measures the models
(:mod:`~litcache.report.models`, :mod:`~litcache.report.sizes`), samples the caches' boundaries
(:mod:`~litcache.report.cache_stats`), draws PNGs (:mod:`~litcache.report.plots`, needs the ``report`` extra:
matplotlib) and writes ``report.md`` (:mod:`~litcache.report.markdown`) and ``report.json`` (every number of it).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from litcache import __version__
from litcache.cache.reader import Cache, open_cache
from litcache.cache.summary import summarize
from litcache.errors import CacheError, ReportError
from litcache.outputs import claim_folder, hint, write_text, writing
from litcache.report import plots
from litcache.report.cache_stats import boundary_statistics
from litcache.report.markdown import render
from litcache.report.models import Evaluate, ModelRow, add_ratios, model_rows
from litcache.report.runs import Run, TrainingLog, find_runs
from litcache.report.sizes import MAC_METHOD, count_macs, measure

log = logging.getLogger(__name__)
DEFAULT_INPUT_SHAPE = (3, 32, 32)
REPORT_OUTPUTS = ("report.md", "report.json", "*.png")  # what a report writes into its folder


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "cache"


def _log_summary(run: Run, lg: TrainingLog) -> dict[str, Any]:
    last = lg.records[-1] if lg.records else {}
    rates = [r["samples_per_s"] for r in lg.records if "samples_per_s" in r]
    return {
        "run": run.label,
        "label": lg.label,
        "kind": lg.kind,
        "file": str(lg.path),
        "epochs": len(lg.records),
        "seconds": lg.seconds(),
        "samples_per_s": sum(rates) / len(rates) if rates else None,
        "last": {k: v for k, v in last.items() if k == "loss" or k == "kd" or k.startswith("ir/")},
    }


def _cache_summary(label: str, cache: Cache, runs: Sequence[Run]) -> dict[str, Any]:
    s = summarize(cache)
    row = {
        "label": label,
        "url": cache.url,
        "rows": s["rows"],
        "samples": s["samples"],
        "views": s["views"],
        "complete": s["complete"],
        "stored_bytes": s["stored_bytes"],
        "boundary_bytes_per_element": s["boundary_bytes_per_element"],
        "store": s["store"],
        "teacher": s["teacher"]["model"],
        "source": "the cache's manifest and stored sizes (as `litcache inspect` reports them)",
        "extract_seconds": None,
        "extract_seconds_source": "not recorded: `litcache extract` prints it; `litcache run` keeps it in results.json",
    }
    for run in runs:
        for path, results in run.results:
            recorded = results.get("cache", {})
            tail = Path(cache.url).parts[-2:]
            if recorded.get("extract_seconds") is not None and Path(str(recorded.get("url", ""))).parts[-2:] == tail:
                row["extract_seconds"] = float(recorded["extract_seconds"])
                row["extract_seconds_source"] = str(path)
    return row


def _open_caches(runs: Sequence[Run], left_out: list[str]) -> dict[str, list[tuple[str, Cache]]]:
    """Per run label: its caches, opened (a cache that does not open is added to ``left_out`` and skipped)."""
    out: dict[str, list[tuple[str, Cache]]] = {}
    for run in runs:
        for url in run.caches:
            try:
                cache = open_cache(url)
            except CacheError as exc:
                left_out.append(f"{url}: {exc}")
                continue
            label = run.label if Path(url) == run.root or url == str(run.root) else f"{run.label}/{run.relative(url)}"
            out.setdefault(run.label, []).append((label, cache))
    return out


def build_report(
    targets: Sequence[str],
    out: str | Path,
    *,
    evaluate: Evaluate | None = None,
    trusted: Collection[str] = (),
    sample_units: int = 8,
    input_shape: Sequence[int] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and PNG plots into ``out`` for the runs and caches at ``targets``.

    ``evaluate(checkpoint)`` scores models that no ``results.json`` scored (``litcache report --data``);
    ``trusted``: model factories outside litcache, torchvision and timm that checkpoints may name (the user's);
    ``sample_units``: units of each cache read for its boundary statistics; ``input_shape`` (C, H, W) for MACs,
    by default the caches' input shape. ``out`` follows the output policy (:mod:`litcache.outputs`): a report
    there is replaced only with ``overwrite``, and a folder of anything else is refused.
    """
    if not targets:
        raise ReportError("give at least one run folder, cache, metrics file or checkpoint to report on")
    plots.require_matplotlib()
    out = Path(out)
    claim = claim_folder(out, "report", REPORT_OUTPUTS, overwrite=overwrite, resumable=False)
    runs = find_runs(list(targets))
    left_out: list[str] = []
    caches = _open_caches(runs, left_out)
    every_cache = [c for found in caches.values() for _, c in found]
    if not every_cache and not any(r.logs or r.checkpoints or r.results for r in runs):  # all of it left out
        raise ReportError(f"nothing to report: {'; '.join(left_out)}")
    for reason in left_out:
        log.warning("left out of the report: %s", reason)
    if input_shape is not None:
        shape, shape_source = tuple(int(d) for d in input_shape), "given with --input-shape"
    elif every_cache:
        shape = tuple(every_cache[0].manifest["data"]["input_shape"])
        shape_source = f"the input shape of cache {every_cache[0].url}"
    else:
        shape, shape_source = DEFAULT_INPUT_SHAPE, "assumed (CIFAR); no cache in the report: pass --input-shape"
    rows: list[ModelRow] = []
    for run in runs:
        own = [c for _, c in caches.get(run.label, [])]
        rows += model_rows(run, own, shape, trusted=trusted, evaluate=evaluate, show_progress=show_progress)
    add_ratios(rows)
    claim.take()
    report: dict[str, Any] = {
        "litcache_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [
            {"label": r.label, "path": str(r.root), "results": [str(p) for p, _ in r.results], "caches": r.caches}
            for r in runs
        ],
        "input_shape": list(shape),
        "input_shape_source": shape_source,
        "mac_method": MAC_METHOD,
        "models": [r.to_dict() for r in rows],
        "stages": [_log_summary(run, lg) for run in runs for lg in run.logs],
        "caches": [],
        "plots": {},
        "left_out": left_out,
    }
    with writing(out, then=f"start again with {hint('report', '--overwrite')}"):  # a full disk: one line
        for label, cache in (pair for found in caches.values() for pair in found):
            summary = _cache_summary(label, cache, runs)
            summary["boundaries"] = boundary_statistics(cache, sample_units, show_progress=show_progress)
            name = f"cache-{_slug(label)}.png"
            plots.plot_boundaries(summary["boundaries"], out / name)
            summary["plot"] = name
            report["caches"].append(summary)
        for name, draw in (
            ("ir_loss.png", lambda p: plots.plot_ir_loss(runs, p)),
            ("loss.png", lambda p: plots.plot_end_to_end_loss(runs, p)),
            ("lr.png", lambda p: plots.plot_lr(runs, p)),
            ("scores.png", lambda p: plots.plot_scores(rows, p, len(runs) > 1)),
        ):
            if draw(out / name):
                report["plots"][name.removesuffix(".png")] = name
        write_text(out / "report.json", json.dumps(report, indent=2))
        write_text(out / "report.md", render(report))
    log.info("report of %d runs -> %s", len(runs), out)
    return report


__all__ = ["ModelRow", "build_report", "count_macs", "measure"]
