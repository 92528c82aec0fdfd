"""``litcache extract``: stage one, the teacher's pass that writes the cache (in one process or on dask)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import click

from litcache.cli.options import (
    data_option,
    handle_errors,
    limit_option,
    output_option,
    pipeline_options,
    quiet_option,
    resolve,
    resume_option,
    teacher_option,
)
from litcache.config import PipelineConfig


@click.command("extract")
@pipeline_options()
@teacher_option("Teacher checkpoint (litcache format).", required=True)
@data_option()
@output_option("CACHE", "Cache path or fsspec URL (s3://...).")
@click.option("--views", type=click.IntRange(min=1), default=None, help="Views per sample (extract.views).")
@limit_option()
@resume_option("Continue an interrupted extraction into CACHE.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the cache at CACHE first (only a litcache cache, once the teacher and the data have loaded).",
)
@click.option(
    "--max-units",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after writing this many units (a time-boxed job; --resume continues).",
)
@click.option(
    "--dask",
    "scheduler",
    default=None,
    metavar="ADDRESS",
    help="Spread the units over a dask.distributed cluster: its scheduler address (tcp://host:8786), or "
    "local:N for N worker processes on this machine. Paths must mean the same to every worker.",
)
@click.option(
    "--units-per-task",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Units in one dask task (with --dask).",
)
@quiet_option()
@handle_errors
def extract_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    teacher: str,
    data: str | None,
    output: str,
    views: int | None,
    limit: int | None,
    resume: bool,
    overwrite: bool,
    max_units: int | None,
    scheduler: str | None,
    units_per_task: int,
    quiet: bool,
) -> None:
    """Run the teacher once over every (sample, view) and write the cache.

    \b
    Examples:
      litcache extract -p tiny -t runs/teacher.pt -d ../shared/data/cifar10 -o runs/cache.zarr --views 2
      litcache extract -p cifar10-resnet110-resnet56 -t teacher.pt -o s3://bucket/cache.zarr --dask tcp://head:8786
    """
    cfg = resolve(pipeline, overrides, data, **{"extract.views": views})
    if scheduler is None:
        from litcache.extract.run import extract

        s = extract(
            cfg,
            teacher,
            output,
            limit=limit,
            resume=resume,
            overwrite=overwrite,
            max_units=max_units,
            show_progress=not quiet,
        )
    else:
        if max_units is not None:
            raise click.UsageError("--max-units is for one process; with --dask, stop the cluster and --resume")
        s = _extract_on_dask(cfg, teacher, output, scheduler, limit, resume, overwrite, units_per_task, quiet)
    state = "complete" if s["complete"] else f"INCOMPLETE ({s['units_total']} units in all; --resume continues)"
    ratio = s["ratio"]
    click.echo(
        f"{output}: {s['units_written']} units written in {s['seconds']:.1f}s, "
        f"{s['stored_bytes'] / 1e6:.1f} MB stored (ratio {ratio:.2f}), {state}"
    )


def _extract_on_dask(
    cfg: PipelineConfig,
    teacher: str,
    output: str,
    scheduler: str,
    limit: int | None,
    resume: bool,
    overwrite: bool,
    units_per_task: int,
    quiet: bool,
) -> dict[str, Any]:
    import distributed

    from litcache.extract.cluster import extract_on_dask

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # dask logs every connection at INFO: -v shows it
        logging.getLogger("distributed").setLevel(logging.WARNING)

    if scheduler.startswith("local:"):
        workers = scheduler.removeprefix("local:")
        if not workers.isdigit() or int(workers) < 1:
            raise click.BadParameter(f"expected local:N with N >= 1, got {scheduler!r}", param_hint="--dask")
        cluster: Any = distributed.LocalCluster(
            n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    else:
        cluster = scheduler
    with contextlib.ExitStack() as stack:
        if not isinstance(cluster, str):
            stack.enter_context(cluster)
        client = stack.enter_context(distributed.Client(cluster))
        return extract_on_dask(
            cfg,
            teacher,
            output,
            client,
            limit=limit,
            resume=resume,
            overwrite=overwrite,
            units_per_task=units_per_task,
            show_progress=not quiet,
        )
