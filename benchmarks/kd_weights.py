"""Which KD weights and rates the CPU-sized pipelines use, chosen on a validation split (issue 23).

KD = label_weight * CE(labels) + soft_weight * T^2 * softCE(teacher). Two weightings are compared:

- ``reference``: label 0.95, soft 0.05, as LIT's reference code (``AlphaDistillationLoss`` with alpha = 0.95);
- ``strong``:    label 0.05, soft 0.95, the CPU-sized pipelines' weights.

The soft weight acts partly as a learning-rate multiplier (T^2 = 36 scales its gradient), so each weighting is
compared at its own best rates. This is ``benchmarks/validated_table.py``'s protocol with this comparison's
defaults (the ResNet-20 -> ResNet-8 pair and teacher, seeds 0 and 1): every variant's rates swept over the same
grid, KD only and both LIT variants under each weighting, every sweep point trained without a held-out draw of
5,000 training images and scored on them; the test set scored once, for each variant's chosen setting. It
prints each variant's best validation score under each weighting. Any of validated_table.py's flags may follow
(``--plan`` lists the runs and their CPU time).

    python benchmarks/kd_weights.py --plan
    python benchmarks/kd_weights.py                      # -> benchmarks/results/validated/cifar10-resnet20-resnet8/
    python benchmarks/kd_weights.py --pipeline cifar10-resnet56-resnet20 \
        --teacher benchmarks/results/teachers/resnet56-cifar10.pt --set train.weight_decay=5e-4

Before issue 23 this script scored its sweeps on the test set, and gave KD only one swept rate to LIT's three;
the tables BENCHMARKS.md quotes from ``benchmarks/results/weights/`` were made that way, by the version of
commit 59f629e (``git show 59f629e:benchmarks/kd_weights.py``), which reproduces them.
"""

from __future__ import annotations

import sys
from typing import Any

import validated_table
from validated_table import RESULTS, WEIGHTINGS

DEFAULTS = [
    "--pipeline",
    "cifar10-resnet20-resnet8",
    "--teacher",
    str(RESULTS / "teachers" / "resnet20-cifar10.pt"),
    "--seeds",
    "0",
    "1",
    "--few-seeds",
    "0",
    "1",
]


def by_weighting(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each variant's best validation score under each weighting it was swept under."""
    best: dict[str, dict[str, float]] = {}
    for point in summary["sweeps"]:
        if point["weighting"] in WEIGHTINGS:
            scores = best.setdefault(point["variant"], {})
            scores[point["weighting"]] = max(scores.get(point["weighting"], 0.0), point["val_accuracy"])
    return best


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    summary = validated_table.main([*DEFAULTS, *args])  # flags given later win over these defaults
    if summary is None:  # --plan
        return
    print("best validation accuracy by KD weighting (seed 0; each at its own best rates):")
    for variant, scores in by_weighting(summary).items():
        print(f"  {variant:<20} " + ", ".join(f"{w} {a:.4f}" for w, a in sorted(scores.items())))


if __name__ == "__main__":
    main()
