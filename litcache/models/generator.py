"""A residual image-to-image generator, as the StarGAN generator of LIT's image-to-image result.

``stem`` (down-sampling) -> ``blocks`` (residual blocks at the bottleneck resolution) -> ``head`` (up-sampling),
with instance norm. Its sections are runs of residual blocks, which keep their shape, so a 6-block teacher and a
2-block student have the same boundaries. The output is an image; the model has no logits.

The built-in task is 2x super-resolution: ``degrade`` averages each 2x2 patch of the input and scales the result
back up bilinearly, which is all the model sees, and the head predicts the detail that degradation removed as a
difference from the blurred image (output = blurred + head, the head's last convolution starting at zero), so
training starts from the bilinear up-scaling and learns what it lacks. The ground truth is the input view itself.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from litcache.errors import ConfigError


class Downscale(nn.Module):
    """The degradation: the mean of each ``factor`` x ``factor`` patch, scaled back up bilinearly (no parameter)."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = F.avg_pool2d(x, self.factor)
        return F.interpolate(small, scale_factor=self.factor, mode="bilinear", align_corners=False)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, transposed: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    pad = 1 if kernel == 4 else kernel // 2
    return [conv(c_in, c_out, kernel, stride, pad, bias=False), nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv(channels, channels, 3),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGenerator(nn.Module):
    """``degrade -> stem -> blocks.0 .. blocks.{n-1} -> head``, output = blurred + head; the stem's strided
    convolutions halve the resolution ``downsamplings`` times and the head's transposed ones restore it."""

    def __init__(self, blocks: int, width: int = 16, channels: int = 3, downsamplings: int = 1) -> None:
        super().__init__()
        self.degrade = Downscale(2)
        widths = [width * 2**i for i in range(downsamplings + 1)]
        self.stem = nn.Sequential(
            *_conv(channels, width, 7), *(m for a, b in itertools.pairwise(widths) for m in _conv(a, b, 4, 2))
        )
        self.blocks = nn.Sequential(*(ResidualBlock(widths[-1]) for _ in range(blocks)))
        detail = nn.Conv2d(width, channels, 7, 1, 3, bias=False)
        nn.init.zeros_(detail.weight)  # the bilinear up-scaling, to begin with
        up = [m for a, b in itertools.pairwise(widths[::-1]) for m in _conv(a, b, 4, 2, transposed=True)]
        self.head = nn.Sequential(*up, detail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = self.degrade(x)
        return blurred + self.head(self.blocks(self.stem(blurred)))


def residual_generator(blocks: int, width: int = 16, in_channels: int = 3, downsamplings: int = 1) -> ResidualGenerator:
    """A 2x super-resolution generator of ``blocks`` residual blocks, ``width * 2**downsamplings`` channels wide at
    the input's resolution halved ``downsamplings`` times: one for 32 px images (the blocks work at 16x16),
    StarGAN's two for 128 px ones."""
    if blocks < 1:
        raise ConfigError(f"a residual generator needs at least one block, got {blocks}")
    return ResidualGenerator(blocks, width, in_channels, downsamplings)
