"""Which KD weighting the CPU-sized pipelines use: both weightings, each at the learning rate it does best with.

KD = label_weight * CE(labels) + soft_weight * T^2 * softCE(teacher). Two weightings are compared:

- ``reference``: label 0.95, soft 0.05, as LIT's reference code (``AlphaDistillationLoss`` with alpha = 0.95);
- ``strong``:    label 0.05, soft 0.95, the weighting litcache used before it was read against the reference.

The soft weight acts partly as a learning-rate multiplier (T^2 = 36 scales its gradient), so each weighting gets its
own learning rate: the KD-only variant (seed 0) runs on a doubling grid that grows past its end while the best
rate sits at that end (at most ``--widen`` times); then every variant runs at each weighting's best rate, for every
seed, through ``benchmarks/quality.py`` (same teacher, same cache, same views). ``kd.lr`` is ``train.lr / 5``.

The IR loss (a mean squared error on activations) carries no T^2 scale, so the rate that suits KD need not suit
LIT's sections stage: with ``--sections-grid``, cached LIT (seed 0) runs at each of those section rates too (widened
while the best sits at an end), the KD pass and the baselines keeping theirs, and the LIT variants of the tables
take the best of them (the KD rate included, from its table's seed 0). The IR stage never sees the KD weights
(beta = 0), so this sweep runs under the first weighting only. Then the KD pass that ends IR-then-KD LIT runs at
``--kd-pass-grid`` fractions of the KD rate beside lr / 5 (cached LIT, seed 0, the best sections rate), widened
the same way.

    python benchmarks/kd_weights.py --teacher benchmarks/results/teachers/resnet20-cifar10.pt

Another pair's tables at chosen rates (no sweeps), e.g. the ResNet-56 -> ResNet-20 one (BENCHMARKS.md):

    python benchmarks/kd_weights.py --pipeline cifar10-resnet56-resnet20 --teacher T56.pt --weightings strong \
        --rates 0.1 0.1 0.02 --ir-epochs 2 --kd-epochs 1 --set train.weight_decay=5e-4 --work W

Each quality.py run writes ``benchmarks/results/weights/<pipeline>-<weighting>-lr<lr>.json`` (the sweep) or
``...-lr<lr>-<variant>.json`` (a variant of the tables, every seed); a run whose file exists (for the same
teacher) is not run again, so the comparison resumes across sessions from what was committed, and the work
folder's ``runs.json`` resumes a run cut short within one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "weights"
WEIGHTINGS = {"strong": (0.05, 0.95), "reference": (0.95, 0.05)}  # (label_weight, soft_weight)
BASELINES = ("scratch", "kd")
IR_THEN_KD = ("cached-lit", "online-lit")
ALL_VARIANTS = ["kd", "cached-lit", "cached-lit-combined", "online-lit", "scratch"]  # most telling first


def result_path(
    pipeline: str,
    weighting: str,
    lr: float,
    variant: str | None,
    sections_lr: float | None = None,
    kd_lr: float | None = None,
) -> Path:
    slr = f"-slr{sections_lr:g}" if sections_lr is not None and sections_lr != lr else ""
    kdlr = f"-kdlr{kd_lr:g}" if kd_lr is not None and kd_lr != lr / 5 else ""
    return RESULTS / f"{pipeline}-{weighting}-lr{lr:g}{slr}{kdlr}{f'-{variant}' if variant else ''}.json"


def run(
    args: argparse.Namespace,
    weighting: str,
    lr: float,
    variant: str,
    seeds: list[int],
    table: bool,
    sections_lr: float | None = None,
    kd_lr: float | None = None,
) -> dict:
    """One quality.py run of one variant (skipped when its result file exists for this teacher); returns its row.

    ``sections_lr`` is the LIT variants' sections rate (the baselines have no sections and ignore it), ``kd_lr``
    the rate of the KD pass that ends an IR-then-KD variant (default ``lr / 5``; the others have no KD pass)."""
    if variant in BASELINES:
        sections_lr = None
    if variant not in IR_THEN_KD:
        kd_lr = None
    out = result_path(args.pipeline, weighting, lr, variant if table else None, sections_lr, kd_lr)
    meta = out.with_suffix(".meta.json")
    teacher = str(Path(args.teacher).resolve())
    if not (out.is_file() and meta.is_file() and json.loads(meta.read_text())["teacher"]["checkpoint"] == teacher):
        label, soft = WEIGHTINGS[weighting]
        sets = {
            "train.label_weight": label,
            "train.soft_weight": soft,
            "kd.label_weight": label,
            "kd.soft_weight": soft,
            "train.lr": sections_lr if sections_lr is not None else lr,  # LIT's sections stage
            "train.baseline_lr": lr,  # KD only and scratch (a pipeline's own baseline rate must not stand)
            "kd.lr": kd_lr if kd_lr is not None else lr / 5,
        }
        cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--pipeline", args.pipeline]
        cmd += ["--teacher", teacher, "--work", args.work, "--output", str(out), "--data", args.data]
        cmd += ["--ir-epochs", str(args.ir_epochs), "--kd-epochs", str(args.kd_epochs)]
        cmd += ["--seeds", *map(str, seeds), "--variants", variant]
        cmd += [a for item in args.overrides for a in ("--set", item)]  # the pipeline's, before this comparison's
        cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v:g}")]
        if args.cache:
            cmd += ["--cache", args.cache]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(out.read_text())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="the teacher checkpoint every run shares")
    ap.add_argument("--pipeline", default="cifar10-resnet20-resnet8")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "quality-r8"))
    ap.add_argument("--cache", default=None, help="an existing complete cache (default: WORK/cache.zarr)")
    ap.add_argument("--ir-epochs", type=int, default=2)
    ap.add_argument("--kd-epochs", type=int, default=1)
    ap.add_argument("--grid", type=float, nargs="+", default=[0.1, 0.2, 0.4], help="learning rates to start from")
    ap.add_argument("--widen", type=int, default=2, help="grid extensions while the best rate is at an end")
    ap.add_argument(
        "--sections-grid",
        type=float,
        nargs="*",
        default=[0.05, 0.1, 0.2],
        help="learning rates of LIT's sections stage to try beside the KD rate (none: the KD rate alone)",
    )
    ap.add_argument(
        "--kd-pass-grid",
        type=float,
        nargs="*",
        default=[0.5, 1.0],
        help="rates of the KD pass after the IR stage to try, as fractions of the KD rate, beside 1/5",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the final tables")
    ap.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS))
    ap.add_argument("--sweep-only", action="store_true", help="stop after the learning-rate sweeps")
    ap.add_argument(
        "--rates",
        type=float,
        nargs=3,
        default=None,
        metavar=("LR", "SECTIONS_LR", "KD_PASS_LR"),
        help="skip the sweeps: the tables at these rates (every weighting), e.g. rates another pair's sweeps chose",
    )
    ap.add_argument("--variants", nargs="+", default=ALL_VARIANTS, choices=ALL_VARIANTS, help="variants of the tables")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every run (the weights and rates above are set after it)",
    )
    args = ap.parse_args()

    if args.rates:
        lr, sections_lr, kd_pass_lr = args.rates
        tables(args, dict.fromkeys(args.weightings, lr), sections_lr, kd_pass_lr)
        return
    best: dict[str, float] = {}
    for weighting in args.weightings:

        def kd_only(rate: float, weighting: str = weighting) -> float:
            return run(args, weighting, rate, "kd", [0], table=False)["accuracy"]

        scores = {rate: kd_only(rate) for rate in sorted(args.grid)}
        best[weighting] = widen(scores, kd_only, args.widen)
        print(f"{weighting}: KD accuracy by learning rate {dict(sorted(scores.items()))}; best {best[weighting]:g}")
    if args.sweep_only:
        return
    # The IR stage trains with beta = 0: the KD weights never reach it, so its rate is swept once, under the first
    # weighting, and both weightings' LIT variants take it.
    first = args.weightings[0]
    lr = best[first]
    scores = {lr: run(args, first, lr, "cached-lit", args.seeds, table=True)["accuracy_per_seed"][0]}
    for slr in args.sections_grid:
        scores[slr] = run(args, first, lr, "cached-lit", [0], table=False, sections_lr=slr)["accuracy"]
    sections_lr = widen(
        scores,
        lambda r: run(args, first, lr, "cached-lit", [0], table=False, sections_lr=r)["accuracy"],
        args.widen if args.sections_grid else 0,  # above the KD rate too (BENCHMARKS.md: ResNet-20 sections)
    )
    print(f"{first}: cached LIT by sections rate {dict(sorted(scores.items()))}; best {sections_lr:g}", flush=True)
    # then the KD pass that follows the IR stage: its rate (a fine-tuning rate, lr / 5 so far) against larger ones
    kd_scores = {lr / 5: scores[sections_lr]}
    for fraction in args.kd_pass_grid:
        kd_lr = lr * fraction
        if kd_lr not in kd_scores:
            row = run(args, first, lr, "cached-lit", [0], table=False, sections_lr=sections_lr, kd_lr=kd_lr)
            kd_scores[kd_lr] = row["accuracy"]
    kd_pass_lr = widen(
        kd_scores,
        lambda r: run(args, first, lr, "cached-lit", [0], table=False, sections_lr=sections_lr, kd_lr=r)["accuracy"],
        args.widen if args.kd_pass_grid else 0,
    )
    print(f"{first}: cached LIT by KD-pass rate {dict(sorted(kd_scores.items()))}; best {kd_pass_lr:g}", flush=True)
    tables(args, best, sections_lr, kd_pass_lr)


def widen(scores: dict[float, float], measure: Callable[[float], float], times: int) -> float:
    """The best rate of ``scores`` (rate -> accuracy), after measuring up to ``times`` more: twice the best while
    it is the largest rate tried, half of it while it is the smallest."""
    for _ in range(times):
        top = max(scores, key=scores.__getitem__)
        if top == max(scores):
            rate = top * 2
        elif top == min(scores):
            rate = top / 2
        else:
            break
        scores[rate] = measure(rate)
    return max(scores, key=scores.__getitem__)


def tables(args: argparse.Namespace, best: dict[str, float], sections_lr: float, kd_pass_lr: float) -> None:
    """Every variant at each weighting's rate, all seeds: variant by variant, both weightings in turn, so a session
    cut short leaves comparable pairs."""
    for variant in args.variants:
        # scratch learns from the labels alone: no KD weight reaches it, one weighting's run stands for both
        for weighting in args.weightings[:1] if variant == "scratch" else args.weightings:
            lr = best[weighting]
            row = run(args, weighting, lr, variant, args.seeds, True, sections_lr, kd_pass_lr)
            per_seed = " / ".join(f"{a:.4f}" for a in row["accuracy_per_seed"])
            print(f"{weighting} at lr {lr:g} (sections {sections_lr:g}), {variant}: {row['accuracy']:.4f} ({per_seed})")


if __name__ == "__main__":
    main()
