"""What quantised boundaries cost in accuracy, where LIT matters: ResNet-56 -> ResNet-20 (three blocks a section).

For each store (float16 with 7 mantissa bits, the default before quantisation, and integer codes of 8, 6 and 4
bits), one 3-view cache of all 50,000 images and, on it, cached LIT at the table's best rates (sections 0.4,
KD pass 0.02) and the combined objective (beta 0.75, at 0.4), each on two seeds: every other setting as the
ResNet-56 -> ResNet-20 table (BENCHMARKS.md: strong weights, weight decay 5e-4, 2 IR + 1 KD epochs).

    python benchmarks/quantized_quality.py --stores float16 8          # one chain of stores
    python benchmarks/quantized_quality.py --stores 6 4 &              # another, on the other core
    python benchmarks/quantized_quality.py --collect                   # the table, from the files
    python benchmarks/quantized_quality.py --pair generator            # the generator's PSNR (signed boundaries)

``--pair generator``: the image-to-image pair of BENCHMARKS.md (``generator6`` -> ``generator2``, 2x
super-resolution, 20,000 images, 3 IR epochs then 1 finishing epoch), whose boundaries are signed and smooth:
cached LIT's PSNR under each store, two seeds; its teacher is trained once (``litcache train-teacher``, the
pipeline's recipe) into the work folder.

Each (store, variant) is a ``benchmarks/quality.py`` run whose results file is
``benchmarks/results/quantized/cifar10-resnet56-resnet20-<store>-<variant>.json`` (kept, so a rerun skips it);
``--collect`` writes ``benchmarks/results/quantized/summary.json`` with the caches' sizes beside the accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "quantized"
PIPELINE = "cifar10-resnet56-resnet20"
TEACHER = ROOT / "benchmarks" / "results" / "teachers" / "resnet56-cifar10.pt"
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
# the ResNet-56 -> ResNet-20 table's settings (BENCHMARKS.md), at cached LIT's best rates
TABLE = [
    "train.weight_decay=5e-4",
    "stream.workers=2",
    "train.label_weight=0.05",
    "train.soft_weight=0.95",
    "kd.label_weight=0.05",
    "kd.soft_weight=0.95",
    "train.lr=0.4",
    "train.baseline_lr=0.1",
    "kd.lr=0.02",
]
STORES = {"float16": ["store.bits=0"], **{str(b): [f"store.bits={b}"] for b in (8, 6, 4)}}
VARIANTS = ("cached-lit", "cached-lit-combined")
GENERATOR = {
    "pipeline": "cifar10-upscale-generator6-generator2",
    "variants": ("cached-lit",),
    "metric": "psnr",
    "args": ["--ir-epochs", "3", "--kd-epochs", "1", "--limit", "20000"],
}
RESNET = {
    "pipeline": PIPELINE,
    "variants": VARIANTS,
    "metric": "accuracy",
    "args": ["--ir-epochs", "2", "--kd-epochs", "1", *[a for item in TABLE for a in ("--set", item)]],
}
PAIRS = {"resnet56-resnet20": RESNET, "generator": GENERATOR}


def result_file(pair: dict, store: str, variant: str) -> Path:
    return RESULTS / f"{pair['pipeline']}-{store}-{variant}.json"


def generator_teacher(work: Path) -> Path:
    """The generator pair's teacher, trained once with the pipeline's recipe on the first 20,000 images."""
    path = work / "generator6.pt"
    if not path.is_file():
        cmd = ["litcache", "train-teacher", "-p", GENERATOR["pipeline"], "-d", str(SHARED), "--limit", "20000"]
        cmd += ["-o", str(path), "--resume", "-q"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return path


def run(pair: dict, store: str, seeds: list[int], work: Path) -> None:
    teacher = TEACHER if pair is RESNET else generator_teacher(work)
    for variant in pair["variants"]:
        out = result_file(pair, store, variant)
        if out.is_file():
            print(f"{out.name}: done", flush=True)
            continue
        folder = work / (store if pair is RESNET else f"generator-{store}")
        cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--pipeline", pair["pipeline"]]
        cmd += ["--teacher", str(teacher), "--data", str(SHARED), "--work", str(folder), "--output", str(out)]
        cmd += [*pair["args"], "--seeds", *map(str, seeds), "--variants", variant]
        cmd += [a for item in STORES[store] for a in ("--set", item)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def collect() -> dict[str, object]:
    rows = []
    for name, pair in PAIRS.items():
        metric = pair["metric"]
        for store in STORES:
            for variant in pair["variants"]:
                path = result_file(pair, store, variant)
                if path.is_file():
                    rows.append(row_of(name, store, variant, metric, path))
    summary = {"teacher": str(TEACHER.relative_to(ROOT)), "rows": rows}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    for r in rows:
        seeds = " / ".join(f"{a:.4f}" for a in r["per_seed"])
        print(
            f"{r['pair']:<18} {r['store']:>8} {r['variant']:<20} {r['metric']} {r['mean']:.4f} ({seeds}) "
            f"cache {r['cache_bytes'] / 1e9:.2f} GB"
        )
    print("\n" + markdown_table(rows))
    return summary


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """BENCHMARKS.md's table: each store against float16 of the same pair and variant, in points (x 100), with
    the seed spread (max - min over seeds) of both; a difference inside the larger spread is within the noise
    two seeds show."""
    base = {(r["pair"], r["variant"]): r for r in rows if r["store"] == "float16"}
    lines = [
        "| pair | objective | store | per seed | mean | vs float16 | seed spread | inside it | cache GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        f16 = base.get((r["pair"], r["variant"]))
        spread = max(r["per_seed"]) - min(r["per_seed"])
        scale = 100 if r["metric"] == "accuracy" else 1  # accuracy in points, PSNR in dB
        unit = " pts" if scale == 100 else " dB"
        if f16 is None or f16 is r:
            diff, inside = "", ""
        else:
            delta = r["mean"] - f16["mean"]
            widest = max(spread, max(f16["per_seed"]) - min(f16["per_seed"]))
            diff = f"{scale * delta:+.2f}{unit}"
            inside = "yes" if abs(delta) <= widest else "no"
        label = "bits" if r["store"] != "float16" else ""
        lines.append(
            f"| {r['pair']} | {r['variant']} | {r['store']} {label} | "
            + " / ".join(f"{a:.4f}" for a in r["per_seed"])
            + f" | {r['mean']:.4f} | {diff} | {scale * spread:.2f}{unit} | {inside} | {r['cache_bytes'] / 1e9:.2f} |"
        )
    return "\n".join(lines)


def row_of(pair: str, store: str, variant: str, metric: str, path: Path) -> dict[str, object]:
    """One (pair, store, variant) row of the summary, from quality.py's results file and its meta file."""
    (row,) = json.loads(path.read_text())
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    per_seed = row[f"{metric}_per_seed"]
    return {
        "pair": pair,
        "store": store,
        "variant": variant,
        "metric": metric,
        "mean": statistics.mean(per_seed),
        "per_seed": per_seed,
        "seeds": row["seeds"],
        "after_ir_per_seed": row.get(f"{metric}_after_ir_per_seed"),
        "cache_bytes": meta["cache"]["stored_bytes"],
        "cache_rows": meta["cache"]["rows"],
        "extract_seconds": meta["cache"]["extract_seconds"],
        "seconds": row["seconds"],
        "overrides": row["settings"]["overrides"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="resnet56-resnet20", choices=list(PAIRS))
    ap.add_argument("--stores", nargs="+", default=list(STORES), choices=list(STORES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "quantized"))
    ap.add_argument("--collect", action="store_true", help="only gather the finished runs into summary.json")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.collect:
        for store in args.stores:
            run(PAIRS[args.pair], store, args.seeds, Path(args.work))
    collect()


if __name__ == "__main__":
    main()
