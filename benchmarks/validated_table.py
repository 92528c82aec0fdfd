"""Rates chosen on data the table never scores: each variant's settings swept on a validation split, then the
test set scored once, for the chosen setting (issue 23).

A fixed, seeded draw of ``--holdout`` training images (``data.holdout``) is left out of the cache, and so out of
every student's training. Every sweep point trains seed 0 and is scored on those images; the test set is
scored only for each variant's chosen setting, on every seed of the table (seed 0's student is the sweep's,
scored again, not trained again). Each variant gets every rate it has swept over the same grid, and its KD
weights too where the KD loss reaches it:

- ``kd`` (KD only): its rate over ``--grid``, under each of ``--weightings``;
- ``scratch`` (labels only): its rate over ``--grid`` (no KD weight reaches it);
- ``cached-lit`` (IR sections, then the KD pass): the sections rate over ``--grid`` (the KD pass at the middle of
  ``--kd-pass-grid``), then the KD pass's rate over ``--kd-pass-grid``, then the other weightings at those rates;
- ``cached-lit-combined`` (beta = 0.75 every epoch): its sections rate over ``--grid``, then the other weightings;
- ``online-lit``: cached LIT's choice (the same computation with the teacher in memory: BENCHMARKS.md shows
  them equal), on the table only.

A sweep whose best rate sits at an end of its grid is widened (twice or half the end rate) up to ``--widen``
times. Every run is ``benchmarks/quality.py`` with its own results file under ``--results``
(``<variant>[-<weighting>]-lr<rate>[-kdlr<rate>]-<val|test>.json``, with its ``.meta.json``); a run whose file
exists for the same teacher is read, not run again, so the driver resumes across sessions, and quality.py's
``runs.json`` in the work folder resumes a run cut short. ``table.json`` (and ``table.md``) summarise the sweeps,
the choices and the table.

    python benchmarks/validated_table.py --plan     # every run it would do, and CPU time from the kept results
    python benchmarks/validated_table.py            # the ResNet-56 -> ResNet-20 table (hours; resumable)
    python benchmarks/validated_table.py --smoke    # the whole protocol at a smoke size (minutes), in WORK
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WEIGHTINGS = {"strong": (0.05, 0.95), "reference": (0.95, 0.05)}  # (label_weight, soft_weight)
GRID = (0.05, 0.1, 0.2, 0.4, 0.8)  # every variant's (first-stage) rate
KD_PASS_GRID = (0.01, 0.02, 0.04)  # the fine-tuning KD pass that ends IR-then-KD LIT
VARIANTS = ("kd", "cached-lit", "cached-lit-combined", "online-lit", "scratch")
FEW_SEEDS = ("scratch", "online-lit")  # the table's variants that run --few-seeds
IR_THEN_KD = ("cached-lit", "online-lit")
SMOKE = {  # the whole protocol in minutes: a few hundred images, one IR and one KD epoch, a two-point grid
    "limit": 300,
    "test_limit": 300,
    "ir_epochs": 1,
    "kd_epochs": 1,
    "grid": [0.1, 0.4],
    "kd_pass_grid": [0.02],
    "widen": 0,
    "seeds": [0, 1],
    "few_seeds": [0],
}


@dataclass(frozen=True)
class Point:
    """One setting of one variant: its rate (the baselines' rate, or LIT's sections rate), the KD pass's rate
    (IR-then-KD LIT only) and its KD weights (None for scratch, which the KD loss never reaches)."""

    variant: str
    lr: float
    weighting: str | None = None
    kd_lr: float | None = None

    @property
    def name(self) -> str:
        weights = f"-{self.weighting}" if self.weighting else ""
        kd_pass = f"-kdlr{self.kd_lr:g}" if self.kd_lr is not None else ""
        return f"{self.variant}{weights}-lr{self.lr:g}{kd_pass}"

    def sets(self) -> list[str]:
        """The quality.py --set items of this setting (always the same list for the same point: quality.py keys
        its runs by them, so the table finds seed 0's student of the sweep)."""
        out = []
        if self.weighting:
            label, soft = WEIGHTINGS[self.weighting]
            out += [
                f"{s}.{w}={v:g}" for s in ("train", "kd") for w, v in (("label_weight", label), ("soft_weight", soft))
            ]
        if self.variant in ("kd", "scratch"):
            out.append(f"train.baseline_lr={self.lr:g}")
        else:
            out.append(f"train.lr={self.lr:g}")  # the sections stage (every epoch, for the combined objective)
        if self.kd_lr is not None:
            out.append(f"kd.lr={self.kd_lr:g}")
        return out

    def but(self, **changes: Any) -> Point:
        return Point(**{**asdict(self), **changes})


def widen(scores: dict[float, float], measure: Callable[[float], float], times: int) -> float:
    """The best rate of ``scores`` (rate -> score), after measuring up to ``times`` more: twice the best while it
    is the largest rate tried, half of it while it is the smallest."""
    for _ in range(times):
        top = max(scores, key=scores.__getitem__)
        if top == max(scores) and len(scores) > 1:
            rate = top * 2
        elif top == min(scores) and len(scores) > 1:
            rate = top / 2
        else:
            break
        scores[rate] = measure(rate)
    return max(scores, key=scores.__getitem__)


class Runner:
    """Runs (or, planning, lists) quality.py for a point on a split; reads a run whose results file exists."""

    def __init__(self, args: argparse.Namespace, plan: bool) -> None:
        self.args = args
        self.plan = plan
        self.folder = Path(args.results)
        self.planned: list[tuple[Point, str, list[int]]] = []
        self.sweeps: list[dict[str, Any]] = []  # every sweep point scored, for the summary
        self.swept: list[str] = []  # the variant of each sweep, for the plan's widening estimate

    def path(self, point: Point, split: str) -> Path:
        return self.folder / f"{point.name}-{split}.json"

    def kept(self, point: Point, split: str) -> dict[str, Any] | None:
        out = self.path(point, split)
        meta = out.with_suffix(".meta.json")
        if not (out.is_file() and meta.is_file()):
            return None
        if json.loads(meta.read_text())["teacher"]["checkpoint"] != str(Path(self.args.teacher).resolve()):
            return None  # another teacher's: run again
        row: dict[str, Any] = json.loads(out.read_text())[0]
        return row

    def command(self, point: Point, split: str, seeds: list[int]) -> list[str]:
        a = self.args
        cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--pipeline", a.pipeline]
        cmd += ["--teacher", str(Path(a.teacher).resolve()), "--data", a.data, "--work", a.work]
        cmd += ["--output", str(self.path(point, split)), "--eval-split", split]
        cmd += ["--ir-epochs", str(a.ir_epochs), "--kd-epochs", str(a.kd_epochs)]
        cmd += ["--seeds", *map(str, seeds), "--variants", point.variant]
        for flag, value in (("--limit", a.limit), ("--test-limit", a.test_limit), ("--cache", a.cache)):
            cmd += [flag, str(value)] if value is not None else []
        sets = [*a.overrides, f"data.holdout={a.holdout}", f"data.holdout_seed={a.holdout_seed}", *point.sets()]
        return cmd + [x for item in sets for x in ("--set", item)]

    def score(self, point: Point, split: str = "val", seeds: list[int] | None = None) -> dict[str, Any]:
        """The results row of ``point`` scored on ``split`` (seed 0 unless ``seeds``)."""
        seeds = seeds or [0]
        row = self.kept(point, split)
        if row is None and self.plan:
            if (point, split, seeds) not in self.planned:
                self.planned.append((point, split, seeds))
            row = {"accuracy": self.placeholder(point), "accuracy_per_seed": [0.0] * len(seeds), "planned": True}
        elif row is None:
            cmd = self.command(point, split, seeds)
            print("$", shlex.join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            row = self.kept(point, split)
            assert row is not None, f"quality.py wrote no {self.path(point, split)}"
        if split == "val" and all(p["file"] != self.rel(point, split) for p in self.sweeps):
            self.sweeps.append({**asdict(point), "val_accuracy": row["accuracy"], "file": self.rel(point, split)})
        return row

    def rel(self, point: Point, split: str) -> str:
        path = self.path(point, split).resolve()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    def placeholder(self, point: Point) -> float:
        """A score for planning: best in the middle of each grid (so no sweep widens) and for the first
        weighting, which a real run replaces."""
        a = self.args
        score = -abs(math.log2(point.lr / sorted(a.grid)[len(a.grid) // 2]))
        if point.kd_lr is not None:
            score -= abs(math.log2(point.kd_lr / sorted(a.kd_pass_grid)[len(a.kd_pass_grid) // 2]))
        return score - (0 if point.weighting in (None, a.weightings[0]) else 0.5)


def sweep(run: Runner, point: Point, field: str, grid: list[float]) -> tuple[float, dict[float, float]]:
    """``point`` with ``field`` over ``grid`` (widened), scored on the validation split: the best value."""

    def measure(value: float) -> float:
        return float(run.score(point.but(**{field: value}))["accuracy"])

    run.swept.append(point.variant)
    scores = {value: measure(value) for value in sorted(grid)}
    return widen(scores, measure, run.args.widen), scores


def best_weighting(run: Runner, point: Point, score: float) -> tuple[Point, float]:
    """``point`` under the weighting that scores best on the validation split (its own, then the others)."""
    scores = {point.weighting: score}
    for w in run.args.weightings:
        if w not in scores:
            scores[w] = float(run.score(point.but(weighting=w))["accuracy"])
    top = max(scores, key=scores.__getitem__)
    return point.but(weighting=top), scores[top]


def select(run: Runner) -> dict[str, tuple[Point, float]]:
    """Each variant's setting, chosen on the validation split: variant -> (point, its validation score)."""
    a = run.args
    chosen: dict[str, tuple[Point, float]] = {}
    variants = set(a.variants)
    first = a.weightings[0]
    if "kd" in variants:
        options = []
        for w in a.weightings:
            lr, scores = sweep(run, Point("kd", a.grid[0], w), "lr", a.grid)
            options.append((scores[lr], Point("kd", lr, w)))
        score, point = max(options, key=lambda o: o[0])
        chosen["kd"] = (point, score)
    if "scratch" in variants:
        lr, scores = sweep(run, Point("scratch", a.grid[0]), "lr", a.grid)
        chosen["scratch"] = (Point("scratch", lr), scores[lr])
    if variants & {"cached-lit", "online-lit"}:
        start = sorted(a.kd_pass_grid)[len(a.kd_pass_grid) // 2]
        lr, _ = sweep(run, Point("cached-lit", a.grid[0], first, start), "lr", a.grid)
        kd_lr, scores = sweep(run, Point("cached-lit", lr, first, start), "kd_lr", a.kd_pass_grid)
        point, score = best_weighting(run, Point("cached-lit", lr, first, kd_lr), scores[kd_lr])
        chosen["cached-lit"] = (point, score)
        chosen["online-lit"] = (point.but(variant="online-lit"), score)
    if "cached-lit-combined" in variants:
        lr, scores = sweep(run, Point("cached-lit-combined", a.grid[0], first), "lr", a.grid)
        chosen["cached-lit-combined"] = best_weighting(run, Point("cached-lit-combined", lr, first), scores[lr])
    return chosen


def table(run: Runner, chosen: dict[str, tuple[Point, float]]) -> list[dict[str, Any]]:
    """Every variant at its chosen setting, every seed of the table, scored on the test set (once)."""
    rows = []
    for variant in [v for v in VARIANTS if v in run.args.variants]:
        point, val = chosen[variant]
        seeds = run.args.few_seeds if variant in FEW_SEEDS else run.args.seeds
        row = run.score(point, "test", seeds)
        rows.append(
            {
                "variant": variant,
                "setting": asdict(point),
                "val_accuracy_seed0": None if variant == "online-lit" else val,  # online LIT takes cached LIT's setting
                "accuracy": row["accuracy"],
                "accuracy_per_seed": row["accuracy_per_seed"],
                "seeds": seeds,
                "spread": max(row["accuracy_per_seed"]) - min(row["accuracy_per_seed"]),
                "accuracy_after_ir": row.get("accuracy_after_ir"),
                "seconds": row.get("seconds"),
                "file": run.rel(point, "test"),
            }
        )
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    """Whether LIT leads KD only on the test set, said plainly: by the means and by the seeds' ranges."""
    by = {r["variant"]: r for r in rows}
    lit = [by[v] for v in ("cached-lit", "cached-lit-combined") if v in by]
    if "kd" not in by or not lit:
        return "the table lacks KD only or a LIT variant: no verdict"
    best, kd = max(lit, key=lambda r: r["accuracy"]), by["kd"]
    gap = 100 * (best["accuracy"] - kd["accuracy"])
    apart = min(best["accuracy_per_seed"]) > max(kd["accuracy_per_seed"])
    if gap > 0:
        how = "every LIT seed above every KD seed" if apart else "but the seeds' ranges overlap"
        return f"LIT ({best['variant']}) leads KD only by {gap:+.2f} points on the test set ({how})"
    return f"LIT does not lead: its best form ({best['variant']}) is {gap:+.2f} points against KD only on the test set"


def markdown(summary: dict[str, Any], where: str) -> str:
    """The table for BENCHMARKS.md, with the figures marker its check reads (tests/test_benchmark_figures.py)."""
    lines = [
        f"<!-- figures: {where} -->",
        "| variant | setting (chosen on the validation split) | validation, seed 0 | test: mean | seeds | s / run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in summary["table"]:
        s = r["setting"]
        setting = f"lr {s['lr']:g}" + (f", KD pass {s['kd_lr']:g}" if s["kd_lr"] is not None else "")
        setting += f", {s['weighting']} weights" if s["weighting"] else ""
        seeds = " / ".join(f"{a:.4f}" for a in r["accuracy_per_seed"])
        secs = f"{r['seconds']:,.0f}" if r["seconds"] else ""
        val = "(cached LIT's)" if r["val_accuracy_seed0"] is None else f"{r['val_accuracy_seed0']:.4f}"
        lines.append(f"| {r['variant']} | {setting} | {val} | {r['accuracy']:.4f} | {seeds} | {secs} |")
    return "\n".join(lines) + "\n\n" + summary["verdict"] + "\n"


def kept_rates(pipeline: str) -> tuple[dict[str, float], float | None]:
    """Seconds per (training sample x epoch) of each variant, and extraction seconds per cached row, medians over
    the results files kept for ``pipeline`` (rate sweeps and tables, each run on one core beside other runs)."""
    per_variant: dict[str, list[float]] = {}
    per_row: list[float] = []
    files = [*(RESULTS / "weights").glob(f"{pipeline}-*.json"), *(RESULTS / "validated" / pipeline).glob("*.json")]
    for path in files:
        if path.name.endswith(".meta.json"):
            cache = json.loads(path.read_text()).get("cache") or {}
            if cache.get("extract_seconds") and cache.get("rows"):
                per_row.append(cache["extract_seconds"] / cache["rows"])
            continue
        rows = json.loads(path.read_text())
        for row in rows if isinstance(rows, list) else []:
            s = row.get("settings", {})
            if row.get("seconds") and s.get("train_samples") and s.get("epochs_total"):
                per_variant.setdefault(row["name"], []).append(row["seconds"] / s["train_samples"] / s["epochs_total"])
    rates = {v: statistics.median(xs) for v, xs in per_variant.items()}
    return rates, (statistics.median(per_row) if per_row else None)


def estimate(run: Runner) -> None:
    """Print the planned runs and their CPU time, from the seconds the kept results files record."""
    a = run.args
    epochs = a.ir_epochs + a.kd_epochs
    samples = a.limit or (50000 - a.holdout)  # CIFAR-10's training split
    rates, per_row = kept_rates(a.pipeline)
    cost = {v: r * samples * epochs for v, r in rates.items()}
    total = 0.0
    print(f"planned runs of {a.pipeline} ({len(run.planned)}, each a quality.py process, {samples} training images):")
    for point, split, seeds in run.planned:
        # the table's seed 0 of a swept variant is the sweep's student, scored again: no training
        trained = [s for s in seeds if not (split == "test" and s == 0 and point.variant != "online-lit")]
        seconds = cost.get(point.variant, math.nan) * len(trained)
        total += 0 if math.isnan(seconds) else seconds
        print(f"  {point.name:<44} {split:<4} seeds {' '.join(map(str, seeds)):<6} ~{seconds:>7,.0f} s")
    cache = Path(a.cache) if a.cache else Path(a.work) / "full" / "cache.zarr"
    if not cache.exists() and per_row is not None:
        total += per_row * samples * epochs
        print(f"  extraction: {samples} images x {epochs} views ~{per_row * samples * epochs:,.0f} s")
    worst = sum(cost.get(v, 0.0) for v in run.swept) * a.widen
    print(
        f"total ~{total:,.0f} CPU-seconds ({total / 3600:.1f} core-hours, one core a run); the {len(run.swept)} "
        f"sweeps widen by up to {a.widen} run(s) each where the best rate sits at an end: up to ~{worst:,.0f} s more"
    )
    print("seconds per run, from the kept results: " + ", ".join(f"{v} {c:,.0f}" for v, c in sorted(cost.items())))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default="cifar10-resnet56-resnet20")
    ap.add_argument("--teacher", default=str(RESULTS / "teachers" / "resnet56-cifar10.pt"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument(
        "--work", default=None, help="quality.py's work folder (default benchmarks/work/validated/PIPELINE)"
    )
    ap.add_argument("--results", default=None, help="results folder (default benchmarks/results/validated/PIPELINE)")
    ap.add_argument("--cache", default=None, help="an existing complete cache extracted with the same holdout")
    ap.add_argument("--holdout", type=int, default=5000, help="training images held out to score the sweeps on")
    ap.add_argument("--holdout-seed", type=int, default=0)
    ap.add_argument("--ir-epochs", type=int, default=2)
    ap.add_argument("--kd-epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="training images (of those not held out; default all)")
    ap.add_argument("--test-limit", type=int, default=None, help="score on the first N of each split only")
    ap.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="every variant's rate")
    ap.add_argument("--kd-pass-grid", type=float, nargs="+", default=list(KD_PASS_GRID), help="IR-then-KD's KD pass")
    ap.add_argument("--widen", type=int, default=1, help="grid extensions while a sweep's best sits at an end")
    ap.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="the table's seeds (kd, LIT from the cache)"
    )
    ap.add_argument("--few-seeds", type=int, nargs="+", default=[0, 1], help="seeds of scratch and online LIT")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every run, before the point's own (e.g. train.weight_decay=5e-4)",
    )
    ap.add_argument("--plan", action="store_true", help="list every run it would do and its CPU time; run nothing")
    ap.add_argument("--smoke", action="store_true", help=f"a smoke size, in the work folder: {SMOKE}")
    args = ap.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.work = args.work or str(ROOT / "benchmarks" / "work" / "validated-smoke" / args.pipeline)
        args.results = args.results or str(Path(args.work) / "results")
    args.work = args.work or str(ROOT / "benchmarks" / "work" / "validated" / args.pipeline)
    args.results = args.results or str(RESULTS / "validated" / args.pipeline)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    run = Runner(args, plan=args.plan)
    chosen = select(run)
    rows = table(run, chosen)
    if args.plan:
        estimate(run)
        return None
    summary = {
        "pipeline": args.pipeline,
        "teacher": args.teacher,
        "holdout": {"samples": args.holdout, "seed": args.holdout_seed},
        "epochs": {"ir": args.ir_epochs, "kd": args.kd_epochs},
        "limit": args.limit,
        "test_limit": args.test_limit,
        "grids": {"rate": args.grid, "kd_pass": args.kd_pass_grid, "widen": args.widen, "weightings": args.weightings},
        "overrides": args.overrides,
        "command": shlex.join(["python", "benchmarks/validated_table.py", *(argv or sys.argv[1:])]),
        "sweeps": run.sweeps,
        "table": rows,
        "verdict": verdict(rows),
    }
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.json").write_text(json.dumps(summary, indent=2))
    where = str((folder / "table.json").resolve().relative_to(ROOT)) if folder.resolve().is_relative_to(ROOT) else ""
    text = markdown(summary, where or str(folder / "table.json"))
    (folder / "table.md").write_text(text)
    print("\n" + text + f"\nwrote {folder / 'table.json'} and table.md")
    return summary


if __name__ == "__main__":
    main()
