"""Fixed oriented-structure channels (CFOG-like): what SAR and optical images share is where and in which
direction intensity changes, not its sign or contrast."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fge import oriented_gradient_kernels

RELATIVE_FLOOR = 0.1
"""Normalisation floor, relative to the image's mean gradient energy: flat areas stay near zero instead of
amplifying noise."""


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """`(2r+1, 2r+1)` normalised Gaussian."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


class StructureChannels(nn.Module):
    """Absolute oriented derivatives of the mean band, smoothed, normalised per pixel and scale.

    Shapes: `(B, C, H, W)` -> `(B, len(sigmas) * orientations, H, W)`, scale-major; each scale's
    orientation vector has unit norm where there is structure (like CFOG), ~0 where the image is flat.
    No parameters: both modalities see the same fixed descriptor, so their features agree from the start.
    """

    def __init__(self, orientations: int, sigmas: tuple[float, ...], pool_sigma: float,
                 radius_sigmas: float = 2.5) -> None:
        super().__init__()
        self.orientations = orientations
        self.scales = len(sigmas)
        radius = math.ceil(radius_sigmas * max(sigmas))
        self.register_buffer("derivatives", oriented_gradient_kernels(orientations, sigmas, radius), persistent=False)
        self.radius = radius
        pool_radius = math.ceil(radius_sigmas * pool_sigma)
        self.register_buffer("pool", gaussian_kernel(pool_sigma, pool_radius)[None, None], persistent=False)
        self.pool_radius = pool_radius

    @property
    def channels(self) -> int:
        return self.orientations * self.scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1, keepdim=True)
        g = F.conv2d(F.pad(grey, [self.radius] * 4, mode="replicate"), self.derivatives).abs()
        n = g.shape[1]
        g = F.conv2d(F.pad(g, [self.pool_radius] * 4, mode="replicate"), self.pool.expand(n, 1, -1, -1), groups=n)
        g = g.unflatten(1, (self.scales, self.orientations))
        energy = g.norm(dim=2, keepdim=True)
        floor = RELATIVE_FLOOR * energy.mean(dim=(3, 4), keepdim=True)
        return (g / (energy + floor + 1e-6)).flatten(1, 2)
