"""``report.md``: the report's tables, with where every number came from, and its plots."""

from __future__ import annotations

import statistics
from typing import Any

from litcache.report.models import SCORES

PLOT_TITLES = {
    "ir_loss": "IR loss per section",
    "loss": "KD and label loss",
    "lr": "Learning rate",
    "scores": "Test scores",
}


def _int(value: int | None) -> str:
    return f"{value:,}" if value is not None else "–"


def _num(value: float | None, fmt: str = ".4f") -> str:
    return format(value, fmt) if value is not None else "–"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _models(report: dict[str, Any]) -> list[str]:
    models = report["models"]
    if not models:
        return ["No model checkpoints or results.json found."]
    scores = [k for k in SCORES if any(k in m["scores"] for m in models)]
    several = len(report["runs"]) > 1
    head = [*(["run"] if several else []), "model", "role", "architecture", "parameters", "MACs", "compression"]
    head += ["MAC reduction", *scores, "seconds"]
    rows = []
    for m in models:
        rows.append(
            [
                *([m["run"]] if several else []),
                f"`{m['name']}`",
                m["role"],
                f"`{m['architecture']}`",
                _int(m["params"]),
                _int(m["macs"]),
                _num(m["compression"], ".2f") + ("x" if m["compression"] is not None else ""),
                _num(m["mac_reduction"], ".2f") + ("x" if m["mac_reduction"] is not None else ""),
                *(_num(m["scores"].get(k)) for k in scores),
                _num(m["seconds"], ".1f"),
            ]
        )
    shape = " x ".join(str(d) for d in report["input_shape"])
    lines = _table(head, rows)
    lines += [
        "",
        f"MACs for one input of {shape} ({report['input_shape_source']}); {report['mac_method']}. Compression and MAC "
        "reduction: the teacher's parameters (MACs) over the model's. Parameters include the stem and head a LIT "
        "student copies from the teacher and freezes.",
        "",
        "Where each number came from:",
        "",
    ]
    for m in models:
        parts = [f"size: {m['size_source'] or 'not counted'}"]
        unscored = "not evaluated (pass --data to evaluate the checkpoint)" if m["checkpoint"] else "no checkpoint"
        parts.append(f"scores: {m['score_source'] or unscored}")
        if m["seconds"] is not None:
            parts.append(f"seconds: {m['seconds_source']}")
        parts += m["notes"]
        where = f" ({m['run']})" if several else ""
        lines.append(f"- `{m['name']}`{where}: " + "; ".join(parts))
    return lines


def _stages(report: dict[str, Any]) -> list[str]:
    stages = report["stages"]
    if not stages:
        return []
    several = len(report["runs"]) > 1
    rows = [
        [
            *([s["run"]] if several else []),
            f"`{s['label']}`",
            s["kind"],
            str(s["epochs"]),
            _num(s["seconds"], ".1f"),
            _num(s["samples_per_s"], ".0f"),
            " ".join(f"{k} {v:.4g}" for k, v in s["last"].items()),
        ]
        for s in stages
    ]
    head = ["log", "stage", "epochs", "seconds", "rows/s", "last epoch"]
    lines = ["## Training stages", "", *_table(["run", *head] if several else head, rows)]
    lines += [
        "",
        "Seconds: the sum of the `seconds` of the log's epochs (the training loop, without set-up or evaluation); "
        "rows/s: the mean of its epochs' `samples_per_s`. Source: each log's file, listed in report.json.",
        "",
    ]
    return lines


def _boundaries(cache: dict[str, Any]) -> list[str]:
    b = cache["boundaries"]
    rows = []
    for name, st in b["boundaries"].items():
        rms = st["channel_rms"]
        whole = st["whole_cache"]
        rows.append(
            [
                f"`{name}`",
                str(tuple(st["shape"])),
                f"{whole['mean']:.4g} / {whole['std']:.4g} / {whole['abs_max']:.4g}",
                f"{st['mean']:.4g} / {st['std']:.4g}",
                f"{100 * st['zero_fraction']:.2f}%",
                f"{min(rms):.3g} / {statistics.median(rms):.3g} / {max(rms):.3g}",
            ]
        )
    head = ["boundary", "row shape", "mean / std / max abs (whole cache)", "mean / std (sample)", "zeros (sample)"]
    head.append("channel RMS min / median / max (sample)")
    return [
        f"Sampled {b['rows_sampled']:,} rows from {len(b['units_sampled'])} of {b['units_total']} units "
        f"(units {b['units_sampled']}), one unit at a time, each checked against its CRC-32. Whole-cache values: "
        "the progress record's per-unit sums.",
        "",
        *_table(head, rows),
        "",
        f"![boundaries of {cache['label']}]({cache['plot']})",
    ]


def _caches(report: dict[str, Any]) -> list[str]:
    caches = report["caches"]
    if not caches:
        return []
    rows = [
        [
            f"`{c['label']}`",
            f"`{c['teacher']}`",
            f"{c['rows']:,}",
            f"{c['samples']:,} x {c['views']}",
            f"{c['stored_bytes'] / 1e6:.2f}",
            f"{c['boundary_bytes_per_element']:.3f}",
            _store_words(c["store"]),
            "yes" if c["complete"] else "NO",
            _num(c["extract_seconds"], ".1f"),
        ]
        for c in caches
    ]
    head = ["cache", "teacher", "rows", "samples x views", "stored MB", "bytes per boundary element", "store"]
    lines = ["## Caches", "", *_table([*head, "complete", "extraction seconds"], rows), ""]
    for c in caches:
        lines.append(
            f"- `{c['label']}` ({c['url']}): sizes from {c['source']}; extraction seconds: "
            f"{c['extract_seconds_source']}"
        )
    for c in caches:
        lines += ["", f"### Boundaries of `{c['label']}`", "", *_boundaries(c)]
    return [*lines, ""]


def render(report: dict[str, Any]) -> str:
    """The markdown of a report (the dict :func:`litcache.report.build_report` returns)."""
    lines = [
        "# litcache report",
        "",
        f"Written by litcache {report['litcache_version']} at {report['created']} from:",
        "",
        *(f"- `{r['label']}`: {r['path']}" for r in report["runs"]),
        "",
        "## Models",
        "",
        *_models(report),
        "",
        *_stages(report),
        *_caches(report),
    ]
    if report["left_out"]:
        lines += ["## Left out", "", *(f"- {problem}" for problem in report["left_out"]), ""]
    if report["plots"]:
        lines += ["## Plots", ""]
        for key, name in report["plots"].items():
            lines += [f"### {PLOT_TITLES.get(key, key)}", "", f"![{PLOT_TITLES.get(key, key)}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _store_words(store: dict[str, Any]) -> str:
    """How a cache stores its boundaries: ``int4 codes -> float16, blosc-zstd 1`` or ``float16, ..., 7 mantissa
    bits``."""
    codec = f"{store['codec']} {store['level']}"
    if store.get("bits"):  # format 3: quantised codes, decoded to store.dtype
        return f"int{store['bits']} codes -> {store['dtype']}, {codec}"
    return f"{store['dtype']}, {codec}, {store['bitround_keepbits']} mantissa bits"
