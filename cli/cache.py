"""``litcache inspect`` and ``litcache verify``: read a cache that `extract` wrote, summarise it, check it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from litcache.cli.options import (
    cache_argument,
    data_option,
    handle_errors,
    json_option,
    pipeline_options,
    quiet_option,
    resolve,
    teacher_option,
)


def _open(cache: str) -> Any:
    """The cache at ``cache``; a file is refused for what it is (a pickle that holds code says so)."""
    from pathlib import Path

    from litcache.cache.reader import open_cache
    from litcache.errors import CacheError, UnsafeCheckpointError
    from litcache.models.pickles import code_globals, holds_code_message

    if "://" not in cache and Path(cache).is_file():
        names = code_globals(cache)
        if names:
            raise UnsafeCheckpointError(holds_code_message(cache, names))
        raise CacheError(f"{cache} is a file, not a cache (the folder `litcache extract -o` writes)")
    return open_cache(cache)


@click.command("inspect")
@cache_argument()
@json_option()
@click.option("--stats", is_flag=True, help="Per-channel statistics of every boundary (dask, whole cache).")
@click.option("--verify", is_flag=True, help="Re-read every unit and check it against its CRC-32.")
@quiet_option()
@handle_errors
def inspect_cmd(cache: str, as_json: bool, stats: bool, verify: bool, quiet: bool) -> None:
    """Summarise a cache: what was cached, how big, whether complete.

    \b
    Examples:
      litcache inspect runs/cache.zarr --json
      litcache inspect runs/cache.zarr --verify --stats     # re-read every unit; per-channel statistics
    """
    from litcache.cache.summary import channel_stats, format_summary, summarize
    from litcache.cache.verify import verify_cache

    c = _open(cache)
    s = summarize(c)
    if stats:
        s["channel_stats"] = channel_stats(c, show_progress=not quiet)
    if verify:
        s["verify_problems"] = verify_cache(c, show_progress=not quiet).lines()
    if as_json:
        click.echo(json.dumps(s, indent=2))
    else:
        click.echo(format_summary(s))
        if stats:
            for name, st in s["channel_stats"].items():
                click.echo(f"{name} per-channel mean: " + " ".join(f"{v:.3f}" for v in st["mean"]))
        if verify:
            click.echo(
                "verify: "
                + (
                    "all units match their checksums"
                    if not s["verify_problems"]
                    else "\n  ".join(["PROBLEMS:", *s["verify_problems"]])
                )
            )
    if verify and s["verify_problems"]:
        sys.exit(1)


@click.command("verify")
@cache_argument()
@teacher_option("Also recompute rows with the cache's teacher.")
@click.option(
    "--fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.01,
    show_default=True,
    help="Fraction of the rows the teacher recomputes (random, seeded).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the rows recomputed.")
@click.option("--device", default="auto", show_default=True, help="Where the teacher runs (auto: cuda if present).")
@data_option(
    "With --teacher, the data the cache was extracted from, when it keeps no pixels (store.input=crc32): the "
    "rows' views are made again from it. Default: the pipeline's data.source."
)
@json_option()
@pipeline_options()
@quiet_option()
@handle_errors
def verify_cmd(
    cache: str,
    teacher: str | None,
    fraction: float,
    seed: int,
    device: str,
    data: str | None,
    as_json: bool,
    pipeline: str,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Check a cache: every unit against its checksum, the manifest's invariants, and (with --teacher) a random
    fraction of the rows recomputed and compared within the store's rounding. Exits 1 when anything is wrong.

    \b
    Examples:
      litcache verify runs/cache.zarr
      litcache verify runs/cache.zarr --teacher runs/teacher.pt --fraction 0.05 --json
    """
    from litcache.cache.verify import verify_cache

    cfg = resolve(pipeline, overrides, data)  # a pipeline that names the teacher's factory lets it be built
    show_progress = not quiet and not as_json
    if teacher is None:
        report = verify_cache(_open(cache), show_progress=show_progress)
    else:
        from litcache.device import resolve_device
        from litcache.extract.recompute import verify_with_teacher

        report = verify_with_teacher(
            _open(cache),
            teacher,
            fraction=fraction,
            seed=seed,
            device=resolve_device(device),
            trusted=cfg.factories(),
            show_progress=show_progress,
            data=cfg.data,
        )
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "problems": report.problems, "checked": report.checked}, indent=2))
    else:
        for line in report.lines():
            click.echo(line)
        checked = ", ".join(f"{k} {v}" for k, v in report.checked.items() if not isinstance(v, dict))
        click.echo(f"{cache}: " + ("OK" if report.ok else f"{len(report.problems)} PROBLEMS") + f" ({checked})")
    if not report.ok:
        sys.exit(1)
