"""Modality-independent similarity between the optical tile and the warped SAR: dense descriptors and a
per-pixel cost, masked by validity.

Convention:
    - images `(B, C, h, w)` are normalised tiles (or a level of them), 0 where invalid;
    - a descriptor is `(B, K, h, w)`; `pixel_cost` is `(B, h, w)`, lower is more similar;
    - `structure_ssd`: squared distance of the oriented structure channels (CFOG-like; unit norm per
      scale where there is structure), averaged over scales, in [0, 2] per scale;
    - `ngf`: normalised gradient fields n = g / sqrt(|g|^2 + eps^2) in their tensor form
      ``(n_x^2, n_y^2, sqrt(2) n_x n_y)``, whose squared distance is ``|n|^4 + |m|^4 - 2 (n . m)^2``:
      sign-invariant (SAR and optical edges may have opposite polarity) and a sum of squares, as the
      Gauss-Newton refinement needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import RefineConfig
from .structure import StructureChannels, gaussian_kernel

NGF_SIGMA = 1.0
"""Derivative-of-Gaussian scale of the NGF gradients, in level pixels."""
RADIUS_SIGMAS = 2.5
"""Kernel half-size in units of its sigma."""


class Descriptor(torch.nn.Module):
    """The objective's dense descriptor of a normalised image `(B, C, h, w)` -> `(B, K, h, w)`."""

    def __init__(self, config: RefineConfig) -> None:
        super().__init__()
        self.objective = config.objective
        if config.objective == "structure_ssd":
            self.structure = StructureChannels(config.structure_orientations, config.structure_sigmas,
                                               config.structure_pool_sigma)
            self.scales = len(config.structure_sigmas)
            self.radius = self.structure.radius + self.structure.pool_radius
        elif config.objective == "ngf":
            radius = math.ceil(RADIUS_SIGMAS * NGF_SIGMA)
            g = gaussian_kernel(NGF_SIGMA, radius)
            d = torch.arange(-radius, radius + 1, dtype=torch.float32)
            self.register_buffer("kernels", torch.stack([g * d[None, :], g * d[:, None]]).unsqueeze(1) / NGF_SIGMA**2,
                                 persistent=False)
            self.epsilon = config.ngf_epsilon
            self.radius = radius
        else:
            raise ValueError(f"unknown refinement objective {config.objective!r}")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.objective == "structure_ssd":
            return self.structure(image)
        grey = image.mean(dim=1, keepdim=True)
        grad = F.conv2d(F.pad(grey, [self.radius] * 4, mode="replicate"), self.kernels)
        magnitude = grad.norm(dim=1, keepdim=True)
        eps = self.epsilon * magnitude.mean(dim=(2, 3), keepdim=True) + 1e-6
        n = grad / (magnitude**2 + eps**2).sqrt()
        return torch.cat([n[:, :1] ** 2, n[:, 1:] ** 2, math.sqrt(2.0) * n[:, :1] * n[:, 1:]], dim=1)

    @property
    def channel_weight(self) -> float:
        """Weight of each channel's squared difference in the cost (structure: mean over scales)."""
        return 1.0 / self.scales if self.objective == "structure_ssd" else 1.0

    def pixel_cost(self, ref: torch.Tensor, mov: torch.Tensor) -> torch.Tensor:
        """`(B, h, w)` dissimilarity of two descriptors: their weighted squared distance."""
        return self.channel_weight * ((ref - mov) ** 2).sum(dim=1)


def erode(valid: torch.Tensor, radius: int) -> torch.Tensor:
    """`(B, h, w)` bool: pixels whose whole `(2r+1)^2` neighbourhood is valid (descriptors there never see
    the edge of the data)."""
    if radius <= 0:
        return valid
    v = valid.unsqueeze(1).float()
    return -F.max_pool2d(-v, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0.5


def masked_mean(cost: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`(B,)` weighted mean of `(B, h, w)` cost; +inf where no pixel has weight."""
    total = weight.sum(dim=(1, 2))
    mean = (cost * weight).sum(dim=(1, 2)) / total.clamp_min(1e-6)
    return torch.where(total > 0, mean, torch.full_like(mean, float("inf")))
