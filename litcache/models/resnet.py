"""The CIFAR ResNets LIT was shown on (He et al. 2016, depth 6n+2): three stages of n basic blocks.

:class:`StagedNet` is the shape the CIFAR families share (stem, stages ``layer1`` ... ``layerN``, pooled linear
head); the ResNeXt in :mod:`litcache.models.resnext` is another set of blocks in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from litcache.errors import ConfigError


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """The residual branch's identity, or a 1x1 projection where the shape changes."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class StagedNet(nn.Module):
    """``conv1 -> bn1 -> relu -> layer1 .. layerN -> avgpool -> fc``; the sections are the stages ``layerK``."""

    def __init__(
        self, stem_width: int, stages: Sequence[nn.Sequential], width: int, num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        self.stages = len(stages)
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.stages + 1):
            x = self.get_submodule(f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> StagedNet:
    """A CIFAR ResNet of depth 6n+2 (8, 14, 20, 32, 44, 56, 110, ...): stages of n basic blocks, 16/32/64 wide."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNets have depth 6n+2 (8, 14, 20, 32, 44, 56, 110), got {depth}")
    n, stages, c_in = (depth - 2) // 6, [], 16
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        stages.append(
            nn.Sequential(*(BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1) for j in range(n)))
        )
        c_in = width
    return StagedNet(16, stages, 64, num_classes, in_channels)
