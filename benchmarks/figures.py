"""The figures BENCHMARKS.md quotes, checked against the results files they come from.

The convention: a line ``<!-- figures: PATH [PATH ...] -->`` (paths relative to the repository; globs allowed)
just before a table or a paragraph names the results files its figures live in. From that line to the next blank
line (or to ``<!-- /figures -->``, for a block that spans blank lines), every number written with three or more
decimals (``0.7716``, ``27.145``) must equal, at the precision it is written with, a number in one of those files,
and every percentage with two decimals (``78.89 %``) must equal one of them times 100. Integers and shorter
decimals (seeds, rates, seconds, differences in points) are not checked.

    python benchmarks/figures.py                 # BENCHMARKS.md: every marked block; exits 1 on a mismatch
    python benchmarks/figures.py README.md       # another document

``tests/test_benchmark_figures.py`` runs the same check on BENCHMARKS.md with the fast tests.
"""

from __future__ import annotations

import glob
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- figures: (.+?) -->\s*$")
END = "<!-- /figures -->"
PERCENT = re.compile(r"(?<![\w.])(\d+\.\d{2})(?!\d)\s?%")
DECIMAL = re.compile(r"(?<![\w.])(-?\d+\.\d{3,})(?![\d.])")


@dataclass(frozen=True)
class Block:
    """A marked part of a document: where it starts, the files it names, and its text."""

    line: int  # of the marker, from 1
    patterns: tuple[str, ...]
    text: str


def blocks(text: str) -> Iterator[Block]:
    """The marked blocks of a markdown document, in order."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        rest = lines[i + 1 :]
        stop = next((k for k, r in enumerate(rest) if r.strip() == END or MARKER.match(r.strip())), len(rest))
        if stop < len(rest) and rest[stop].strip() == END:  # an explicit end: the block may span blank lines
            body = rest[:stop]
        else:  # up to the first blank line after its first line
            body = []
            for r in rest:
                if not r.strip() and body:
                    break
                if r.strip():
                    body.append(r)
        yield Block(i + 1, tuple(m.group(1).split()), "\n".join(body))


def numbers(value: Any) -> Iterator[float]:
    """Every number in a JSON document (booleans are not numbers here)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)


def quoted(text: str) -> Iterator[tuple[str, float, int, bool]]:
    """Each checked figure of ``text``: as written, its value, its decimals, and whether it is a percentage."""
    for m in PERCENT.finditer(text):
        yield m.group(0), float(m.group(1)), 2, True
    without = PERCENT.sub(" ", text)
    for m in DECIMAL.finditer(without):
        yield m.group(1), float(m.group(1)), len(m.group(1).split(".")[1]), False


def check_block(block: Block, root: Path = ROOT) -> list[str]:
    """What is wrong with one block: files it names that do not exist, and figures found in none of them."""
    where = f"line {block.line}"
    files: list[str] = []
    for pattern in block.patterns:
        hits = sorted(glob.glob(str(root / pattern)))
        if not hits:
            return [f"{where}: no results file matches {pattern}"]
        files += hits
    values = [v for f in files for v in numbers(json.loads(Path(f).read_text()))]
    problems = []
    figures = list(quoted(block.text))
    if not figures:
        problems.append(f"{where}: the block after the marker quotes no figure with 3+ decimals or 2-decimal %")
    for text, value, decimals, percent in figures:
        scale = 100.0 if percent else 1.0
        tolerance = 0.5 * 10**-decimals + 1e-9
        if not any(abs(v * scale - value) <= tolerance for v in values):
            problems.append(f"{where}: {text} is in none of {', '.join(block.patterns)}")
    return problems


def check(document: Path, root: Path = ROOT) -> tuple[int, list[str]]:
    """The number of marked blocks of ``document`` and every problem found in them."""
    found = list(blocks(document.read_text()))
    return len(found), [p for b in found for p in check_block(b, root)]


def main() -> None:
    document = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "BENCHMARKS.md"
    count, problems = check(document)
    for p in problems:
        print(f"{document.name}: {p}")
    print(f"{document.name}: {count} marked blocks, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
