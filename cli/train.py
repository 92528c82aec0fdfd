"""``litcache train-teacher``, ``train-sections``, ``kd`` and ``evaluate``: training and scoring models.

Stage two (train-sections, kd) reads the cache and never loads stage one: nothing here imports
``litcache.extract``, and the library is imported inside each command.
"""

from __future__ import annotations

import json
import os

import click

from litcache.cli.options import (
    cache_option,
    data_option,
    epochs_option,
    handle_errors,
    json_option,
    limit_option,
    model_option,
    output_option,
    overwrite_option,
    pipeline_options,
    quiet_option,
    resolve,
    resume_option,
    teacher_option,
)

REGEN_DATA = (
    "The data the cache was extracted from, when the cache keeps no pixels (store.input=crc32): its views are made "
    "again from it. Default: the pipeline's data.source."
)


@click.command("train-teacher")
@pipeline_options()
@data_option()
@output_option("CKPT", "Where to write the teacher checkpoint.")
@epochs_option("teacher.epochs")
@model_option("--model", "teacher.model", "The teacher to train")
@limit_option()
@resume_option("Continue an interrupted run from CKPT.train-state.pt.")
@overwrite_option("Replace CKPT (a checkpoint train-teacher wrote) and what its run left beside it.")
@quiet_option()
@handle_errors
def train_teacher_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    data: str | None,
    output: str,
    epochs: int | None,
    model: str | None,
    limit: int | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a teacher with the standard CIFAR recipe (for users without a checkpoint).

    \b
    Example:  litcache train-teacher -p tiny -d ../shared/data/cifar10 -o runs/teacher.pt --epochs 2
    After a crash, the same command with --resume continues from the last finished epoch. An existing CKPT is
    never replaced without --overwrite, and only when train-teacher wrote it.
    """
    from litcache.train.supervised import train_teacher

    cfg = resolve(pipeline, overrides, data, **{"teacher.epochs": epochs, "teacher.model": model})
    record = train_teacher(cfg, output, limit=limit, resume=resume, overwrite=overwrite, show_progress=not quiet)
    loss = f" (last epoch loss {record['loss']:.4f})" if "loss" in record else " (already trained)"
    click.echo(f"teacher {cfg.teacher.model.describe()} -> {output}{loss}")


@click.command("train-sections")
@pipeline_options()
@cache_option()
@data_option(REGEN_DATA)
@output_option("DIR", "Folder for section checkpoints and metrics.")
@model_option("--student", "train.student", "The student")
@click.option(
    "--section",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Train only section K (run several processes side by side); default: all in one pass.",
)
@epochs_option("train.epochs")
@resume_option("Continue from the last epoch checkpoint in DIR.")
@overwrite_option("Replace what train-sections wrote in DIR before (nothing else there).")
@teacher_option("Online LIT baseline: compute targets with this teacher in memory instead of the cache.")
@quiet_option()
@handle_errors
def train_sections_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    cache_url: str,
    data: str | None,
    output: str,
    student: str | None,
    section: int | None,
    epochs: int | None,
    resume: bool,
    overwrite: bool,
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
    from litcache.train.trainer import train_sections

    cfg = resolve(pipeline, overrides, data, **{"train.student": student})
    records = train_sections(
        cfg,
        cache_url,
        output,
        section=section,
        epochs=epochs,
        resume=resume,
        overwrite=overwrite,
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


@click.command("kd")
@pipeline_options()
@cache_option()
@data_option(REGEN_DATA)
@click.option(
    "--student-sections",
    "-s",
    "sections_dir",
    default=None,
    metavar="DIR",
    help="Folder written by `train-sections` (the LIT student to finish).",
)
@output_option("STUDENT", "Standalone student checkpoint to write.")
@epochs_option("kd.epochs")
@click.option("--from-scratch", is_flag=True, help="Baseline: KD only, from a freshly initialised student.")
@click.option("--labels-only", is_flag=True, help="Baseline: from scratch on the labels (implies --from-scratch).")
@model_option("--student", "train.student", "The student of a baseline")
@teacher_option("Online baseline: teacher logits computed in memory instead of read from the cache.")
@resume_option("Continue from the last epoch checkpoint.")
@overwrite_option("Replace STUDENT (a checkpoint kd wrote) and what its run left beside it.")
@quiet_option()
@handle_errors
def kd_cmd(
    pipeline: str,
    overrides: tuple[str, ...],
    cache_url: str,
    data: str | None,
    sections_dir: str | None,
    output: str,
    epochs: int | None,
    from_scratch: bool,
    labels_only: bool,
    student: str | None,
    teacher: str | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
) -> None:
    """A short KD pass of the assembled student on the cached inputs and logits (teacher not loaded).

    \b
    Examples:
      litcache kd -p tiny -c runs/cache.zarr -s runs/sections -o runs/student.pt
      litcache kd -p tiny -c runs/cache.zarr --from-scratch -o runs/kd-only.pt       # KD-only baseline
      litcache kd -p tiny -c runs/cache.zarr --labels-only -o runs/scratch.pt        # from-scratch baseline
    """
    from litcache.train.trainer import train_end_to_end

    if (sections_dir is None) == (not (from_scratch or labels_only)):
        raise click.UsageError("pass --student-sections DIR, or --from-scratch / --labels-only for a baseline")
    cfg = resolve(pipeline, overrides, data, **{"train.student": student})
    records = train_end_to_end(
        cfg,
        cache_url,
        output,
        sections_dir=sections_dir,
        labels_only=labels_only,
        epochs=epochs,
        teacher_path=teacher,
        resume=resume,
        overwrite=overwrite,
        show_progress=not quiet,
    )
    loss = f" (last epoch loss {records[-1]['loss']:.4f})" if records else " (all epochs already trained)"
    click.echo(f"student -> {output}{loss}")


@click.command("evaluate")
@click.option("--model", "-m", "model_path", required=True, metavar="CKPT", help="Teacher or student checkpoint.")
@data_option()
@pipeline_options()
@limit_option()
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="val: the training samples data.holdout keeps out of extraction and training (set it as they were).",
)
@json_option('Print {"accuracy": ..., "samples": ...}.')
@quiet_option()
@handle_errors
def evaluate_cmd(
    model_path: str,
    data: str | None,
    pipeline: str,
    overrides: tuple[str, ...],
    limit: int | None,
    split: str,
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
      litcache evaluate -m student.pt -d ../shared/data/cifar10 --split val --set data.holdout=5000
    """
    from litcache.train.supervised import evaluate_checkpoint

    cfg = resolve(pipeline, overrides, data)
    result = evaluate_checkpoint(model_path, cfg, limit, show_progress=not quiet and not as_json, split=split)
    where = "test samples" if split == "test" else "held-out training samples (data.holdout)"
    if as_json:
        click.echo(json.dumps(result))
    elif "psnr" in result:
        click.echo(
            f"{model_path} ({result['model']}): PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} "
            f"on {result['samples']} {where}"
        )
    else:
        extra = f", top-5 {result['top5']:.4f}" if "top5" in result else ""
        click.echo(
            f"{model_path} ({result['model']}): top-1 {result['accuracy']:.4f}{extra} on {result['samples']} {where}"
        )
