"""Feature Gradient Enhancer (FGE): oriented multi-scale gradient filters on deep features, selected by
channel and spatial attention, completed by an SCConv-style reconstruction, added back residually."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import FGEConfig

STEP_EDGE_GAIN = 2.0
"""Kernels are scaled to this L1 norm, so a unit step edge across a kernel's direction gives ~1."""


def orientations_deg(count: int) -> list[float]:
    """Evenly spaced orientations over a half turn: 0, 180/count, ..."""
    return [180.0 * i / count for i in range(count)]


def oriented_gradient_kernels(orientations: int, sigmas: tuple[float, ...], radius: int) -> torch.Tensor:
    """`(len(sigmas) * orientations, 1, 2r+1, 2r+1)` derivative-of-Gaussian kernels, scale-major.

    Kernel (sigma, theta) responds to intensity increasing along (cos theta, sin theta) in (x, y);
    as `conv2d` is a correlation, its weight at offset d is proportional to ``d . n exp(-|d|^2 / 2 sigma^2)``.
    """
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    dy, dx = torch.meshgrid(coords, coords, indexing="ij")
    kernels = []
    for sigma in sigmas:
        gauss = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
        for theta in orientations_deg(orientations):
            t = math.radians(theta)
            k = (dx * math.cos(t) + dy * math.sin(t)) * gauss
            kernels.append(STEP_EDGE_GAIN * k / k.abs().sum())
    return torch.stack(kernels).unsqueeze(1).float()


class GradientFilterBank(nn.Module):
    """Learnable bank of oriented gradient filters, initialised analytically, applied depthwise.

    Shapes: `(B, g, H, W)` -> `(B, g * K, H, W)` with K = orientations x scales; output channel
    ``c * K + k`` is filter k on input channel c.
    """

    def __init__(self, orientations: int, sigmas: tuple[float, ...], radius_sigmas: float) -> None:
        super().__init__()
        radius = math.ceil(radius_sigmas * max(sigmas))
        self.weight = nn.Parameter(oriented_gradient_kernels(orientations, sigmas, radius))
        self.padding = radius

    @property
    def num_filters(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.shape[1]
        return F.conv2d(x, self.weight.repeat(groups, 1, 1, 1), padding=self.padding, groups=groups)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation weights per channel: which gradient responses matter."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.mlp(x.mean(dim=(2, 3))))
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """Per-pixel weight from the mean and max over channels: where the gradients matter."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class SpatialReconstruction(nn.Module):
    """SCConv SRU: gate channels by their GroupNorm scale, cross-recombine informative and weak parts."""

    GATE_THRESHOLD = 0.5

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm(x)
        gamma = self.norm.weight.abs()
        importance = torch.sigmoid(normed * (gamma / gamma.sum().clamp_min(1e-6))[None, :, None, None])
        informative = importance >= self.GATE_THRESHOLD
        x1 = torch.where(informative, importance, torch.zeros_like(importance)) * x
        x2 = torch.where(informative, torch.zeros_like(importance), importance) * x
        a1, b1 = x1.chunk(2, dim=1)
        a2, b2 = x2.chunk(2, dim=1)
        return torch.cat([a1 + b2, b1 + a2], dim=1)


class ChannelReconstruction(nn.Module):
    """SCConv CRU: split channels, a rich (group + point-wise conv) and a cheap path, fuse by soft attention."""

    def __init__(self, channels: int, split: float, squeeze: int, groups: int) -> None:
        super().__init__()
        self.upper = int(channels * split)
        lower = channels - self.upper
        up_sq, low_sq = max(self.upper // squeeze, groups), max(lower // squeeze, 1)
        self.squeeze_up = nn.Conv2d(self.upper, up_sq, 1, bias=False)
        self.squeeze_low = nn.Conv2d(lower, low_sq, 1, bias=False)
        self.group_conv = nn.Conv2d(up_sq, channels, 3, padding=1, groups=groups)
        self.point_up = nn.Conv2d(up_sq, channels, 1, bias=False)
        self.point_low = nn.Conv2d(low_sq, channels - low_sq, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up, low = torch.split(x, [self.upper, x.shape[1] - self.upper], dim=1)
        up, low = self.squeeze_up(up), self.squeeze_low(low)
        y1 = self.group_conv(up) + self.point_up(up)
        y2 = torch.cat([self.point_low(low), low], dim=1)
        pooled = torch.stack([y1.mean(dim=(2, 3)), y2.mean(dim=(2, 3))])  # (2, B, C)
        beta = torch.softmax(pooled, dim=0)[:, :, :, None, None]
        return beta[0] * y1 + beta[1] * y2


class FeatureGradientEnhancer(nn.Module):
    """FGE block: `(B, C, H, W)` -> `(B, C, H, W)`, ``x + reconstruct(fuse(attend(bank(project(x)))))``."""

    def __init__(self, channels: int, config: FGEConfig) -> None:
        super().__init__()
        g = config.gradient_channels
        self.project = nn.Conv2d(channels, g, 1)
        self.bank = GradientFilterBank(config.orientations, config.sigmas, config.kernel_radius_sigmas)
        responses = g * self.bank.num_filters
        self.channel_attention = ChannelAttention(responses, config.attention_reduction)
        self.spatial_attention = SpatialAttention(config.spatial_attention_kernel)
        self.fuse = nn.Conv2d(responses, channels, 1)
        groups = config.reconstruction_groups
        self.sru = SpatialReconstruction(channels, groups)
        self.cru = ChannelReconstruction(channels, config.reconstruction_split, config.reconstruction_squeeze, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gradients = self.bank(self.project(x))
        selected = self.spatial_attention(self.channel_attention(gradients))
        enhanced = x + self.fuse(selected)
        return x + self.cru(self.sru(enhanced))
