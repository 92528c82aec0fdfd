"""``litcache pipelines``, ``run`` and ``quickstart``: the built-in pipelines, and whole runs of one."""

from __future__ import annotations

import click

from litcache.cli.options import (
    data_option,
    handle_errors,
    limit_option,
    output_option,
    overwrite_option,
    pipeline_options,
    quiet_option,
    resolve,
    set_option,
    teacher_option,
    test_limit_option,
)
from litcache.config import builtin_pipelines, load_pipeline
from litcache.errors import LitcacheError

OVERWRITE_RUN = "Replace the run in DIR (what run/quickstart wrote there; nothing else) instead of resuming it."
# the quickstart's training images: its whole run estimated at 6-7 minutes on 2 idle cores
# (benchmarks/quickstart_seeds.py times it: BENCHMARKS.md, "The quickstart")
QUICKSTART_SAMPLES = 10_000


@click.command("pipelines")
@click.argument("name", required=False)
def pipelines_cmd(name: str | None) -> None:
    """List the built-in pipelines, or print one resolved (defaults plus its overrides).

    \b
    Example:  litcache pipelines tiny
    """
    import yaml

    if name is None:
        for pipeline in builtin_pipelines():
            desc = load_pipeline(pipeline).description
            click.echo(f"{pipeline:<32} {desc}")
        return
    try:
        click.echo(yaml.safe_dump(load_pipeline(name).to_dict(), sort_keys=False), nl=False)
    except LitcacheError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("run")
@pipeline_options()
@data_option()
@output_option("DIR", "Folder for every artifact of the run.")
@teacher_option("Use this teacher instead of training one.")
@limit_option()
@test_limit_option("Evaluate on the first N test samples only.")
@click.option("--baselines", is_flag=True, help="Also train each student from scratch with the same budget.")
@overwrite_option(OVERWRITE_RUN)
@quiet_option()
@handle_errors
def run_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    data: str | None,
    output: str,
    teacher: str | None,
    limit: int | None,
    test_limit: int | None,
    baselines: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Run a whole pipeline: teacher, one cache, every student it names (sections + KD), evaluation.

    \b
    Example (three students from one ResNet-110 teacher cache):
      litcache run -p cifar10-resnet110-students -d ../shared/data/cifar10 -o runs/students
    The same command run again resumes the run (finished stages are skipped); other settings are refused.
    """
    from litcache.recipe import format_results, run_pipeline

    cfg = resolve(pipeline, overrides, data)
    results = run_pipeline(
        cfg,
        output,
        teacher=teacher,
        limit=limit,
        test_limit=test_limit,
        baselines=baselines,
        overwrite=overwrite,
        show_progress=not quiet,
    )
    click.echo(format_results(results))


@click.command("quickstart")
@data_option()
@output_option("DIR", "Folder for every artifact (with a README of what each file is).", default="litcache-quickstart")
@click.option(
    "--samples",
    type=click.IntRange(min=100),
    default=QUICKSTART_SAMPLES,
    show_default=True,
    help="Training samples used (the first N of the train split).",
)
@set_option("Override a config value.")
@overwrite_option(OVERWRITE_RUN)
@quiet_option()
@handle_errors
def quickstart_cmd(
    data: str | None, output: str, samples: int, overrides: tuple[str, ...], overwrite: bool, quiet: bool
) -> None:
    """The whole method in minutes on a CPU: a shipped teacher, its cache, a student by LIT, KD only and scratch.

    \b
    The teacher is a ResNet-56 trained on CIFAR-10 (84.08 %, shipped with litcache); the student a ResNet-20,
    whose sections hold three blocks each, trained 3 epochs three ways: LIT (IR sections, then a KD pass), KD
    only and from scratch, on the first --samples training images. With another teacher.model (--set), the
    teacher is trained first, as the pipeline says.
    By default CIFAR-10 is downloaded through torchvision (about 170 MB, once). Offline, with local shards:
      litcache quickstart --data ../shared/data/cifar10
    Run again, it resumes (finished stages are skipped); with other settings it is refused, naming what differs.
    """
    from litcache.assets import shipped_teacher
    from litcache.recipe import format_results, lit_verdict, run_pipeline

    cfg = resolve("quickstart", overrides, data)
    shipped = shipped_teacher(cfg.teacher.model)  # None: another teacher.model was asked for, and is trained
    results = run_pipeline(
        cfg,
        output,
        teacher=str(shipped) if shipped else None,
        limit=samples,
        baselines=True,
        kd_baseline=True,
        overwrite=overwrite,
        command="quickstart",
        show_progress=not quiet,
    )
    click.echo(format_results(results))
    for line in lit_verdict(results):
        click.echo(f"\n{line}")
    click.echo(f"\nEvery artifact is in {output}/ (see {output}/README.md); plots: litcache report {output}")
