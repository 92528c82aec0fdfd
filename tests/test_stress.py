"""A few trials of benchmarks/stress_resume.py: killed with SIGKILL, resumed, identical to an uninterrupted run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "stress_resume.py"


@pytest.mark.slow
def test_killed_stages_resume_to_the_uninterrupted_result(data_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("stress_resume", SCRIPT)
    assert spec is not None and spec.loader is not None
    stress_resume = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress_resume)
    out = stress_resume.stress(tmp_path / "work", data_dir, limit=48, extract_trials=2, train_trials=1, seed=3)
    assert out["summary"] == {
        "extract": {"trials": 4, "identical": 4},  # 2 at random moments, 2 inside the final manifest write
        "train-sections": {"trials": 1, "identical": 1},
        "kd": {"trials": 1, "identical": 1},
    }, out["trials"]
    at_manifest = [t for t in out["trials"]["extract"] if t["kill"] != "random"]
    assert [t["exit"] for t in at_manifest] == [-9, -9]  # they did die there
