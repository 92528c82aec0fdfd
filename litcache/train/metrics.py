"""Image quality of an image-to-image model's output: PSNR and SSIM against the ground truth, both in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image (N, C, H, W) in [0, 1]: 10·log10(1 / MSE)."""
    mse = (pred.float() - truth.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(pred: torch.Tensor, truth: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of each image (N, C, H, W) in [0, 1].

    The paper's definition: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, dynamic range 1, per
    channel, averaged over the valid positions (no padding) and the channels.
    """
    pred, truth = pred.float(), truth.float()
    c = pred.shape[1]
    w = _gaussian_window(window, sigma, c, pred.device)
    c1, c2 = 0.01**2, 0.03**2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=c)

    mu_p, mu_t = blur(pred), blur(truth)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(truth * truth) - mu_t**2
    cov = blur(pred * truth) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return s.flatten(1).mean(1)
