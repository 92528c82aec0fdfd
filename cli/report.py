"""``litcache report``: plots and a markdown summary of runs, checkpoints and caches."""

from __future__ import annotations

from typing import Any

import click

from litcache.cli.options import (
    data_option,
    handle_errors,
    output_option,
    overwrite_option,
    pipeline_options,
    quiet_option,
    resolve,
    test_limit_option,
)


@click.command("report")
@click.argument("targets", nargs=-1, required=True, metavar="RUN|CACHE...")
@output_option("DIR", "Folder for report.md, report.json and the PNG plots.", default="report")
@data_option("Evaluate the checkpoints that no results.json scored on this data's test split (as `litcache evaluate`).")
@test_limit_option("With --data: evaluate on the first N test samples only.")
@click.option(
    "--sample-units",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    metavar="N",
    help="Units of each cache read for its boundary statistics (one at a time; never the whole cache).",
)
@click.option(
    "--input-shape",
    default=None,
    metavar="C,H,W",
    help="Input shape for counting MACs. Default: the cache's input shape (3,32,32 without a cache).",
)
@pipeline_options()
@overwrite_option("Replace the report in DIR (what report wrote there; nothing else).")
@quiet_option()
@handle_errors
def report_cmd(
    targets: tuple[str, ...],
    output: str,
    data: str | None,
    test_limit: int | None,
    sample_units: int,
    input_shape: str | None,
    pipeline: str,
    overrides: tuple[str, ...],
    overwrite: bool,
    quiet: bool,
) -> None:
    """Plots and a markdown summary of runs (folders of `run`, `quickstart` or the separate commands, metrics
    files, checkpoints) and caches: losses and learning rate per epoch, model sizes (parameters, MACs),
    compression, test scores, seconds per stage, cache size and per-boundary statistics. Needs matplotlib
    (pip install 'litcache[report]'). The pipeline (-p, --set) names your own model factories and, with
    --data, the evaluation settings.

    \b
    Examples:
      litcache report runs/quickstart -o report/
      litcache report runs/cached-lit runs/online-lit -o report/   # several runs on one plot
      litcache report runs/cache.zarr -o report/cache               # a cache's boundary statistics
      litcache report runs/sections runs/student.pt runs/cache.zarr -d ../shared/data/cifar10 -o report/
    """
    from litcache.report import build_report

    shape = None
    if input_shape is not None:
        try:
            shape = tuple(int(d) for d in input_shape.split(","))
        except ValueError:
            raise click.BadParameter(f"expected C,H,W such as 3,32,32, got {input_shape!r}") from None
    cfg = resolve(pipeline, overrides, data)
    evaluate = None
    if data is not None:
        from litcache.data import check_source
        from litcache.train.supervised import evaluate_checkpoint

        check_source(cfg.data, "test")  # a missing data folder is refused before any work, not noted per model

        def evaluate(path: str) -> dict[str, Any]:
            return evaluate_checkpoint(path, cfg, test_limit)

    report = build_report(
        targets,
        output,
        evaluate=evaluate,
        trusted=cfg.factories(),
        sample_units=sample_units,
        input_shape=shape,
        overwrite=overwrite,
        show_progress=not quiet,
    )
    click.echo(
        f"{output}/report.md: {len(report['models'])} models, {len(report['stages'])} training logs, "
        f"{len(report['caches'])} caches, {len(report['plots']) + len(report['caches'])} plots"
    )
