"""The training and evaluation loops every trainer shares. They take everything they need as arguments."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from litcache.data import ImageSet, eval_batches, to_unit_float
from litcache.progress import progress_bar
from litcache.train.metrics import psnr, ssim
from litcache.train.monitor import Monitor

StepFn = Callable[[Any], dict[str, torch.Tensor]]
POSTFIX_EVERY = 25  # steps between progress-bar loss readings (each one waits for the device)


def train_one_epoch(
    step_fn: StepFn,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: Iterable[Any],
    *,
    total: int | None = None,
    desc: str = "train",
    show_progress: bool = True,
    monitor: Monitor | None = None,
    first_step: int = 0,
) -> dict[str, float]:
    """One pass over ``loader``; ``step_fn(batch)`` returns ``{"loss": total, **parts}``.

    Returns the mean of every part over the epoch (weighted by batch size), ``samples`` and ``samples_per_s``.
    ``monitor`` sees every step's parts and learning rate, numbered from ``first_step``.
    """
    sums: dict[str, torch.Tensor] = {}  # on the device: reading a loss every step would sync a GPU every step
    seen = 0
    started = time.perf_counter()
    with progress_bar(total=total or 0, desc=desc, unit="batch", enabled=show_progress) as bar:
        for step, batch in enumerate(loader):
            parts = step_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler moves it next)
            optimizer.step()
            scheduler.step()
            if monitor is not None:
                monitor.on_step(first_step + step, parts, lr)
            n = len(batch[0]) if isinstance(batch, (tuple, list)) else len(next(iter(batch.values())))
            seen += n
            for k, v in parts.items():
                weighted = v.detach().double() * n
                sums[k] = sums[k] + weighted if k in sums else weighted
            bar.update(1)
            if show_progress and step % POSTFIX_EVERY == 0:
                rate = seen / max(time.perf_counter() - started, 1e-9)
                loss = float(parts["loss"].detach())
                bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{rate:.0f}", refresh=False)
    seconds = time.perf_counter() - started
    out = {k: float(v) / max(seen, 1) for k, v in sums.items()}
    out.update(samples=float(seen), seconds=seconds, samples_per_s=seen / max(seconds, 1e-9))
    return out


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    images: ImageSet,
    device: torch.device,
    batch_size: int = 500,
    show_progress: bool = False,
) -> dict[str, float]:
    """On the evaluation views (un-augmented): top-1 accuracy (and top-5 with more than 10 classes) of a
    classifier; mean PSNR (dB) and SSIM of an image model's output against the ground truth, the image itself."""
    model.eval()
    sums: dict[str, float] = {}
    with progress_bar(total=len(images), desc="evaluate", unit="image", enabled=show_progress) as bar:
        for x_uint8, labels in eval_batches(images, batch_size):
            x = to_unit_float(x_uint8.to(device))
            y = labels.to(device)
            for key, value in score(model(x), x, y).items():
                sums[key] = sums.get(key, 0.0) + value
            bar.update(len(y))
    out = {k: v / len(images) for k, v in sums.items()}
    out["samples"] = len(images)
    return out


def score(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Sums over one batch: correct predictions of logits, or PSNR and SSIM of images (truth ``x``), the image
    clamped to [0, 1] as it would be saved."""
    if out.dim() == 4:
        out = out.clamp(0, 1)
        return {"psnr": float(psnr(out, x).sum()), "ssim": float(ssim(out, x).sum())}
    sums = {"accuracy": float((out.argmax(1) == y).sum())}
    if out.shape[1] > 10:
        sums["top5"] = float((out.topk(5, dim=1).indices == y[:, None]).any(1).sum())
    return sums
