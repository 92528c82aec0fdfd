"""Optimizer and learning-rate schedule factories shared by every trainer."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from litcache.config import OptimizerSettings


def build_optimizer(params: Iterable[torch.nn.Parameter], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """``sgd``: SGD with Nesterov momentum, the CIFAR ResNet recipe; ``adamw``: AdamW (``momentum`` is its beta1,
    weight decay decoupled), which image-to-image models and vision transformers train with."""
    lr, momentum, weight_decay = settings.lr, settings.momentum, settings.weight_decay
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(list(params), lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule: ``cosine`` to zero, ``step`` (x0.1 at 50% and 75%), or ``constant``."""
    total = max(1, total_steps)
    if schedule == "cosine":
        fn = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif schedule == "step":
        fn = lambda step: 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))  # noqa: E731
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
