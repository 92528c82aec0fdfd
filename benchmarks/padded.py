"""A teacher made heavy on purpose, for ``teacher_free_memory`` (benchmarks/run.py).

A CIFAR ResNet whose ``layer2`` carries an unused buffer of ``pad_mb`` MB: its checkpoint and its memory weigh
hundreds of MB, its boundaries and outputs are the plain ResNet's. The buffer sits inside a section, so it is no
part of what a student copies (``teacher/frozen``): online LIT must hold it, cached LIT never sees it.
"""

from __future__ import annotations

import torch

from litcache.models.resnet import CifarResNet, cifar_resnet


def padded_resnet(depth: int, pad_mb: int, num_classes: int = 10) -> CifarResNet:
    model = cifar_resnet(depth, num_classes)
    model.layer2.register_buffer("padding", torch.zeros(pad_mb * 2**20 // 4))  # float32
    return model
