"""The figures BENCHMARKS.md and README.md quote match the results files they name (benchmarks/figures.py), and a
quick benchmark run never replaces the full run's record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))

import figures  # noqa: E402

# the tables BENCHMARKS.md marks: the quality tables of ResNet-20 -> ResNet-8 (its rate sweeps and its table),
# of ResNet-56 -> ResNet-20 (its rate sweeps and its table at sections 0.05), --quick, the full train set
# (3 and 6 epochs) and the generator; more may be marked, none may go unchecked
MARKED_AT_LEAST = 11


def test_benchmarks_quotes_the_figures_of_its_results_files() -> None:
    count, problems = figures.check(ROOT / "BENCHMARKS.md")
    assert not problems, "\n".join(problems)
    assert count >= MARKED_AT_LEAST


def test_the_readme_quotes_the_figures_of_its_results_files() -> None:
    """ "When LIT helps" and the combined objective's paragraph: their accuracies are the benchmark files' own."""
    count, problems = figures.check(ROOT / "README.md")
    assert not problems, "\n".join(problems)
    assert count >= 2


def _write(root: Path, document: str, results: object) -> Path:
    (root / "results").mkdir()
    (root / "results" / "run.json").write_text(json.dumps(results))
    (root / "doc.md").write_text(document)
    return root / "doc.md"


def test_a_figure_that_is_not_in_its_file_is_named(tmp_path: Path) -> None:
    doc = _write(
        tmp_path,
        "<!-- figures: results/*.json -->\n| kd | **0.7716** | 78.89 % | seed 0.1 |\n\nafter the block: 0.9999\n",
        [{"name": "kd", "accuracy": 0.77164, "per_seed": [0.7889]}],
    )
    assert figures.check(doc, tmp_path) == (1, [])  # 0.7716 at 4 decimals, 78.89 % of 0.7889; 0.1 not checked
    doc.write_text(doc.read_text().replace("0.7716", "0.7717").replace("78.89", "78.90"))
    _, problems = figures.check(doc, tmp_path)
    assert problems == [
        "line 1: 78.90 % is in none of results/*.json",
        "line 1: 0.7717 is in none of results/*.json",
    ]


def test_a_block_spans_blank_lines_up_to_its_end_marker_and_names_missing_files(tmp_path: Path) -> None:
    doc = _write(tmp_path, "<!-- figures: results/run.json -->\n0.500\n\n0.600\n<!-- /figures -->\n", {"a": 0.5})
    assert figures.check(doc, tmp_path)[1] == ["line 1: 0.600 is in none of results/run.json"]
    doc.write_text("<!-- figures: results/other.json -->\n0.500\n")
    assert figures.check(doc, tmp_path)[1] == ["line 1: no results file matches results/other.json"]


def test_a_quick_run_writes_its_own_file() -> None:
    pytest.importorskip("zarr")
    import run

    assert run.output_path(quick=True, output=None) == run.QUICK != run.FULL
    assert run.output_path(quick=False, output=None) == run.FULL
    with pytest.raises(SystemExit, match="--quick does not write"):
        run.output_path(quick=True, output=str(run.FULL))
