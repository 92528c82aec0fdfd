"""Factories for students of torchvision's families: the same stage widths as a teacher, fewer blocks.

torchvision builds ``resnet50`` as ``ResNet(Bottleneck, [3, 4, 6, 3])``; LIT needs a student with the same
boundary shapes, such as ``ResNet(Bottleneck, [1, 1, 1, 1])``, which a pipeline cannot name (a class is no
YAML value). ``torchvision_resnet(block="bottleneck", layers=[1, 1, 1, 1])`` builds it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from litcache.errors import ConfigError


def torchvision_resnet(
    block: str = "bottleneck",
    layers: Sequence[int] = (1, 1, 1, 1),
    num_classes: int = 1000,
    groups: int = 1,
    width_per_group: int = 64,
) -> nn.Module:
    """torchvision's ``ResNet`` with ``block`` ``basic`` or ``bottleneck`` and ``layers`` blocks per stage
    (``groups=32, width_per_group=4`` makes a ResNeXt such as ``resnext50_32x4d``'s)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
    if block not in blocks:
        raise ConfigError(f"torchvision_resnet: block must be 'basic' or 'bottleneck', got {block!r}")
    if len(layers) != 4 or min(layers) < 1:
        raise ConfigError(f"torchvision_resnet: layers needs four block counts >= 1, got {list(layers)}")
    return ResNet(blocks[block], list(layers), num_classes=num_classes, groups=groups, width_per_group=width_per_group)
