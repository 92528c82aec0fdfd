"""The quality table: does training from the cache cost accuracy?

One teacher, one cache, one smaller student trained five ways with the same epochs and seeds:

1. ``scratch``              cross-entropy on the labels alone
2. ``kd``                   KD only, from the cached logits
3. ``online-lit``           LIT with the teacher in memory computing targets every step (IR sections, then KD)
4. ``cached-lit``           LIT from the cache (IR sections, then the short KD pass)
5. ``cached-lit-combined``  LIT's combined objective beta*KD + (1-beta)*sum(IR) from the cache, every epoch
6. ``online-lit-combined``  the same objective with the teacher in memory (the online baseline of 5; opt-in)

    python benchmarks/quality.py --quick                       # minutes: a smoke version of the table
    python benchmarks/quality.py --teacher T.pt --seeds 0 1    # the full table -> benchmarks/results/quality.json

Every variant reads the same views: a run's stages share one view counter (the KD pass after N IR epochs reads
views N, N+1, ...), and the cache holds one view per epoch by default, so no view repeats within a run.
Results are kept per (variant, seed, epochs, samples, views, overrides) in the work folder's ``runs.json``: a
later run with more seeds or other ``--set`` values adds to it and reuses the cache.

Choosing settings without the test set: ``--set data.holdout=5000`` leaves 5,000 training images (a fixed, seeded
draw) out of the cache, and so out of every student's training, and ``--eval-split val`` scores the students on
them instead of the test set. The same command with ``--eval-split test`` later scores the chosen setting's
students on the test set once, from their kept checkpoints, without training them again:

    python benchmarks/quality.py --teacher T.pt --set data.holdout=5000 --eval-split val --output sweep-point.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from litcache.cache.reader import open_cache
from litcache.cache.summary import summarize
from litcache.config import PipelineConfig, load_pipeline
from litcache.data import load_images
from litcache.extract.run import extract
from litcache.models import build_model
from litcache.models.checkpoint import save_model
from litcache.train.loop import evaluate
from litcache.train.students import assemble_student
from litcache.train.supervised import evaluate_checkpoint, train_teacher
from litcache.train.trainer import train_end_to_end, train_sections

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
VARIANTS = ("scratch", "kd", "online-lit", "cached-lit", "cached-lit-combined")
EXTRA_VARIANTS = ("online-lit-combined",)
BETA_COMBINED = 0.75  # LIT's reference code
AFTER_IR = "student-after-ir.pt"  # an IR-then-KD variant's student before its KD pass
METRICS = ("accuracy", "psnr", "ssim")  # what evaluate_checkpoint reports: a classifier's, an image model's


def overrides_tag(overrides: list[str]) -> str:
    """A short folder name for a set of --set overrides ('' without any)."""
    if not overrides:
        return ""
    return "set-" + hashlib.sha256(",".join(sorted(overrides)).encode()).hexdigest()[:10]


def seeded(cfg_args: list[str], seed: int) -> PipelineConfig:
    return load_pipeline(cfg_args[0], [*cfg_args[1:], f"train.seed={seed}", f"kd.seed={seed}", f"stream.seed={seed}"])


def variant_folder(name: str, seed: int, work: Path, ir_epochs: int, kd_epochs: int) -> Path:
    """Where :func:`train_variant` keeps a run (its ``student.pt``, and the student after its IR stage)."""
    return work / f"{name}-seed{seed}-ir{ir_epochs}-kd{kd_epochs}"


def train_variant(
    name: str,
    cfg: PipelineConfig,
    cache: str,
    teacher: str,
    work: Path,
    ir_epochs: int,
    kd_epochs: int,
) -> str:
    """Train one variant; returns its standalone checkpoint.

    The baselines train at ``train.baseline_lr``, the LIT variants' sections stage (the IR epochs, or every epoch
    of the combined objective) at ``train.lr``, and the KD pass after it at ``kd.lr``.
    """
    out = variant_folder(name, cfg.train.seed, work, ir_epochs, kd_epochs)
    ckpt = out / "student.pt"
    total = ir_epochs + kd_epochs
    q = {"show_progress": False, "resume": True}  # a run cut short (a killed benchmark) goes on where it stopped
    if name == "scratch":
        train_end_to_end(cfg, cache, ckpt, labels_only=True, epochs=total, **q)
    elif name == "kd":
        train_end_to_end(cfg, cache, ckpt, epochs=total, **q)
    elif name in ("online-lit", "cached-lit"):
        online = teacher if name == "online-lit" else None
        train_sections(cfg, cache, out / "sections", epochs=ir_epochs, teacher_path=online, **q)
        # the student the IR stage alone gives (stem and head the teacher's): what the KD pass starts from
        save_model(assemble_student(open_cache(cache), out / "sections"), out / AFTER_IR, mode=name)
        train_end_to_end(cfg, cache, ckpt, sections_dir=out / "sections", epochs=kd_epochs, teacher_path=online, **q)
    elif name in ("cached-lit-combined", "online-lit-combined"):
        online = teacher if name == "online-lit-combined" else None
        combined = cfg.replace(train=dataclasses.replace(cfg.train, beta=BETA_COMBINED))
        train_sections(combined, cache, out / "sections", epochs=total, teacher_path=online, **q)
        save_model(assemble_student(open_cache(cache), out / "sections"), ckpt, mode=name)
    else:
        raise ValueError(name)
    return str(ckpt)


def degraded_input_scores(cfg: PipelineConfig, test_limit: int | None, split: str = "test") -> dict[str, float] | None:
    """PSNR and SSIM of what a built-in generator sees (its ``degrade``, no parameters) against the ground truth:
    the score a model that restores nothing gets, so a generator's table says how far it rose above it."""
    net = build_model(cfg.teacher.model, 10, cfg.data.mean, cfg.data.std).net
    degrade = getattr(net, "degrade", None)
    if degrade is None:
        return None
    scores = evaluate(degrade, load_images(cfg.data, split, test_limit), torch.device("cpu"))
    return {k: v for k, v in scores.items() if k != "samples"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few thousand samples and 2 epochs: minutes")
    ap.add_argument("--data", default=str(SHARED), help="CIFAR-10 WebDataset shards")
    ap.add_argument("--pipeline", default="cifar10-resnet20-resnet8")
    ap.add_argument("--teacher", default=None, help="teacher checkpoint (trained here when absent)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--ir-epochs", type=int, default=None, help="IR epochs (then --kd-epochs of KD)")
    ap.add_argument("--kd-epochs", type=int, default=None)
    ap.add_argument(
        "--views",
        type=int,
        default=None,
        help="cached views (default: one per epoch); fewer reuses a smaller cache, epoch e reading view e mod views",
    )
    ap.add_argument("--limit", type=int, default=None, help="training samples (default: all)")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every variant, e.g. store.bitround_keepbits=7 (use its own --work)",
    )
    ap.add_argument("--test-limit", type=int, default=None, help="score on the first N samples of the split only")
    ap.add_argument(
        "--eval-split",
        choices=("test", "val"),
        default="test",
        help="what the students are scored on: the test set, or (val) the training images --set data.holdout=N "
        "keeps out of the cache; a run kept in the work folder is scored on a new split without training again",
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS + EXTRA_VARIANTS)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "quality"))
    ap.add_argument(
        "--cache",
        default=None,
        help="an existing complete cache to train from (default: WORK/cache.zarr, extracted when absent)",
    )
    ap.add_argument(
        "--output",
        default=None,
        help="results JSON (default: results/quality.json, or results/quality-quick.json with --quick)",
    )
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"no data at {args.data}: pass --data with CIFAR-10 WebDataset shards")

    quick = args.quick
    ir_epochs = args.ir_epochs or (1 if quick else 4)
    kd_epochs = args.kd_epochs or 1
    limit = args.limit or (3000 if quick else None)
    test_limit = args.test_limit or (2000 if quick else None)
    seeds = args.seeds[:1] if quick and args.seeds == [0, 1] else args.seeds
    views = args.views or ir_epochs + kd_epochs
    work = Path(args.work) / ("quick" if quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    base = [
        args.pipeline,
        f"data.source={json.dumps(args.data)}",
        f"extract.views={views}",
        f"train.epochs={ir_epochs}",
        f"kd.epochs={kd_epochs}",
        "train.beta=0",  # IR only for the LIT variants; the combined ones set BETA_COMBINED themselves
        *args.overrides,
    ]
    cfg = load_pipeline(base[0], base[1:])

    teacher = args.teacher
    teacher_seconds = None
    if teacher is None:
        teacher = str(work / "teacher.pt")
        if not Path(teacher).is_file():
            started = time.perf_counter()
            epochs = 2 if quick else None
            train_teacher(cfg, teacher, epochs=epochs, limit=limit, resume=True, show_progress=False)
            teacher_seconds = time.perf_counter() - started
    split = args.eval_split
    teacher_eval = evaluate_checkpoint(teacher, cfg, test_limit, split=split)
    metric = "accuracy" if "accuracy" in teacher_eval else "psnr"  # image-to-image models: PSNR (and SSIM)
    metrics = [m for m in METRICS if m in teacher_eval]
    scored = f"on {teacher_eval['samples']} {split} samples"
    scores = ", ".join(f"{m} {teacher_eval[m]:.4f}" for m in metrics)
    print(f"teacher {teacher_eval['model']} {scored}: {scores}", flush=True)
    baseline = degraded_input_scores(cfg, test_limit, split) if metric == "psnr" else None
    if baseline:
        print("the degraded input itself: " + ", ".join(f"{m} {baseline[m]:.4f}" for m in metrics), flush=True)

    cache = args.cache or str(work / "cache.zarr")
    started = time.perf_counter()
    summary = extract(cfg, teacher, cache, limit=limit, resume=Path(cache).exists(), show_progress=False)
    # the extraction's time is kept beside the cache: a later run that finds the cache complete reports it
    extract_record = Path(cache).with_suffix(".extract.json")
    if summary["units_written"]:
        extract_record.write_text(json.dumps({"seconds": time.perf_counter() - started, **summary}, indent=2))
    extract_seconds = json.loads(extract_record.read_text())["seconds"] if extract_record.is_file() else None
    cache_info = summarize(open_cache(cache))

    # each (variant, seed) result is kept in the work folder, so a later run with more seeds adds to it
    done_path = work / "runs.json"
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    rows = []
    after_ir_key = f"{metric}_after_ir"  # an IR-then-KD variant's student before its KD pass
    prefix = "" if split == "test" else f"{split}_"  # a record's scores on the test set, and val_... on the holdout
    for name in args.variants:
        per_seed: list[dict[str, float]] = []
        for seed in seeds:
            key = f"{name}/seed{seed}/ir{ir_epochs}/kd{kd_epochs}/n{limit}"
            if views != ir_epochs + kd_epochs:
                key += f"/v{views}"
            if args.overrides:
                key += "/set:" + ",".join(sorted(args.overrides))
            ckpt = variant_folder(name, seed, work / overrides_tag(args.overrides), ir_epochs, kd_epochs) / "student.pt"
            if key not in done or (prefix + metric not in done[key] and not ckpt.is_file()):
                scfg = seeded(base, seed)
                started = time.perf_counter()
                train_variant(name, scfg, cache, teacher, work / overrides_tag(args.overrides), ir_epochs, kd_epochs)
                done[key] = {"seconds": time.perf_counter() - started}
            if prefix + metric not in done[key]:  # trained now, or kept from a run scored on the other split
                result = evaluate_checkpoint(ckpt, cfg, test_limit, split=split)
                done[key].update({prefix + m: result[m] for m in metrics})
                ir_student = ckpt.with_name(AFTER_IR)
                if ir_student.is_file():
                    done[key][prefix + after_ir_key] = evaluate_checkpoint(ir_student, cfg, test_limit, split=split)[
                        metric
                    ]
                done_path.write_text(json.dumps(done, indent=2))
            record = done[key]
            scores = {k: record[prefix + k] for k in (*metrics, after_ir_key) if prefix + k in record}
            per_seed.append({**scores, "seconds": record["seconds"]})
            after_ir = per_seed[-1].get(after_ir_key)
            print(
                f"{name:<22} seed {seed}: {metric} {per_seed[-1][metric]:.4f} in {done[key]['seconds']:.0f}s"
                + (f" ({after_ir:.4f} after the IR stage, before KD)" if after_ir is not None else ""),
                flush=True,
            )
        values = {m: [r[m] for r in per_seed] for m in metrics}
        if all(after_ir_key in r for r in per_seed):
            values[after_ir_key] = [r[after_ir_key] for r in per_seed]
        rows.append(
            {
                "name": name,
                **{m: statistics.mean(v) for m, v in values.items()},
                f"{metric}_spread": (max(values[metric]) - min(values[metric])) if len(seeds) > 1 else 0.0,
                **{f"{m}_per_seed": v for m, v in values.items()},
                "seeds": seeds,
                "seconds": statistics.mean(r["seconds"] for r in per_seed),
                "settings": {
                    "student": cfg.train.student.describe(),
                    "teacher": teacher_eval["model"],
                    "ir_epochs": ir_epochs,
                    "kd_epochs": kd_epochs,
                    "epochs_total": ir_epochs + kd_epochs,
                    "views": views,
                    "overrides": args.overrides,
                    "beta_combined": BETA_COMBINED,
                    "temperature": cfg.kd.temperature,
                    "label_weight": [cfg.train.label_weight, cfg.kd.label_weight],  # sections/baselines, KD pass
                    "soft_weight": [cfg.train.soft_weight, cfg.kd.soft_weight],
                    "lr": [cfg.train.baseline_settings().lr, cfg.kd.lr],  # baselines, KD pass
                    "sections_lr": cfg.train.lr,
                    "train_samples": open_cache(cache).samples,
                    "test_samples": teacher_eval["samples"],  # of the split scored
                    "split": split,
                    "holdout": [cfg.data.holdout, cfg.data.holdout_seed],  # samples kept out of the cache, seed
                    "batch_size": cfg.stream.batch_size,
                },
            }
        )

    print(f"\n{'variant':<22} " + " ".join(f"{m:>9}" for m in metrics) + f" {'spread':>7} {'seconds':>8}")
    for r in rows:
        values = " ".join(f"{r[m]:>9.4f}" for m in metrics)
        print(f"{r['name']:<22} {values} {r[f'{metric}_spread']:>7.4f} {r['seconds']:>8.0f}")
    print(
        f"teacher {teacher_eval['model']} {teacher_eval[metric]:.4f}; cache {cache_info['stored_bytes'] / 1e9:.2f}"
        f" GB for {cache_info['rows']} rows, "
        + (f"extracted in {extract_seconds:.0f}s" if extract_seconds else "extracted by an earlier run (time not kept)")
    )
    out = (
        Path(args.output)
        if args.output
        else ROOT / "benchmarks" / "results" / ("quality-quick.json" if quick else "quality.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    meta = {
        "teacher": {"checkpoint": teacher, **teacher_eval, "train_seconds": teacher_seconds},
        "degraded_input": baseline,  # an image model's bar: the scores of the input it sees, unrestored
        "split": split,  # what every score here was measured on (val: the held-out training images)
        "command": shlex.join(["python", *sys.argv]),  # what made this file
        "cache": {
            "stored_bytes": cache_info["stored_bytes"],
            "rows": cache_info["rows"],
            "views": cache_info["views"],
            "extract_seconds": extract_seconds,
        },
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": "cpu",
        },
    }
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
