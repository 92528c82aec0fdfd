"""Stage two: train students from the cache. The teacher is never loaded (except by the online baseline).

One objective, :class:`LitObjective`, covers every mode:

- cached LIT (``train_sections``): each student section k maps the teacher's boundary k-1 to boundary k
  (IR loss), optionally combined with KD as β·KD + (1−β)·ΣIR;
- the KD pass (``train_end_to_end`` from trained sections): the assembled student against the cached logits;
- baselines for honest comparison, same trainer: *online LIT* (``teacher=`` computes the targets in memory
  every step, as LIT's reference code does), *KD only* (end to end from a fresh student) and *from scratch*
  (KD with α = 0, i.e. cross-entropy on the labels).

The student's stem and head (everything outside its sections) are copied from the teacher parts the cache holds
and frozen, as in LIT (:mod:`litcache.students`); the loss of one batch is :class:`litcache.objective.LitObjective`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from litcache.cache.reader import Cache, open_cache
from litcache.config import OptimizerSettings, PipelineConfig, save_resolved
from litcache.device import resolve_device
from litcache.errors import CheckpointError, CompatibilityError, ConfigError
from litcache.models import SectionedModel, check_compatible, describe, probe_boundaries
from litcache.models.checkpoint import (
    atomic_torch_save,
    finished_epochs,
    load_teacher,
    made_by,
    read_weights_file,
    save_model,
    saved_epochs,
)
from litcache.outputs import Claim, append_line, claim_file, claim_folder, hint, keep_lines, keeping, say
from litcache.train.distributed import init_distributed, is_main_process, wrap_ddp
from litcache.train.loop import train_one_epoch
from litcache.train.monitor import Monitor, monitored
from litcache.train.objective import LitObjective
from litcache.train.optim import build_optimizer, build_scheduler
from litcache.train.stream import CacheStream
from litcache.train.students import assemble, build_student, cache_identity, save_section, section_file

log = logging.getLogger(__name__)


KD_SIDECARS = (".config.yaml", ".metrics.jsonl", ".tensorboard", ".train-state.pt")  # beside a kd checkpoint


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    append_line(path, json.dumps(record))  # one short O_APPEND write: safe beside other --section processes


def _section_outputs(section: int | None) -> tuple[str, ...]:
    """What one train-sections process writes into its folder (all sections, or section K beside others)."""
    if section is None:
        return ("section-s*.pt", "train-state-all.pt", "config.yaml", "metrics.jsonl", "tensorboard/all")
    return (
        f"section-s{section}.pt",
        f"train-state-s{section}.pt",
        f"config-s{section}.yaml",
        f"tensorboard/s{section}",
    )


def _claim(claim: Any, path: Path, *args: Any, resume: bool, **kwargs: Any) -> Claim:
    """The output policy's claim (:mod:`litcache.outputs`), made by rank 0 alone under torchrun."""
    if os.environ.get("RANK", "0") != "0":
        return Claim(path, "", folder=False, resuming=resume)
    return claim(path, *args, resume=resume, **kwargs)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _keeping(
    state_path: Path, epochs: int, command: str, resume: bool, metrics: Path, tags: list[str] | None = None
) -> Iterator[None]:
    """Around a stage's epochs: on resume, drop the log records of the epochs it trains again and say what it
    skips; a full disk or Ctrl-C says what is kept and how to continue (:func:`litcache.outputs.keeping`)."""
    if resume and os.environ.get("RANK", "0") == "0":
        start = finished_epochs(state_path)
        if start:
            say(f"resuming {command}: {saved_epochs(state_path, epochs)} (skipped)")
        # the log records of epochs that are trained again (finished, but not saved in the state) go
        keep_lines(metrics, lambda r: r.get("epoch", 0) < start or (tags is not None and r.get("sections") != tags))
    with keeping(state_path, lambda: saved_epochs(state_path, epochs), f"continue with {hint(command)}"):
        yield


def _fit(
    objective: LitObjective,
    stream: CacheStream,
    trainable: list[nn.Parameter],
    opt_cfg: OptimizerSettings,
    epochs: int,
    device: torch.device,
    state_path: Path,
    resume: bool,
    on_epoch: Any,
    desc: str,
    show_progress: bool,
    first_epoch: int = 0,
    monitor: Monitor | None = None,
    frozen_mode: str = "eval",
) -> list[dict[str, Any]]:
    """The epoch loop with a resumable training state, shared by every mode.

    Epoch e of this stage is epoch ``first_epoch + e`` of the run: the stream reads that epoch's view and order,
    so a stage that follows another (the KD pass after the sections) reads the views the first one did not.
    ``monitor`` (main process only) sees every step and every epoch record. ``frozen_mode``: the mode of the
    student's frozen stem and head (see ``SectionedModel.set_train_mode``).
    """
    batches = [stream.num_batches(e) for e in range(first_epoch, first_epoch + epochs)]  # per epoch of the stage
    optimizer = build_optimizer(trainable, opt_cfg)
    scheduler = build_scheduler(optimizer, opt_cfg, batches)
    # what a training state must match to be resumed: the cache it learned from, the student, the schedule
    identity = {
        "cache": cache_identity(stream.cache),
        "model": objective.student.spec,
        "epochs": epochs,
        "first_epoch": first_epoch,
    }
    start = 0
    if resume and state_path.is_file():
        state = _resumable_state(state_path, identity)
        objective.student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"] + 1
        log.info("resuming from %s at epoch %d", state_path, start)
    model = wrap_ddp(objective, device)  # every rank gets the same batch count, so DDP never hangs
    records = []
    for epoch in range(start, epochs):
        objective.student.set_train_mode(frozen_mode)

        def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return model({k: v.to(device, non_blocking=True) for k, v in batch.items()})

        run_epoch = first_epoch + epoch
        rec = train_one_epoch(
            step,
            optimizer,
            scheduler,
            stream.epoch(run_epoch),
            total=batches[epoch],
            desc=f"{desc} {epoch + 1}/{epochs}",
            show_progress=show_progress,
            monitor=monitor,
            first_step=sum(batches[:epoch]),
        )
        lr = float(scheduler.get_last_lr()[0])
        rec = {"epoch": epoch, "run_epoch": run_epoch, "view": stream.view(run_epoch), **rec, "lr": lr}
        records.append(rec)
        if not is_main_process():
            continue
        on_epoch(rec)
        if monitor is not None:
            monitor.on_epoch(run_epoch, rec)
        atomic_torch_save(
            {
                **identity,
                "epoch": epoch,
                "student": objective.student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            state_path,
        )
    return records


def _resumable_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The training state at ``path``, refused (with what differs) unless it continues this very run."""
    state = read_weights_file(path)
    if not isinstance(state, dict) or "student" not in state:
        raise CheckpointError(f"{path} is not a litcache training state: start again with --overwrite")
    if state.get("cache") != identity["cache"]:
        raise CompatibilityError(
            f"{path} was trained from another cache (teacher or data fingerprints differ): resume with the cache "
            "it was trained from, or start again with --overwrite"
        )
    if state.get("model") != identity["model"]:
        raise CompatibilityError(
            f"{path} was trained for student {describe(state.get('model') or {'name': '?'})}, this run trains "
            f"{describe(identity['model'])}: resume with the same student, or start again with --overwrite"
        )
    if state["epochs"] != identity["epochs"]:
        raise ConfigError(f"{path} was trained for {state['epochs']} epochs, this run asks {identity['epochs']}")
    if state.get("first_epoch", 0) != identity["first_epoch"]:
        raise ConfigError(
            f"{path} started at epoch {state.get('first_epoch', 0)} of its run, this run starts at "
            f"{identity['first_epoch']}: were the sections retrained since? Start this stage again with --overwrite"
        )
    return state


def _prepare(cfg: PipelineConfig, cache_url: str) -> tuple[Cache, torch.device]:
    cache = open_cache(cache_url)
    cache.require_complete()
    device = init_distributed(resolve_device(cfg.train.device))
    return cache, device


def _load_teacher(cfg: PipelineConfig, path: str | None, cache: Cache, device: torch.device) -> SectionedModel | None:
    """The online baselines' teacher: the pipeline's ``teacher.model`` (a checkpoint of another model is refused,
    naming both, as ``extract`` refuses it), checked against the cache it stands in for."""
    if path is None:
        return None
    m, d = cache.manifest, cfg.data
    classes = m["teacher"]["num_classes"]
    teacher = load_teacher(path, cfg.teacher.model, classes, d.mean, d.std, cfg.factories(), require_spec=True)
    check_compatible(
        cache.boundary_shapes(),
        probe_boundaries(teacher, m["data"]["input_shape"]),
        "the cache",
        f"teacher {path}",
    )
    return teacher.to(device).eval()


def _objective(
    cache: Cache,
    student: SectionedModel,
    sections: list[int],
    beta: float,
    opt: Any,
    teacher: SectionedModel | None,
    labels_only: bool = False,
    ir_running_stats: bool = False,
) -> LitObjective:
    """The objective of a mode, with ``opt``'s temperature and KD weights (labels alone for ``labels_only``)."""
    label_weight, soft_weight = (1.0, 0.0) if labels_only else (opt.label_weight, opt.soft_weight)
    return LitObjective(
        student,
        sections,
        beta=beta,
        temperature=opt.temperature,
        label_weight=label_weight,
        soft_weight=soft_weight,
        teacher=teacher,
        output=cache.output_name,
        b0_stored=cache.b0_stored,
        ir_running_stats=ir_running_stats,
    )


def train_sections(
    cfg: PipelineConfig,
    cache_url: str,
    out: str | Path,
    *,
    student: Any = None,
    section: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    teacher_path: str | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Train student sections from the cache into the folder ``out``; returns one record per epoch.

    ``student`` (a model spec or built-in name) defaults to ``train.student``. All sections train in one pass
    unless ``section`` picks one. ``teacher_path`` switches to online LIT (targets computed by the teacher in
    memory, for the baseline). Writes ``section-sK.pt`` per section, ``metrics.jsonl`` and ``config.yaml``
    (and TensorBoard event files in ``tensorboard/all`` or ``tensorboard/sK``, see :mod:`litcache.monitor`).
    ``out`` follows the output policy (:mod:`litcache.outputs`): what this run writes there is refused when it
    exists, unless ``resume`` continues it or ``overwrite`` replaces it.
    """
    tc = cfg.train
    spec = student or tc.student
    epochs = epochs or tc.epochs
    out = Path(out)
    claim = _claim(claim_folder, out, "train-sections", _section_outputs(section), resume=resume, overwrite=overwrite)
    cache, device = _prepare(cfg, cache_url)
    n_sections = cache.num_sections
    if section is not None and not 1 <= section <= n_sections:
        raise ConfigError(f"--section must be in 1..{n_sections} for this cache, got {section}")
    if section is not None and tc.beta > 0:
        raise ConfigError(
            f"--section trains one section alone, with the IR loss only, but train.beta={tc.beta} asks for the "
            "combined objective, which needs the whole student: add --set train.beta=0"
        )
    sections = [section] if section is not None else list(range(1, n_sections + 1))
    model = build_student(cache, spec, seed=tc.seed).to(device)
    teacher = _load_teacher(cfg, teacher_path, cache, device)
    objective = _objective(cache, model, sections, tc.beta, tc, teacher, ir_running_stats=tc.ir_running_stats)
    stream = CacheStream(
        cache, objective.required_arrays(), cfg.stream, pin_memory=device.type == "cuda", data=cfg.data
    )
    if tc.beta == 0:  # sections not trained here take no gradient (DDP would wait for theirs)
        for k in set(range(1, n_sections + 1)) - set(sections):
            for p in model.section_parameters(k):
                p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    tag = "all" if section is None else f"s{section}"
    claim.take()
    out.mkdir(parents=True, exist_ok=True)  # under torchrun, rank 0 alone takes the claim
    save_resolved(cfg, out / (f"config-{tag}.yaml" if section is not None else "config.yaml"))
    metrics = out / "metrics.jsonl"
    if not resume and metrics.exists() and section is None:
        metrics.unlink()

    def on_epoch(rec: dict[str, Any]) -> None:
        _append_jsonl(
            metrics,
            {"sections": [f"s{k}" for k in sections], "mode": "online-lit" if teacher else "cached-lit", **rec},
        )
        for k in sections:
            # next_epoch: where the run's view counter stands after this epoch; the KD pass continues from it
            path = section_file(out, k)
            save_section(model, k, path, cache, epochs=rec["epoch"] + 1, next_epoch=rec["run_epoch"] + 1)

    state_path, tags = out / f"train-state-{tag}.pt", [f"s{k}" for k in sections]
    with (
        _keeping(state_path, epochs, "train-sections", resume, metrics, tags),
        monitored(cfg.log, out / "tensorboard" / tag, is_main_process(), fresh=not resume) as monitor,
    ):  # one folder per process: --section K side by side
        return _fit(
            objective,
            stream,
            trainable,
            tc,
            epochs,
            device,
            out / f"train-state-{tag}.pt",
            resume,
            on_epoch,
            "sections" if section is None else f"section {section}",
            show_progress,
            monitor=monitor,
        )


def train_end_to_end(
    cfg: PipelineConfig,
    cache_url: str,
    out: str | Path,
    *,
    sections_dir: str | Path | None = None,
    student: Any = None,
    labels_only: bool = False,
    epochs: int | None = None,
    teacher_path: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """The KD pass (from ``sections_dir``), or a baseline from a fresh student: KD only, or ``labels_only``.

    Baselines take their optimiser settings (momentum, weight decay, schedule) from ``cfg.train``, like a LIT
    student's sections, and their rate from ``train.baseline_lr`` (``train.lr`` when unset); the KD pass takes
    them from ``cfg.kd``. The KD pass continues the run's view counter
    where the sections' training stopped (after N section epochs it reads views N, N+1, ...); a baseline starts
    at view 0. Writes a standalone checkpoint ``out`` (architecture + weights, usable without the cache) and
    ``out.metrics.jsonl`` beside it (and TensorBoard event files in ``out.tensorboard/``). ``out`` follows the
    output policy (:mod:`litcache.outputs`): an existing one is refused unless it is a checkpoint ``kd`` wrote and
    ``resume`` continues its run or ``overwrite`` replaces it.
    """
    kc = cfg.kd
    epochs = epochs or kc.epochs
    out = Path(out)
    own = lambda path: made_by(path) == "kd"  # noqa: E731
    claim = _claim(claim_file, out, "kd", KD_SIDECARS, own, resume=resume, overwrite=overwrite, example="student.pt")
    cache, device = _prepare(cfg, cache_url)
    first_epoch = 0
    if sections_dir is not None:
        model, first_epoch = assemble(cache, sections_dir, cfg.factories())
        mode = "lit-kd"
    else:  # baselines train every part, stem and head included, from a fresh initialisation
        model = build_student(cache, student or cfg.train.student, copy_teacher_parts=False, seed=kc.seed)
        mode = "scratch" if labels_only else "kd"
    model.to(device)
    teacher = _load_teacher(cfg, teacher_path, cache, device)
    objective = _objective(cache, model, [], 1.0, kc, teacher, labels_only)
    stream = CacheStream(
        cache, objective.required_arrays(), cfg.stream, pin_memory=device.type == "cuda", data=cfg.data
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    claim.take()
    out.parent.mkdir(parents=True, exist_ok=True)  # under torchrun, rank 0 alone takes the claim
    save_resolved(cfg, out.with_name(out.name + ".config.yaml"))
    metrics = out.with_name(out.name + ".metrics.jsonl")
    if not resume and metrics.exists():
        metrics.unlink()
    # the KD pass fine-tunes trained sections (kd.lr); a baseline learns from scratch (train.baseline_lr)
    opt_cfg = kc if sections_dir is not None else cfg.train.baseline_settings()
    tensorboard = out.with_name(out.name + ".tensorboard")
    keep = functools.partial(_keeping, out.with_name(out.name + ".train-state.pt"), epochs, "kd")
    with keep(resume, metrics), monitored(cfg.log, tensorboard, is_main_process(), fresh=not resume) as monitor:
        records = _fit(
            objective,
            stream,
            trainable,
            opt_cfg,
            epochs,
            device,
            out.with_name(out.name + ".train-state.pt"),
            resume,
            lambda rec: _append_jsonl(metrics, {"mode": mode, **rec}),
            mode,
            show_progress,
            first_epoch,
            monitor,
            frozen_mode=kc.frozen_mode,
        )
    if is_main_process():
        with keep(False, metrics):
            save_model(model.cpu(), out, mode=mode, epochs=epochs, cache=cache_identity(cache), command="kd")
    return records


__all__ = ["train_end_to_end", "train_sections"]
