"""A residual image-to-image generator, as StarGAN's (Choi et al. 2018), which LIT compressed 1.8x.

``stem`` (down-sampling) -> ``blocks`` (residual blocks at the bottleneck resolution) -> ``head`` (up-sampling),
with instance norm. Its sections are runs of residual blocks, which keep their shape, so a 6-block teacher and a
2-block student have the same boundaries. The output is an image in [0, 1]; the model has no logits.

The built-in task is colourisation: the stem starts by turning its input into one grey channel, so the model
learns to put back the colours of the very image it was given (the ground truth is the input view itself).
"""

from __future__ import annotations

import torch
from torch import nn

from litcache.errors import ConfigError

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


class Grayscale(nn.Module):
    """RGB -> one luminance channel (a fixed weighting, no parameter)."""

    weight: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(1, keepdim=True)


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
    """``stem -> blocks.0 .. blocks.{n-1} -> head``; two down-samplings and two up-samplings."""

    def __init__(self, blocks: int, width: int = 16, grey_input: bool = True, out_channels: int = 3) -> None:
        super().__init__()
        first: list[nn.Module] = [Grayscale()] if grey_input else []
        self.stem = nn.Sequential(
            *first,
            *_conv(1 if grey_input else out_channels, width, 7),
            *_conv(width, 2 * width, 4, 2),
            *_conv(2 * width, 4 * width, 4, 2),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(4 * width) for _ in range(blocks)))
        self.head = nn.Sequential(
            *_conv(4 * width, 2 * width, 4, 2, transposed=True),
            *_conv(2 * width, width, 4, 2, transposed=True),
            nn.Conv2d(width, out_channels, 7, 1, 3),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def residual_generator(
    blocks: int, width: int = 16, grey_input: bool = True, out_channels: int = 3
) -> ResidualGenerator:
    """A generator of ``blocks`` residual blocks at a quarter of the input's resolution, ``4 * width`` channels."""
    if blocks < 1:
        raise ConfigError(f"a residual generator needs at least one block, got {blocks}")
    return ResidualGenerator(blocks, width, grey_input, out_channels)
