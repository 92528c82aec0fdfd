"""Sectioned models: stem -> sections 1..S -> head, and the CIFAR ResNet family LIT uses.

LIT trains student section k on the teacher's boundary k-1 and compares its output with the teacher's boundary
k, so a model is only ever seen through this split. Boundary 0 is the stem's output (the input of section 1),
boundary S the input of the head.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from litcache.errors import CompatibilityError, ConfigError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel standardisation of an input in [0, 1]; part of the stem so checkpoints carry it."""

    mean: torch.Tensor  # (1, C, 1, 1) buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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


class SectionedModel(nn.Module):
    """A network as ``head(section_S(...section_1(stem(x))))`` with named parts.

    The stem starts with a :class:`Normalize`, the head ends with a ``Linear``.
    """

    def __init__(self, arch: str, stem: nn.Sequential, sections: Sequence[nn.Module], head: nn.Sequential) -> None:
        super().__init__()
        self.arch = arch
        self.stem = stem
        self.sections = nn.ModuleList(sections)
        self.head = head

    @property
    def num_sections(self) -> int:
        return len(self.sections)

    @property
    def num_classes(self) -> int:
        return cast(nn.Linear, self.head[-1]).out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for section in self.sections:
            h = section(h)
        return self.head(h)

    def forward_boundaries(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One forward pass that returns boundaries b0..bS and the logits (no second forward)."""
        bounds = [self.stem(x)]
        for section in self.sections:
            bounds.append(section(bounds[-1]))
        return bounds, self.head(bounds[-1])


def section_names(num_sections: int) -> list[str]:
    return [f"s{k}" for k in range(1, num_sections + 1)]


_RESNET = re.compile(r"^resnet(\d+)$")


def available_archs() -> list[str]:
    return [f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)]


def build_model(
    arch: str,
    num_classes: int = 10,
    mean: Sequence[float] = CIFAR_MEAN,
    std: Sequence[float] = CIFAR_STD,
) -> SectionedModel:
    """Build a CIFAR ResNet of depth 6n+2 (``resnet8`` ... ``resnet110``) as a sectioned model.

    Inputs are float images in [0, 1], shape (N, 3, H, W); the stem normalises them.
    """
    m = _RESNET.match(arch)
    if not m or (int(m.group(1)) - 2) % 6 or int(m.group(1)) < 8:
        raise ConfigError(
            f"unknown architecture {arch!r}: CIFAR ResNets have depth 6n+2, e.g. {', '.join(available_archs())}"
        )
    n = (int(m.group(1)) - 2) // 6
    stem = nn.Sequential(
        Normalize(mean, std), nn.Conv2d(len(mean), 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
    )
    sections, c_in = [], 16
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        blocks = [BasicBlock(c_in if i == 0 else width, width, stride if i == 0 else 1) for i in range(n)]
        sections.append(nn.Sequential(*blocks))
        c_in = width
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
    model = SectionedModel(arch, stem, sections, head)
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return model


@torch.no_grad()
def probe_boundaries(model: SectionedModel, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes (without the batch axis) of boundaries b0..bS for one input of ``input_shape``."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device)
        bounds, _ = model.forward_boundaries(x)
    finally:
        model.train(was_training)
    return [tuple(b.shape[1:]) for b in bounds]


def check_compatible(
    expected: Sequence[Sequence[int]],
    actual: Sequence[Sequence[int]],
    expected_name: str = "teacher",
    actual_name: str = "student",
) -> None:
    """Raise :class:`CompatibilityError` unless both have the same sections and boundary shapes."""
    expected = [tuple(s) for s in expected]
    actual = [tuple(s) for s in actual]
    lines = []
    if len(expected) != len(actual):
        lines.append(
            f"number of sections: {expected_name} has {len(expected) - 1}, {actual_name} has {len(actual) - 1}"
        )
    for k in range(max(len(expected), len(actual))):
        e = expected[k] if k < len(expected) else None
        a = actual[k] if k < len(actual) else None
        if e != a:
            lines.append(f"boundary {k}: {expected_name} {e}, {actual_name} {a}")
    if lines:
        raise CompatibilityError(
            f"{actual_name} does not fit {expected_name}; LIT needs the same sections and boundary shapes:\n  "
            + "\n  ".join(lines)
        )
