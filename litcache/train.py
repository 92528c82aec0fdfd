"""Stage two: train students from the cache. The teacher is never loaded (except by the online baseline).

One objective, :class:`LitObjective`, covers every mode:

- cached LIT (``train_sections``): each student section k maps the teacher's boundary k-1 to boundary k
  (IR loss), optionally combined with KD as β·KD + (1−β)·ΣIR;
- the KD pass (``train_end_to_end`` from trained sections): the assembled student against the cached logits;
- baselines for honest comparison, same trainer: *online LIT* (``teacher=`` computes the targets in memory
  every step, as LIT's reference code does), *KD only* (end to end from a fresh student) and *from scratch*
  (KD with α = 0, i.e. cross-entropy on the labels).

The student's stem and head are copied from the teacher parts the cache holds and frozen, as in LIT.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from litcache.checkpoint import atomic_torch_save, load_model, save_model
from litcache.config import PipelineConfig, save_resolved
from litcache.data import to_unit_float
from litcache.distributed import init_distributed, is_main_process, wrap_ddp
from litcache.errors import CheckpointError, CompatibilityError, ConfigError
from litcache.extract import resolve_device
from litcache.loop import train_one_epoch
from litcache.losses import ir_loss, kd_loss, lit_loss
from litcache.models import SectionedModel, build_model, check_compatible, probe_boundaries, section_names
from litcache.optim import build_optimizer, build_scheduler
from litcache.store import Cache, boundary_name, open_cache
from litcache.stream import CacheStream

log = logging.getLogger(__name__)
SECTION_FORMAT = "litcache-section"


def teacher_part_states(cache: Cache) -> dict[str, dict[str, torch.Tensor]]:
    """The teacher's stem and head state dicts, as the cache holds them."""
    parts: dict[str, dict[str, torch.Tensor]] = {"stem": {}, "head": {}}
    for part in parts:
        group = cache.group[f"teacher/{part}"]
        for name, arr in group.arrays():  # type: ignore[union-attr]
            parts[part][name] = torch.from_numpy(np.asarray(arr[...]))
    return parts


def build_student(cache: Cache, arch: str, *, copy_teacher_parts: bool = True, seed: int = 0) -> SectionedModel:
    """A student of ``arch`` that fits the cache; stem and head copied from the teacher and frozen."""
    m = cache.manifest
    torch.manual_seed(seed)
    parts = teacher_part_states(cache)  # read once: the stem's normalisation and, below, the weights
    mean, std = parts["stem"]["0.mean"].flatten().tolist(), parts["stem"]["0.std"].flatten().tolist()
    student = build_model(arch, m["teacher"]["num_classes"], mean, std)
    check_compatible(
        cache.boundary_shapes(),
        probe_boundaries(student, m["data"]["input_shape"]),
        f"the cached teacher ({m['teacher']['arch']}, cache {cache.url})",
        f"student {arch}",
    )
    if copy_teacher_parts:
        student.stem.load_state_dict(parts["stem"])
        student.head.load_state_dict(parts["head"])
        for p in (*student.stem.parameters(), *student.head.parameters()):
            p.requires_grad_(False)
    return student


def set_train_mode(student: SectionedModel) -> None:
    """Train mode for what learns; frozen parts (no trainable parameter) stay in eval mode (BN statistics)."""
    student.train()
    for part in (student.stem, student.head):
        if not any(p.requires_grad for p in part.parameters()):
            part.eval()


@contextlib.contextmanager
def batch_stats_only(module: nn.Module) -> Iterator[None]:
    """Batch norm normalises with the batch's statistics but leaves the running statistics alone.

    The combined objective runs every section twice a step: on the teacher's boundary (IR) and inside the
    student's own forward (KD). Inference sees only the second distribution, so only it may update the
    running statistics; letting both in leaves a blend that fits neither (it cost the combined objective 11.6
    points of CIFAR-10 test accuracy in the quality run, see BENCHMARKS.md).
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False  # in train mode: batch statistics, running buffers neither read nor written
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class LitObjective(nn.Module):
    """Every training mode's loss: ``forward(batch) -> {"loss": total, "ir/s1": ..., "kd": ...}``.

    ``sections`` (1-based) get the IR loss; ``beta > 0`` adds KD on the student's end-to-end logits. Targets
    come from the batch (the cache) unless a ``teacher`` is given (online LIT).
    """

    def __init__(
        self,
        student: SectionedModel,
        sections: Sequence[int],
        beta: float,
        temperature: float,
        label_weight: float,
        soft_weight: float,
        teacher: SectionedModel | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.sections = list(sections)
        self.beta, self.temperature = beta, temperature
        self.label_weight, self.soft_weight = label_weight, soft_weight
        self._teacher = [teacher] if teacher is not None else []  # not a submodule: never trained or synced

    def required_arrays(self) -> list[str]:
        """The cache arrays one step reads (just what the job needs)."""
        if self._teacher:
            return ["input", "rows/label"]
        names = set()
        if 1 in self.sections or self.beta > 0:
            names.add("input")
        for k in self.sections:
            names.update({boundary_name(k), boundary_name(k - 1) if k > 1 else "input"})
        if self.beta > 0:
            names.add("rows/label")
            if self.soft_weight:
                names.add("logits")
        return sorted(names)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = to_unit_float(batch["input"]) if "input" in batch else None
        bounds: list[torch.Tensor] | dict[int, torch.Tensor]  # the teacher's b0..bS, or the cached ones by index
        t_logits: torch.Tensor | None  # None when the batch has no logits (IR only, or labels only)
        if self._teacher:
            assert x is not None, "online LIT reads 'input' (see required_arrays)"
            with torch.no_grad():
                bounds, t_logits = self._teacher[0].forward_boundaries(x)
        else:
            bounds = {
                k: batch[boundary_name(k)].float()
                for k in range(1, self.student.num_sections + 1)
                if boundary_name(k) in batch
            }
            t_logits = batch.get("logits")
            if x is not None and 1 in self.sections:
                with torch.no_grad():
                    bounds[0] = self.student.stem(x)  # the frozen stem is the teacher's
        parts: dict[str, torch.Tensor] = {}
        # with KD in the objective, the end-to-end forward below owns the running statistics (see batch_stats_only)
        with batch_stats_only(self.student.sections) if self.beta > 0 else contextlib.nullcontext():
            for k in self.sections:
                parts[f"ir/s{k}"] = ir_loss(self.student.sections[k - 1](bounds[k - 1]), bounds[k])
        kd = None
        if self.beta > 0:
            labels = batch["rows/label"].long()
            kd = kd_loss(self.student(x), t_logits, labels, self.temperature, self.label_weight, self.soft_weight)
            parts["kd"] = kd
        return {"loss": lit_loss(list(parts.values())[: len(self.sections)], kd, self.beta), **parts}


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:  # one short O_APPEND write: safe beside other --section processes
        f.write(json.dumps(record) + "\n")


def _fit(
    objective: LitObjective,
    stream: CacheStream,
    trainable: list[nn.Parameter],
    opt_cfg: Any,
    epochs: int,
    device: torch.device,
    state_path: Path,
    resume: bool,
    on_epoch: Any,
    desc: str,
    show_progress: bool,
    first_epoch: int = 0,
) -> list[dict[str, Any]]:
    """The epoch loop with a resumable training state, shared by every mode.

    Epoch e of this stage is epoch ``first_epoch + e`` of the run: the stream reads that epoch's view and order,
    so a stage that follows another (the KD pass after the sections) reads the views the first one did not.
    """
    run_epochs = range(first_epoch, first_epoch + epochs)
    optimizer = build_optimizer(trainable, opt_cfg.lr, opt_cfg.momentum, opt_cfg.weight_decay)
    scheduler = build_scheduler(optimizer, opt_cfg.schedule, sum(stream.num_batches(e) for e in run_epochs))
    start = 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["epochs"] != epochs:
            raise ConfigError(f"{state_path} was trained for {state['epochs']} epochs, this run asks {epochs}")
        if state.get("first_epoch", 0) != first_epoch:
            raise ConfigError(
                f"{state_path} started at epoch {state.get('first_epoch', 0)} of its run, this run starts at "
                f"{first_epoch}: were the sections retrained since? Start this stage again without --resume"
            )
        objective.student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"] + 1
        log.info("resuming from %s at epoch %d", state_path, start)
    model = wrap_ddp(objective, device)  # every rank gets the same batch count, so DDP never hangs
    records = []
    for epoch in range(start, epochs):
        set_train_mode(objective.student)

        def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return model({k: v.to(device, non_blocking=True) for k, v in batch.items()})

        run_epoch = first_epoch + epoch
        rec = train_one_epoch(
            step,
            optimizer,
            scheduler,
            stream.epoch(run_epoch),
            total=stream.num_batches(run_epoch),
            desc=f"{desc} {epoch + 1}/{epochs}",
            show_progress=show_progress,
        )
        lr = float(scheduler.get_last_lr()[0])
        rec = {"epoch": epoch, "run_epoch": run_epoch, "view": stream.view(run_epoch), **rec, "lr": lr}
        records.append(rec)
        if not is_main_process():
            continue
        on_epoch(rec)
        atomic_torch_save(
            {
                "epoch": epoch,
                "epochs": epochs,
                "first_epoch": first_epoch,
                "student": objective.student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            state_path,
        )
    return records


def _prepare(cfg: PipelineConfig, cache_url: str, out: Path) -> tuple[Cache, torch.device]:
    cache = open_cache(cache_url)
    cache.require_complete()
    out.mkdir(parents=True, exist_ok=True)
    device = init_distributed(resolve_device(cfg.train.device))
    return cache, device


def _load_teacher(path: str | None, cache: Cache, device: torch.device) -> SectionedModel | None:
    if path is None:
        return None
    teacher, _ = load_model(path)
    check_compatible(
        cache.boundary_shapes(),
        probe_boundaries(teacher, cache.manifest["data"]["input_shape"]),
        "the cache",
        f"teacher {path}",
    )
    return teacher.to(device).eval()


def train_sections(
    cfg: PipelineConfig,
    cache_url: str,
    out: str | Path,
    *,
    student_arch: str | None = None,
    section: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    teacher_path: str | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Train student sections from the cache into the folder ``out``; returns one record per epoch.

    All sections train in one pass unless ``section`` picks one. ``teacher_path`` switches to online LIT
    (targets computed by the teacher in memory, for the baseline). Writes ``section-sK.pt`` per section,
    ``metrics.jsonl`` and ``config.yaml``.
    """
    tc = cfg.train
    arch = student_arch or tc.student
    epochs = epochs or tc.epochs
    out = Path(out)
    cache, device = _prepare(cfg, cache_url, out)
    n_sections = cache.num_sections
    if section is not None and not 1 <= section <= n_sections:
        raise ConfigError(f"--section must be in 1..{n_sections} for this cache, got {section}")
    if section is not None and tc.beta > 0:
        raise ConfigError(
            f"--section trains one section alone, with the IR loss only, but train.beta={tc.beta} asks for the "
            "combined objective, which needs the whole student: add --set train.beta=0"
        )
    sections = [section] if section is not None else list(range(1, n_sections + 1))
    student = build_student(cache, arch, seed=tc.seed).to(device)
    teacher = _load_teacher(teacher_path, cache, device)
    objective = LitObjective(student, sections, tc.beta, tc.temperature, tc.label_weight, tc.soft_weight, teacher)
    stream = CacheStream(cache, objective.required_arrays(), cfg.stream, pin_memory=device.type == "cuda")
    if tc.beta == 0:  # sections not trained here take no gradient (DDP would wait for theirs)
        for k in set(range(1, n_sections + 1)) - set(sections):
            student.sections[k - 1].requires_grad_(False)
    trainable = [p for p in student.parameters() if p.requires_grad]
    tag = "all" if section is None else f"s{section}"
    save_resolved(cfg, out / (f"config-{tag}.yaml" if section is not None else "config.yaml"))
    metrics = out / "metrics.jsonl"
    if not resume and metrics.exists() and section is None:
        metrics.unlink()
    names = section_names(n_sections)

    def on_epoch(rec: dict[str, Any]) -> None:
        _append_jsonl(
            metrics,
            {"sections": [names[k - 1] for k in sections], "mode": "online-lit" if teacher else "cached-lit", **rec},
        )
        for k in sections:
            # next_epoch: where the run's view counter stands after this epoch; the KD pass continues from it
            path = out / f"section-{names[k - 1]}.pt"
            save_section(student, k, path, cache, epochs=rec["epoch"] + 1, next_epoch=rec["run_epoch"] + 1)

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
    )


def cache_identity(cache: Cache) -> dict[str, str]:
    m = cache.manifest
    return {"teacher": m["teacher"]["fingerprint"], "data": m["data"]["fingerprint"]}


def save_section(student: SectionedModel, k: int, path: Path, cache: Cache, **meta: Any) -> None:
    atomic_torch_save(
        {
            "format": SECTION_FORMAT,
            "arch": student.arch,
            "section": k,
            "state_dict": {n: t.detach().cpu() for n, t in student.sections[k - 1].state_dict().items()},
            "cache": cache_identity(cache),
            "meta": meta,
        },
        path,
    )


def assemble_student(cache: Cache, sections_dir: str | Path, arch: str | None = None) -> SectionedModel:
    """The student whose sections were trained into ``sections_dir`` (by one or several processes)."""
    return _assemble(cache, sections_dir, arch)[0]


def _assemble(cache: Cache, sections_dir: str | Path, arch: str | None) -> tuple[SectionedModel, int]:
    """The assembled student, and the run epoch its sections' training reached (the latest of them)."""
    sections_dir = Path(sections_dir)
    if not sections_dir.is_dir():
        raise CheckpointError(f"no sections folder {sections_dir}: run `litcache train-sections -o {sections_dir}`")
    names = section_names(cache.num_sections)
    records = []
    for k, name in enumerate(names, start=1):
        path = sections_dir / f"section-{name}.pt"
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: train it with `litcache train-sections --section {k} -o {sections_dir}`"
            )
        rec = torch.load(path, map_location="cpu", weights_only=True)
        if rec.get("format") != SECTION_FORMAT:
            raise CheckpointError(f"{path} is not a litcache section checkpoint")
        if rec["cache"] != cache_identity(cache):
            raise CompatibilityError(f"{path} was trained from another cache (teacher or data differ)")
        records.append(rec)
    archs = {r["arch"] for r in records}
    if len(archs) != 1 or (arch and arch not in archs):
        raise CompatibilityError(f"sections in {sections_dir} are of architectures {sorted(archs)}, expected one")
    student = build_student(cache, records[0]["arch"])
    for k, rec in enumerate(records, start=1):
        student.sections[k - 1].load_state_dict(rec["state_dict"])
    meta = [r.get("meta", {}) for r in records]
    return student, max(int(m.get("next_epoch", m.get("epochs", 0))) for m in meta)


def train_end_to_end(
    cfg: PipelineConfig,
    cache_url: str,
    out: str | Path,
    *,
    sections_dir: str | Path | None = None,
    student_arch: str | None = None,
    labels_only: bool = False,
    epochs: int | None = None,
    teacher_path: str | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """The KD pass (from ``sections_dir``), or a baseline from a fresh student: KD only, or ``labels_only``.

    Baselines take their optimiser settings (lr, momentum, weight decay, schedule) from ``cfg.train``, like a
    LIT student's sections; the KD pass takes them from ``cfg.kd``. The KD pass continues the run's view counter
    where the sections' training stopped (after N section epochs it reads views N, N+1, ...); a baseline starts
    at view 0. Writes a standalone checkpoint ``out`` (architecture + weights, usable without the cache) and
    ``out.metrics.jsonl`` beside it.
    """
    kc = cfg.kd
    epochs = epochs or kc.epochs
    out = Path(out)
    cache, device = _prepare(cfg, cache_url, out.parent)
    first_epoch = 0
    if sections_dir is not None:
        student, first_epoch = _assemble(cache, sections_dir, student_arch)
        mode = "lit-kd"
    else:  # baselines train every part, stem and head included, from a fresh initialisation
        student = build_student(cache, student_arch or cfg.train.student, copy_teacher_parts=False, seed=kc.seed)
        mode = "scratch" if labels_only else "kd"
    student.to(device)
    teacher = _load_teacher(teacher_path, cache, device)
    # from scratch: cross-entropy on the labels alone
    label_weight, soft_weight = (1.0, 0.0) if labels_only else (kc.label_weight, kc.soft_weight)
    objective = LitObjective(student, [], 1.0, kc.temperature, label_weight, soft_weight, teacher)
    arrays = ["input", "rows/label"] if labels_only or teacher else objective.required_arrays()
    stream = CacheStream(cache, arrays, cfg.stream, pin_memory=device.type == "cuda")
    trainable = [p for p in student.parameters() if p.requires_grad]
    save_resolved(cfg, out.with_name(out.name + ".config.yaml"))
    metrics = out.with_name(out.name + ".metrics.jsonl")
    if not resume and metrics.exists():
        metrics.unlink()
    # the KD pass fine-tunes trained sections (kd.lr); a baseline learns from scratch with the students' train.lr
    opt_cfg = kc if sections_dir is not None else cfg.train
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
    )
    if is_main_process():
        save_model(student.cpu(), out, mode=mode, epochs=epochs, cache=cache_identity(cache))
    return records


__all__ = [
    "LitObjective",
    "assemble_student",
    "build_student",
    "train_end_to_end",
    "train_sections",
]
