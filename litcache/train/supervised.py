"""Plain supervised training of a teacher (the standard CIFAR recipe), for users without a checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from litcache.config import DataConfig, PipelineConfig, save_resolved
from litcache.data import ImageSet, iter_views, load_images, split_classes, to_unit_float
from litcache.device import resolve_device
from litcache.errors import CheckpointError, ConfigError
from litcache.models import build_model, describe, probe
from litcache.models.checkpoint import (
    atomic_torch_save,
    load_teacher,
    made_by,
    read_weights_file,
    save_model,
    saved_epochs,
)
from litcache.outputs import Claim, append_line, claim_file, hint, keep_lines, keeping, say
from litcache.train.loop import evaluate, train_one_epoch
from litcache.train.monitor import open_monitor
from litcache.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


def augmented_batches(
    images: ImageSet, cfg: DataConfig, seed: int, epoch: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of epoch ``epoch``, each sample under the augmented view ``epoch + 1`` (made ahead)."""
    order = np.random.default_rng([seed, epoch]).permutation(len(images))
    idx = (order[s : s + batch_size] for s in range(0, len(order), batch_size))
    for i, x in iter_views(images, cfg, seed, ((i, i, np.full(len(i), epoch + 1)) for i in idx)):
        yield x, torch.from_numpy(images.labels[i])


TEACHER_SIDECARS = (".config.yaml", ".metrics.jsonl", ".tensorboard", ".train-state.pt")


def train_teacher(
    cfg: PipelineConfig,
    out: str | Path,
    *,
    epochs: int | None = None,
    limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.teacher.model`` on the training split; save the checkpoint at ``out``; returns the last epoch's
    record (empty when ``resume`` finds the checkpoint finished).

    ``out`` follows the output policy (:mod:`litcache.outputs`): an existing one (or what an interrupted run left
    beside it) is refused unless it is a checkpoint ``train-teacher`` wrote and ``resume`` continues its run or
    ``overwrite`` replaces it. A full disk or Ctrl-C says which epochs are kept and how to continue.
    """
    out = Path(out)
    own = lambda path: made_by(path) == "train-teacher"  # noqa: E731
    claim = claim_file(
        out, "train-teacher", TEACHER_SIDECARS, own, resume=resume, overwrite=overwrite, example="teacher.pt"
    )
    state_path = out.with_name(out.name + ".train-state.pt")
    if claim.resuming and out.is_file() and not state_path.exists():
        say(f"{out} is already trained (its run finished): nothing to resume")
        return {}
    epochs = epochs or cfg.teacher.epochs
    kept = lambda: saved_epochs(state_path, epochs)  # noqa: E731
    with keeping(state_path, kept, f"continue with {hint('train-teacher')}"):
        return _train(cfg, out, claim, epochs, limit, resume, show_progress)


def _train(
    cfg: PipelineConfig, out: Path, claim: Claim, epochs: int, limit: int | None, resume: bool, show_progress: bool
) -> dict[str, Any]:
    """:func:`train_teacher` once its output is claimed.

    A classifier learns the labels (cross-entropy); an image-to-image model its ground truth, the input view
    itself (L1; the built-in generators see it down-scaled). Writes ``<out>.config.yaml`` (the resolved config) and
    ``<out>.metrics.jsonl`` beside it (and TensorBoard event files in ``<out>.tensorboard/``).

    After every epoch the training state goes to ``<out>.train-state.pt`` (atomically); ``resume`` continues from
    it, refusing one of another run, and ends where the uninterrupted run would have (each epoch's views and order
    follow from the seed and the epoch). The state is removed once the checkpoint is written.
    """
    tc = cfg.teacher
    epochs = epochs or tc.epochs
    torch.manual_seed(tc.seed)
    device = resolve_device(cfg.train.device)
    images = load_images(cfg.data, "train", limit)
    model = build_model(tc.model, images.num_classes, cfg.data.mean, cfg.data.std).to(device)
    classifier = probe(model, images.input_shape).output_kind == "logits"
    optimizer = build_optimizer(model.parameters(), tc)
    steps_per_epoch = -(-len(images) // tc.batch_size)
    scheduler = build_scheduler(optimizer, tc, [steps_per_epoch] * epochs)
    metrics_path = out.with_name(out.name + ".metrics.jsonl")
    state_path = out.with_name(out.name + ".train-state.pt")
    # what a state must match to be continued: the model, the recipe (epochs included), the data
    identity: dict[str, Any] = {"teacher": dataclasses.asdict(tc) | {"epochs": epochs}}
    identity = json.loads(json.dumps(identity | {"model": model.spec, "samples": len(images), "data": images.identity}))
    start = 0
    if resume and state_path.is_file():
        state = read_weights_file(state_path)
        if not isinstance(state, dict) or "optimizer" not in state:
            raise CheckpointError(
                f"{state_path} is not a litcache teacher training state: start again with --overwrite"
            )
        was = {**state.get("teacher", {}), **{k: state.get(k) for k in identity if k != "teacher"}}
        now = {**identity["teacher"], **{k: v for k, v in identity.items() if k != "teacher"}}
        differs = [f"{k} {was.get(k)} (now {now[k]})" for k in now if was.get(k) != now[k]]
        if differs:
            raise ConfigError(
                f"{state_path} belongs to another teacher run: its {'; '.join(differs)}. Start again with "
                "--overwrite, or resume with the settings it was started with"
            )
        model.load_state_dict(state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"] + 1
        log.info("resuming %s at epoch %d", state_path, start + 1)
        say(f"resuming train-teacher: {saved_epochs(state_path, epochs)} (skipped)")
    claim.take()  # once the data, the model and any state to continue have loaded
    save_resolved(cfg, out.with_name(out.name + ".config.yaml"))
    if start:
        keep_lines(metrics_path, lambda r: r.get("epoch", 0) < start)  # records of epochs trained again go
    else:
        metrics_path.write_text("")
    monitor = open_monitor(cfg.log, out.with_name(out.name + ".tensorboard"))

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        x = to_unit_float(x.to(device))
        out = model(x)
        return {"loss": F.cross_entropy(out, y.to(device)) if classifier else F.l1_loss(out, x)}

    record: dict[str, Any] = {}
    for epoch in range(start, epochs):
        model.train()
        batches = augmented_batches(images, cfg.data, tc.seed, epoch, tc.batch_size)
        record = {
            "epoch": epoch,
            **train_one_epoch(
                step,
                optimizer,
                scheduler,
                batches,
                total=steps_per_epoch,
                desc=f"teacher {epoch + 1}/{epochs}",
                show_progress=show_progress,
                monitor=monitor,
                first_step=epoch * steps_per_epoch,
            ),
        }
        record["lr"] = float(scheduler.get_last_lr()[0])
        append_line(metrics_path, json.dumps(record))
        if monitor is not None:
            monitor.on_epoch(epoch, record)
        log.info("teacher epoch %d: loss %.4f", epoch, record["loss"])
        state = {
            "weights": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        atomic_torch_save({**identity, **state, "epoch": epoch}, state_path)
    if monitor is not None:
        monitor.close()
    save_model(model, out, epochs=epochs, samples=len(images), data=images.identity, command="train-teacher")
    state_path.unlink(missing_ok=True)
    return record


def evaluate_checkpoint(
    model_path: str | Path,
    cfg: PipelineConfig,
    limit: int | None = None,
    show_progress: bool = False,
    split: str = "test",
) -> dict[str, Any]:
    """Test-split accuracy (or PSNR/SSIM, for an image model) of a teacher or student checkpoint, with its number
    of parameters. ``split="val"``: on the training samples ``data.holdout`` keeps out of every cache, instead.

    A litcache checkpoint rebuilds its own model (a factory outside litcache, torchvision and timm only when the
    pipeline names it too); a plain state dict is one of ``cfg.teacher.model``.
    """
    d = cfg.data
    model = load_teacher(
        model_path, cfg.teacher.model, lambda: split_classes(d, split, limit), d.mean, d.std, cfg.factories()
    )
    images = load_images(d, split, limit)  # read once: the loader keeps decoded splits
    dev = resolve_device(cfg.train.device)
    result = evaluate(model.to(dev), images, dev, show_progress=show_progress)
    params = sum(p.numel() for p in model.parameters())
    return {**result, "model": describe(model.spec), "params": params, "data": images.identity, "split": split}
