"""The CIFAR ResNets LIT was shown on (He et al. 2016, depth 6n+2): three stages of n basic blocks.

:class:`StagedNet` is the shape the CIFAR families share (stem, stages ``layer1`` ... ``layerN``, pooled linear
head); the ResNeXt in :mod:`litcache.models.resnext` is another set of blocks in it.

Where a block changes shape, its shortcut is a 1x1 convolution with batch norm (He et al.'s option B, the
default) or, with ``shortcut="A"``, the identity subsampled and zero-padded to the new width, without parameters
(option A): the shortcut of He et al.'s CIFAR ResNets and of LIT's reference code (``cifar10/resnet.py``), whose
ResNet-20/56/110 have the 0.27 M / 0.85 M / 1.7 M parameters the papers report.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from litcache.errors import ConfigError

SHORTCUTS = ("A", "B")  # He et al. 2016: A zero-pads the identity, B projects it with a 1x1 convolution


class PadShortcut(nn.Module):
    """Option A: the input at every ``stride``-th pixel, zero-padded to ``c_out`` channels (its own channels in
    the middle, as LIT's reference pads ``planes // 4`` on each side of a doubled width); no parameters."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_out < c_in:
            raise ConfigError(f"a zero-padding shortcut (option A) cannot narrow {c_in} channels to {c_out}")
        self.stride, self.front, self.back = stride, (c_out - c_in) // 2, c_out - c_in - (c_out - c_in) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H / stride, W / stride)
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))  # (N, C_out, H / stride, W / stride)


def shortcut(c_in: int, c_out: int, stride: int, option: str = "B") -> nn.Module:
    """The residual branch's identity, or where the shape changes a 1x1 projection (option ``B``) or the
    zero-padded identity (option ``A``)."""
    if option not in SHORTCUTS:
        raise ConfigError(f"shortcut must be one of {SHORTCUTS} (He et al. 2016's options), got {option!r}")
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if option == "A":
        return PadShortcut(c_in, c_out, stride)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, option: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride, option)

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


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "B") -> StagedNet:
    """A CIFAR ResNet of depth 6n+2 (8, 14, 20, 32, 44, 56, 110, ...): stages of n basic blocks, 16/32/64 wide.

    ``shortcut``: ``"B"`` (1x1 projections where the shape changes) or ``"A"`` (zero-padded identity, LIT's
    reference; in a pipeline ``{name: resnet56, kwargs: {shortcut: A}}``).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNets have depth 6n+2 (8, 14, 20, 32, 44, 56, 110), got {depth}")
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"shortcut must be one of {SHORTCUTS} (He et al. 2016's options), got {shortcut!r}")
    n, stages, c_in = (depth - 2) // 6, [], 16
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        blocks = (BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1, shortcut) for j in range(n))
        stages.append(nn.Sequential(*blocks))
        c_in = width
    return StagedNet(16, stages, 64, num_classes, in_channels)
