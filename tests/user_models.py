"""A user's own models, named by ``user_models:function`` in the tests (the folder is put on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


class Tower(nn.Module):
    """``embed -> trunk.0 .. trunk.{n-1} -> pool -> classifier``, plus a root parameter (a learned offset)."""

    def __init__(self, blocks: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.embed = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.trunk = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self.embed(x) + self.offset)
        return self.classifier(h.mean((2, 3)))


def tower(blocks: int = 4, width: int = 8, num_classes: int = 10) -> Tower:
    return Tower(blocks, width, num_classes)


class MaskedBlock(Block):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x * mask)


def masked_tower(num_classes: int = 10) -> Tower:
    """A tower whose blocks need a mask: a section cannot run on one boundary alone."""
    model = Tower(2, 8, num_classes)
    model.trunk = nn.Sequential(MaskedBlock(8), MaskedBlock(8))
    return model


class Skipping(Tower):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.offset
        h = self.trunk[1](self.trunk[0](h) * 2.0)  # work between the sections that no section module does
        return self.classifier(h.mean((2, 3)))


def skipping_tower(num_classes: int = 10) -> Tower:
    return Skipping(2, 8, num_classes)


def not_a_module() -> str:
    return "a string"


def exact_pools(num_classes: int = 10) -> nn.Sequential:
    """A model whose every output is one of its inputs: max pools for sections, a one-hot 1x1 convolution and a max
    for the head. Its numbers are exact on any CPU, so a cache of it hashes the same everywhere."""
    head = nn.Conv2d(3, num_classes, 1, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        for c in range(num_classes):
            head.weight[c, c % 3] = 1.0
    return nn.Sequential(nn.Identity(), nn.MaxPool2d(2), nn.MaxPool2d(2), head, nn.AdaptiveMaxPool2d(1), nn.Flatten())
