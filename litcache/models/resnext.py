"""CIFAR ResNeXt (Xie et al. 2017, ResNeXt-29-style): three stages of n grouped bottleneck blocks, depth 9n+2.

LIT compressed a ResNeXt by training a shallower one of the same stage widths. The widths here are CPU-sized
(cardinality 8, 4 channels per group at the first stage, stage outputs 64/128/256); every one is a setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from litcache.errors import ConfigError


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, inner: int, cardinality: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNeXt(nn.Module):
    """``conv1 -> bn1 -> relu -> layer1..layer3 -> avgpool -> fc``; sections ``layer1``, ``layer2``, ``layer3``."""

    layer1: nn.Sequential  # the stages, added in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        cardinality: int = 8,
        base_width: int = 4,
        widths: Sequence[int] = (64, 128, 256),
        stem_width: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        c_in = stem_width
        for i, width in enumerate(widths):
            inner = cardinality * base_width * 2**i
            stride = 1 if i == 0 else 2
            blocks = [
                Bottleneck(c_in if j == 0 else width, width, inner, cardinality, stride if j == 0 else 1)
                for j in range(blocks_per_stage)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnext(
    depth: int,
    num_classes: int = 10,
    cardinality: int = 8,
    base_width: int = 4,
    widths: Sequence[int] = (64, 128, 256),
    stem_width: int = 32,
    in_channels: int = 3,
) -> CifarResNeXt:
    """A CIFAR ResNeXt of depth 9n+2 (11, 20, 29, ...): n bottleneck blocks per stage."""
    if depth < 11 or (depth - 2) % 9:
        raise ConfigError(f"CIFAR ResNeXts have depth 9n+2 (11, 20, 29, 38, ...), got {depth}")
    if len(widths) != 3:
        raise ConfigError(f"a CIFAR ResNeXt has three stages: widths needs three values, got {list(widths)}")
    return CifarResNeXt((depth - 2) // 9, num_classes, cardinality, base_width, widths, stem_width, in_channels)
