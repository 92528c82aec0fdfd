"""benchmarks/validated_table.py: every variant's rates swept on the validation split, the test set scored once for
each variant's choice, and a run kept in the results folder read instead of run again (planned, never trained)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))

import validated_table as vt  # noqa: E402


def plan(tmp_path: Path, *flags: str) -> vt.Runner:
    args = vt.parse_args(["--results", str(tmp_path / "results"), "--work", str(tmp_path / "work"), "--plan", *flags])
    run = vt.Runner(args, plan=True)
    vt.table(run, vt.select(run))
    return run


def test_each_variant_sweeps_the_same_grid_on_the_validation_split_and_the_test_set_is_scored_once(
    tmp_path: Path,
) -> None:
    run = plan(tmp_path)
    val = [p for p, split, seeds in run.planned if split == "val" and seeds == [0]]
    assert len(val) == len([p for p, split, _ in run.planned if split == "val"])  # a sweep point: seed 0 only
    # KD only: its rate over the grid LIT's sections sweep, under each weighting (its KD weights chosen too)
    assert {(p.weighting, p.lr) for p in val if p.variant == "kd"} == {(w, r) for w in vt.WEIGHTINGS for r in vt.GRID}
    assert {p.lr for p in val if p.variant == "scratch"} == set(vt.GRID)
    lit = [p for p in val if p.variant == "cached-lit"]
    assert set(vt.GRID) <= {p.lr for p in lit} and set(vt.KD_PASS_GRID) <= {p.kd_lr for p in lit}
    assert {p.weighting for p in lit} == set(vt.WEIGHTINGS)
    assert set(vt.GRID) <= {p.lr for p in val if p.variant == "cached-lit-combined"}
    assert not [p for p in val if p.variant == "online-lit"]  # cached LIT's choice, on the table only
    test = {p.variant: (p, seeds) for p, split, seeds in run.planned if split == "test"}
    assert sorted(test) == sorted(vt.VARIANTS)  # each variant's chosen setting, once
    assert {v: s for v, (_, s) in test.items()} == {
        "kd": [0, 1, 2],
        "cached-lit": [0, 1, 2],
        "cached-lit-combined": [0, 1, 2],
        "scratch": [0, 1],
        "online-lit": [0, 1],
    }
    assert test["online-lit"][0] == test["cached-lit"][0].but(variant="online-lit")


def test_a_kept_run_is_read_and_another_teachers_is_run_again(tmp_path: Path) -> None:
    point = vt.Point("kd", 0.05, "strong")
    first = plan(tmp_path)
    assert (point, "val", [0]) in first.planned
    out = first.path(point, "val")
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps([{"name": "kd", "accuracy": 0.5, "accuracy_per_seed": [0.5]}]))
    meta = {"teacher": {"checkpoint": str(Path(first.args.teacher).resolve())}}
    out.with_suffix(".meta.json").write_text(json.dumps(meta))
    assert (point, "val", [0]) not in plan(tmp_path).planned
    meta["teacher"]["checkpoint"] = "/elsewhere/teacher.pt"
    out.with_suffix(".meta.json").write_text(json.dumps(meta))
    assert (point, "val", [0]) in plan(tmp_path).planned


def test_a_point_sets_only_its_own_rates_and_weights() -> None:
    assert vt.Point("kd", 0.1, "strong").sets() == [
        "train.label_weight=0.05",
        "train.soft_weight=0.95",
        "kd.label_weight=0.05",
        "kd.soft_weight=0.95",
        "train.baseline_lr=0.1",
    ]
    assert vt.Point("scratch", 0.2).sets() == ["train.baseline_lr=0.2"]
    assert vt.Point("cached-lit", 0.4, "reference", 0.02).sets()[-2:] == ["train.lr=0.4", "kd.lr=0.02"]
    assert vt.Point("cached-lit", 0.4, "reference", 0.02).name == "cached-lit-reference-lr0.4-kdlr0.02"


def test_the_verdict_says_plainly_whether_lit_leads() -> None:
    def row(variant: str, seeds: list[float]) -> dict[str, object]:
        return {"variant": variant, "accuracy": sum(seeds) / len(seeds), "accuracy_per_seed": seeds}

    kd = row("kd", [0.77, 0.78])
    assert vt.verdict([kd, row("cached-lit", [0.80, 0.81])]).startswith(
        "LIT (cached-lit) leads KD only by +3.00 points on the test set (every LIT seed above every KD seed)"
    )
    assert "the seeds' ranges overlap" in vt.verdict([kd, row("cached-lit", [0.775, 0.79])])
    assert vt.verdict([kd, row("cached-lit-combined", [0.70, 0.71])]).startswith("LIT does not lead")


def test_kd_weights_reports_each_variants_best_validation_score_by_weighting() -> None:
    import kd_weights

    sweeps = [
        {"variant": "kd", "weighting": "strong", "val_accuracy": 0.70},
        {"variant": "kd", "weighting": "strong", "val_accuracy": 0.74},
        {"variant": "kd", "weighting": "reference", "val_accuracy": 0.71},
        {"variant": "scratch", "weighting": None, "val_accuracy": 0.69},
    ]
    assert kd_weights.by_weighting({"sweeps": sweeps}) == {"kd": {"strong": 0.74, "reference": 0.71}}
    assert kd_weights.DEFAULTS[:2] == ["--pipeline", "cifar10-resnet20-resnet8"]
