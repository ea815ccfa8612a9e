"""SomaNet: two modality encoders (with FGE) feeding GLAM."""

from __future__ import annotations

import torch
from torch import nn

from .config import SomaConfig
from .encoders import build_encoders
from .glam import GLAM, GLAMOutput


class SomaNet(nn.Module):
    """`(optical, sar, valid masks)` -> `GLAMOutput` (affine, dense flow, certainty)."""

    def __init__(self, config: SomaConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        self.encoders = build_encoders(config.optical_channels, config.sar_channels, enc, config.fge)
        self.glam = GLAM({s: enc.channels_at(s) for s in enc.strides}, config.glam)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor, optical_valid: torch.Tensor,
                sar_valid: torch.Tensor, robust: bool | None = None,
                refine_from: torch.Tensor | None = None) -> GLAMOutput:
        """Normalised `optical` `(B, 3, H, W)`, `sar` `(B, 1, H, W)`, valid `(B, H, W)` bool.

        H and W must be multiples of `config.size_multiple`. `robust` (default: not training) selects
        the inference-time robust affine fit; `refine_from` is GLAM's training-time refinement start.
        """
        robust = (not self.training) if robust is None else robust
        ref = self.encoders["optical"](optical)
        mov = self.encoders["sar"](sar)
        return self.glam(ref, mov, optical_valid, sar_valid, robust=robust, refine_from=refine_from)


def build_network(config: SomaConfig, seed: int = 0) -> SomaNet:
    """A freshly initialised network; the same `seed` gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SomaNet(config)
