"""The ``litcache`` command: parse, load the pipeline, call one library function, print."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from litcache import __version__
from litcache.config import PipelineConfig, builtin_pipelines, load_pipeline
from litcache.errors import LitcacheError


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a one-line message and exit status 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LitcacheError as exc:
            message = str(exc)
            if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the error's own text
                message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
            raise click.ClickException(message) from exc

    return wrapper


def pipeline_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config value, e.g. --set train.epochs=3 (repeatable).",
    )(fn)
    return click.option(
        "--pipeline",
        "-p",
        default="tiny",
        show_default=True,
        metavar="NAME|FILE",
        help="A built-in pipeline name (see `litcache pipelines`) or a path to a YAML file.",
    )(fn)


def data_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data",
        "-d",
        default=None,
        metavar="SOURCE",
        help="cifar10 / cifar100 (torchvision, downloaded to data.root); a folder, pattern or fsspec URL of "
        "WebDataset shards (train-*.tar, test-*.tar); or an image folder (train/<class>/*.jpg, test/ or val/). "
        "Default: the pipeline's data.source.",
    )(fn)


def limit_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Use only the first N samples of the split (smoke runs, tests).",
    )(fn)


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(fn)


MODEL_KEYS = ("teacher.model", "train.student")  # values are YAML: a built-in name or a {factory: ...} mapping


def resolve(pipeline: str, overrides: tuple[str, ...], data: str | None = None, **extra: Any) -> PipelineConfig:
    """Defaults < pipeline file < --set < the command's own flags (--data, --views, --student, ...)."""
    items = list(overrides)
    if data is not None:
        items.append(f"data.source={json.dumps(data)}")
    for key, value in extra.items():
        if value is not None:
            items.append(f"{key}={value if key in MODEL_KEYS else json.dumps(value)}")
    return load_pipeline(pipeline, items)


def model_option(name: str, key: str, what: str) -> Callable[..., Any]:
    return click.option(
        name,
        default=None,
        metavar="MODEL",
        help=f"{what} (default: {key}): a built-in name (resnet20, resnext29, generator6, ...) or a YAML mapping "
        "such as '{factory: torchvision.models:resnet50, sections: [layer1, layer2, layer3, layer4]}'.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="litcache")
@click.option("--verbose", "-v", is_flag=True, help="Log what the library does (INFO level).")
def main(verbose: bool) -> None:
    """Cache a teacher's intermediate representations once; train LIT students from the cache.

    \b
    A whole run on the tiny pipeline (seconds on a CPU; `litcache run` does it in one command):
      litcache train-teacher -p tiny -d ../shared/data/cifar10 -o runs/teacher.pt
      litcache extract -p tiny --teacher runs/teacher.pt -d ../shared/data/cifar10 -o runs/cache.zarr
      litcache inspect runs/cache.zarr
      litcache train-sections -p tiny -c runs/cache.zarr -o runs/sections
      litcache kd -p tiny -c runs/cache.zarr -s runs/sections -o runs/student.pt
      litcache evaluate -m runs/student.pt -d ../shared/data/cifar10
      litcache report runs -o runs/report
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )


@main.command("pipelines")
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


@main.command("train-teacher")
@pipeline_options
@data_option
@click.option("--output", "-o", required=True, metavar="CKPT", help="Where to write the teacher checkpoint.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override teacher.epochs.")
@model_option("--model", "teacher.model", "The teacher to train")
@limit_option
@click.option("--resume", is_flag=True, help="Continue an interrupted run from CKPT.train-state.pt.")
@quiet_option
@_handle_errors
def train_teacher_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    data: str | None,
    output: str,
    epochs: int | None,
    model: str | None,
    limit: int | None,
    resume: bool,
    quiet: bool,
) -> None:
    """Train a teacher with the standard CIFAR recipe (for users without a checkpoint).

    \b
    Example:  litcache train-teacher -p tiny -d ../shared/data/cifar10 -o runs/teacher.pt --epochs 2
    After a crash, the same command with --resume continues from the last finished epoch.
    """
    from litcache.supervised import train_teacher

    cfg = resolve(pipeline, overrides, data, **{"teacher.epochs": epochs, "teacher.model": model})
    record = train_teacher(cfg, output, limit=limit, resume=resume, show_progress=not quiet)
    click.echo(f"teacher {cfg.teacher.model.describe()} -> {output} (last epoch loss {record['loss']:.4f})")


@main.command("extract")
@pipeline_options
@click.option("--teacher", "-t", required=True, metavar="CKPT", help="Teacher checkpoint (litcache format).")
@data_option
@click.option("--output", "-o", required=True, metavar="CACHE", help="Cache path or fsspec URL (s3://...).")
@click.option("--views", type=click.IntRange(min=1), default=None, help="Views per sample (extract.views).")
@limit_option
@click.option("--resume", is_flag=True, help="Continue an interrupted extraction into CACHE.")
@click.option("--overwrite", is_flag=True, help="Delete an existing cache at CACHE first.")
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
@quiet_option
@_handle_errors
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
        from litcache.extract import extract

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

    from litcache.cluster import extract_on_dask

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


@main.command("inspect")
@click.argument("cache", metavar="CACHE")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.option("--stats", is_flag=True, help="Per-channel statistics of every boundary (dask, whole cache).")
@click.option("--verify", is_flag=True, help="Re-read every unit and check it against its CRC-32.")
@quiet_option
@_handle_errors
def inspect_cmd(cache: str, as_json: bool, stats: bool, verify: bool, quiet: bool) -> None:
    """Summarise a cache: what was cached, how big, whether complete.

    \b
    Examples:
      litcache inspect runs/cache.zarr --json
      litcache inspect runs/cache.zarr --verify --stats     # re-read every unit; per-channel statistics
    """
    from litcache.store import open_cache
    from litcache.summary import channel_stats, format_summary, summarize
    from litcache.verify import verify_cache

    c = open_cache(cache)
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


@main.command("verify")
@click.argument("cache", metavar="CACHE")
@click.option("--teacher", "-t", default=None, metavar="CKPT", help="Also recompute rows with the cache's teacher.")
@click.option(
    "--fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.01,
    show_default=True,
    help="Fraction of the rows the teacher recomputes (random, seeded).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the rows recomputed.")
@click.option("--device", default="auto", show_default=True, help="Where the teacher runs (auto: cuda if present).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@pipeline_options
@quiet_option
@_handle_errors
def verify_cmd(
    cache: str,
    teacher: str | None,
    fraction: float,
    seed: int,
    device: str,
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
    from litcache.extract import resolve_device
    from litcache.store import open_cache
    from litcache.verify import verify_cache

    cfg = resolve(pipeline, overrides)  # a pipeline that names the teacher's factory lets it be built
    report = verify_cache(
        open_cache(cache),
        teacher,
        fraction=fraction,
        seed=seed,
        device=resolve_device(device),
        trusted=cfg.factories(),
        show_progress=not quiet and not as_json,
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


@main.command("train-sections")
@pipeline_options
@click.option("--cache", "-c", "cache_url", required=True, metavar="CACHE", help="Cache written by `extract`.")
@click.option("--output", "-o", required=True, metavar="DIR", help="Folder for section checkpoints and metrics.")
@model_option("--student", "train.student", "The student")
@click.option(
    "--section",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Train only section K (run several processes side by side); default: all in one pass.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override train.epochs.")
@click.option("--resume", is_flag=True, help="Continue from the last epoch checkpoint in DIR.")
@click.option(
    "--teacher",
    "-t",
    default=None,
    metavar="CKPT",
    help="Online LIT baseline: compute targets with this teacher in memory instead of the cache.",
)
@quiet_option
@_handle_errors
def train_sections_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    cache_url: str,
    output: str,
    student: str | None,
    section: int | None,
    epochs: int | None,
    resume: bool,
    teacher: str | None,
    quiet: bool,
) -> None:
    """Train student sections from the cache with the IR loss (the teacher is not loaded).

    \b
    Examples:
      litcache train-sections -p tiny -c runs/cache.zarr -o runs/sections
      litcache train-sections -p tiny -c runs/cache.zarr -o runs/sections --section 2   # one of several GPUs
      litcache train-sections -p tiny -c runs/cache.zarr -o runs/sections --set train.beta=0.75  # LIT combined
    """
    from litcache.train import train_sections

    cfg = resolve(pipeline, overrides, **{"train.student": student})
    records = train_sections(
        cfg,
        cache_url,
        output,
        section=section,
        epochs=epochs,
        resume=resume,
        teacher_path=teacher,
        show_progress=not quiet,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for all
        return
    if records:
        last = records[-1]
        parts = " ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith(("ir/", "kd")))
        click.echo(f"{output}: epoch {last['epoch'] + 1} loss {last['loss']:.4f} {parts}")
    else:
        click.echo(f"{output}: nothing to do (all epochs already trained)")


@main.command("kd")
@pipeline_options
@click.option("--cache", "-c", "cache_url", required=True, metavar="CACHE", help="Cache written by `extract`.")
@click.option(
    "--student-sections",
    "-s",
    "sections_dir",
    default=None,
    metavar="DIR",
    help="Folder written by `train-sections` (the LIT student to finish).",
)
@click.option("--output", "-o", required=True, metavar="STUDENT", help="Standalone student checkpoint to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override kd.epochs.")
@click.option("--from-scratch", is_flag=True, help="Baseline: KD only, from a freshly initialised student.")
@click.option("--labels-only", is_flag=True, help="Baseline: from scratch on the labels (implies --from-scratch).")
@model_option("--student", "train.student", "The student of a baseline")
@click.option(
    "--teacher",
    "-t",
    default=None,
    metavar="CKPT",
    help="Online baseline: teacher logits computed in memory instead of read from the cache.",
)
@click.option("--resume", is_flag=True, help="Continue from the last epoch checkpoint.")
@quiet_option
@_handle_errors
def kd_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    cache_url: str,
    sections_dir: str | None,
    output: str,
    epochs: int | None,
    from_scratch: bool,
    labels_only: bool,
    student: str | None,
    teacher: str | None,
    resume: bool,
    quiet: bool,
) -> None:
    """A short KD pass of the assembled student on the cached inputs and logits (teacher not loaded).

    \b
    Examples:
      litcache kd -p tiny -c runs/cache.zarr -s runs/sections -o runs/student.pt
      litcache kd -p tiny -c runs/cache.zarr --from-scratch -o runs/kd-only.pt       # KD-only baseline
      litcache kd -p tiny -c runs/cache.zarr --labels-only -o runs/scratch.pt        # from-scratch baseline
    """
    from litcache.train import train_end_to_end

    if (sections_dir is None) == (not (from_scratch or labels_only)):
        raise click.UsageError("pass --student-sections DIR, or --from-scratch / --labels-only for a baseline")
    cfg = resolve(pipeline, overrides, **{"train.student": student})
    records = train_end_to_end(
        cfg,
        cache_url,
        output,
        sections_dir=sections_dir,
        labels_only=labels_only,
        epochs=epochs,
        teacher_path=teacher,
        resume=resume,
        show_progress=not quiet,
    )
    loss = f" (last epoch loss {records[-1]['loss']:.4f})" if records else ""
    click.echo(f"student -> {output}{loss}")


@main.command("run")
@pipeline_options
@data_option
@click.option("--output", "-o", required=True, metavar="DIR", help="Folder for every artifact of the run.")
@click.option("--teacher", "-t", default=None, metavar="CKPT", help="Use this teacher instead of training one.")
@limit_option
@click.option(
    "--test-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Evaluate on the first N test samples only.",
)
@click.option("--baselines", is_flag=True, help="Also train each student from scratch with the same budget.")
@quiet_option
@_handle_errors
def run_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    data: str | None,
    output: str,
    teacher: str | None,
    limit: int | None,
    test_limit: int | None,
    baselines: bool,
    quiet: bool,
) -> None:
    """Run a whole pipeline: teacher, one cache, every student it names (sections + KD), evaluation.

    \b
    Example (three students from one ResNet-110 teacher cache):
      litcache run -p cifar10-resnet110-students -d ../shared/data/cifar10 -o runs/students
    """
    from litcache.recipe import format_results, run_pipeline

    cfg = resolve(pipeline, overrides, data)
    results = run_pipeline(
        cfg, output, teacher=teacher, limit=limit, test_limit=test_limit, baselines=baselines, show_progress=not quiet
    )
    click.echo(format_results(results))


@main.command("quickstart")
@data_option
@click.option(
    "--output",
    "-o",
    default="litcache-quickstart",
    show_default=True,
    metavar="DIR",
    help="Folder for every artifact (with a README of what each file is).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=100),
    default=6000,
    show_default=True,
    help="Training samples used (the first N of the train split).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value.")
@quiet_option
@_handle_errors
def quickstart_cmd(data: str | None, output: str, samples: int, overrides: tuple[str, ...], quiet: bool) -> None:
    """The whole method in minutes on a CPU: teacher, cache, LIT student, scratch baseline, table.

    \b
    By default CIFAR-10 is downloaded through torchvision (about 170 MB, once). Offline, with local shards:
      litcache quickstart --data ../shared/data/cifar10
    """
    from litcache.recipe import format_results, run_pipeline

    cfg = resolve("quickstart", overrides, data)
    results = run_pipeline(cfg, output, limit=samples, baselines=True, show_progress=not quiet)
    click.echo(format_results(results))
    click.echo(f"\nEvery artifact is in {output}/ (see {output}/README.md); plots: litcache report {output}")


@main.command("report")
@click.argument("targets", nargs=-1, required=True, metavar="RUN|CACHE...")
@click.option(
    "--output",
    "-o",
    default="report",
    show_default=True,
    metavar="DIR",
    help="Folder for report.md, report.json and the PNG plots.",
)
@click.option(
    "--data",
    "-d",
    default=None,
    metavar="SOURCE",
    help="Evaluate the checkpoints that no results.json scored on this data's test split (as `litcache evaluate`).",
)
@click.option(
    "--test-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --data: evaluate on the first N test samples only.",
)
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
@pipeline_options
@quiet_option
@_handle_errors
def report_cmd(
    targets: tuple[str, ...],
    output: str,
    data: str | None,
    test_limit: int | None,
    sample_units: int,
    input_shape: str | None,
    pipeline: str,
    overrides: tuple[str, ...],
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
        from litcache.supervised import evaluate_checkpoint

        def evaluate(path: str) -> dict[str, Any]:
            return evaluate_checkpoint(path, cfg, test_limit)

    report = build_report(
        targets,
        output,
        evaluate=evaluate,
        trusted=cfg.factories(),
        sample_units=sample_units,
        input_shape=shape,
        show_progress=not quiet,
    )
    click.echo(
        f"{output}/report.md: {len(report['models'])} models, {len(report['stages'])} training logs, "
        f"{len(report['caches'])} caches, {len(report['plots']) + len(report['caches'])} plots"
    )


@main.command("evaluate")
@click.option("--model", "-m", "model_path", required=True, metavar="CKPT", help="Teacher or student checkpoint.")
@data_option
@pipeline_options
@limit_option
@click.option("--json", "as_json", is_flag=True, help='Print {"accuracy": ..., "samples": ...}.')
@quiet_option
@_handle_errors
def evaluate_cmd(
    model_path: str,
    data: str | None,
    pipeline: str,
    overrides: tuple[str, ...],
    limit: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Test-split accuracy of any checkpoint (top-1; top-5 too with more than 10 classes), or the PSNR and SSIM of
    an image-to-image model. A plain state dict (.pt/.pth/.safetensors) is evaluated as the pipeline's
    teacher.model.

    \b
    Examples:
      litcache evaluate -m runs/student.pt -d ../shared/data/cifar10 --json
      litcache evaluate -m resnet50.pth -d shards/ --set 'teacher.model={factory: torchvision.models:resnet50}'
    """
    from litcache.supervised import evaluate_checkpoint

    cfg = resolve(pipeline, overrides, data)
    result = evaluate_checkpoint(model_path, cfg, limit, show_progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(result))
    elif "psnr" in result:
        click.echo(
            f"{model_path} ({result['model']}): PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} "
            f"on {result['samples']} test samples"
        )
    else:
        extra = f", top-5 {result['top5']:.4f}" if "top5" in result else ""
        click.echo(
            f"{model_path} ({result['model']}): top-1 {result['accuracy']:.4f}{extra} "
            f"on {result['samples']} test samples"
        )


if __name__ == "__main__":
    main()
