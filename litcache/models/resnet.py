"""The CIFAR ResNets LIT was shown on (He et al. 2016, depth 6n+2): three stages of n basic blocks."""

from __future__ import annotations

import torch
from torch import nn

from litcache.errors import ConfigError


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """``conv1 -> bn1 -> relu -> layer1..layer3 -> avgpool -> fc``; sections ``layer1``, ``layer2``, ``layer3``."""

    layer1: nn.Sequential  # the stages, added in __init__
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        c_in = 16
        for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = [
                BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1) for j in range(blocks_per_stage)
            ]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """A CIFAR ResNet of depth 6n+2 (8, 14, 20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNets have depth 6n+2 (8, 14, 20, 32, 44, 56, 110), got {depth}")
    return CifarResNet((depth - 2) // 6, num_classes, in_channels)
