"""Every command's --help shows a complete example, and long stages show progress in rows with an ETA."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
import zarr
from click.testing import CliRunner

import litcache.cache.verify
from litcache import open_cache
from litcache.cache.verify import verify_cache
from litcache.cli.main import main

EXAMPLE = re.compile(r"^\s*(?:Examples?(?: \([^)]*\))?:)?\s*(litcache [a-z-]+\b.*)$")


def examples(help_text: str, command: str) -> list[str]:
    """The example command lines of ``command`` in its help (comments after # dropped)."""
    found = [m[1] for line in help_text.splitlines() if (m := EXAMPLE.match(line))]
    return [line for line in found if line.split()[1] == command]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_help_has_a_complete_example(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    lines = examples(result.output, name)
    assert lines, f"`litcache {name} --help` shows no example:\n{result.output}"
    command = main.commands[name]
    for line in lines:
        args = shlex.split(line, comments=True)[2:]
        try:  # complete: every required option and argument is there, and every option exists
            command.make_context(name, args)
        except click.ClickException as exc:
            pytest.fail(f"example `{line}` of `litcache {name} --help` does not parse: {exc.format_message()}")


def test_the_group_help_shows_a_whole_run() -> None:
    result = CliRunner().invoke(main, ["--help"])
    shown = [m[1].split()[1] for line in result.output.splitlines() if (m := EXAMPLE.match(line))]
    assert shown == ["train-teacher", "extract", "inspect", "train-sections", "kd", "evaluate", "report"]


def test_verify_has_a_progress_bar_in_rows_and_finds_the_same_problems(
    cache_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "c.zarr"
    shutil.copytree(cache_path, copy)
    group = zarr.open_group(str(copy), mode="r+")
    group["logits"][16:32] = group["logits"][16:32] + 1
    cache = open_cache(str(copy))
    bars: list[dict[str, Any]] = []
    real = litcache.cache.verify.progress_bar

    def recording(**kwargs: Any) -> Any:
        bars.append(kwargs)
        return real(**{**kwargs, "enabled": False})

    monkeypatch.setattr(litcache.cache.verify, "progress_bar", recording)
    monkeypatch.setattr(litcache.cache.verify, "VERIFY_CALLS", 3)  # 8 units in calls of 3, 3 and 2
    assert verify_cache(cache).lines() == cache.verify() == ["unit 1 (rows 16..31): logits does not match its checksum"]
    assert bars == [{"total": cache.rows, "desc": "verify units", "unit": "row", "enabled": True}]
    result = CliRunner().invoke(main, ["inspect", str(copy), "--verify", "-q"])
    assert result.exit_code == 1 and "unit 1 (rows 16..31)" in result.output
