"""Optimizer and learning-rate schedule factories shared by every trainer."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

import torch

from litcache.config import OptimizerSettings


def build_optimizer(params: Iterable[torch.nn.Parameter], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """``sgd``: SGD with Nesterov momentum, the CIFAR ResNet recipe; ``sgd-plain``: SGD with heavy-ball momentum,
    LIT's reference (``buf = momentum·buf + grad + wd·w``, ``w -= lr·buf``); ``adamw``: AdamW (``momentum`` is its
    beta1, weight decay decoupled), which image-to-image models and vision transformers train with."""
    lr, momentum, weight_decay = settings.lr, settings.momentum, settings.weight_decay
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(list(params), lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    nesterov = settings.optimizer == "sgd" and momentum > 0
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: OptimizerSettings | str, steps: int | Sequence[int]
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: ``cosine`` to zero, ``step`` (x0.1 at 50% and 75%), ``multistep`` (x0.1 after each
    of the settings' ``milestones`` epochs), or ``constant``.

    ``schedule``: a stage's settings, or just the schedule's name; ``steps``: the stage's steps per epoch (a
    list), or its total steps (enough for every schedule but ``multistep``). A multistep rate is constant within
    an epoch and drops at the start of epoch ``m`` (0-based) for each milestone ``m``, as torch's ``MultiStepLR``
    stepped once per epoch, and as LIT's reference meant it (under torch 0.4, where its ``scheduler.step()`` at
    the start of an epoch did just that).
    """
    name = schedule if isinstance(schedule, str) else schedule.schedule
    per_epoch = [steps] if isinstance(steps, int) else list(steps)
    total = max(1, sum(per_epoch))
    if name == "multistep":
        milestones = () if isinstance(schedule, str) else schedule.milestones
        if not milestones or isinstance(steps, int):
            raise ValueError("a multistep schedule needs the stage's settings (its milestones) and steps per epoch")
        starts = list(itertools.accumulate(per_epoch))  # starts[e - 1]: the first step of epoch e
        drops = [starts[m - 1] for m in milestones if m <= len(starts)]
        fn = lambda step: 0.1 ** bisect.bisect_right(drops, step)  # noqa: E731
    elif name == "cosine":
        fn = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif name == "step":
        fn = lambda step: 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))  # noqa: E731
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
