"""Per-modality encoders: a feature pyramid {stride: (B, C_s, H/s, W/s)} with FGE at the configured strides."""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig, FGEConfig
from .fge import FeatureGradientEnhancer
from .paper_backbones import DinoV2ViT, ResNet50Features, load_weights
from .structure import StructureChannels

Pyramid = dict[int, torch.Tensor]


def conv_block(cin: int, cout: int, stride: int, groups: int) -> nn.Sequential:
    """3x3 conv + GroupNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv blocks with an identity shortcut."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_block(channels, channels, 1, groups),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(min(groups, channels), channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class LiteEncoder(nn.Module):
    """Small CNN shared by both modalities: fixed structure channels, a stride-1 stem, then one strided stage
    (conv + residual block) per pyramid level, with FGE at the configured strides."""

    def __init__(self, config: EncoderConfig, fge: FGEConfig) -> None:
        super().__init__()
        strides, groups = config.strides, config.norm_groups
        self.structure = StructureChannels(config.structure_orientations, config.structure_sigmas,
                                           config.structure_pool_sigma)
        self.stem = nn.Sequential(
            conv_block(self.structure.channels, config.channels_at(1), 1, groups),
            conv_block(config.channels_at(1), config.channels_at(1), 1, groups),
        )
        self.stages = nn.ModuleDict()
        for prev, stride in zip(strides[:-1], strides[1:]):
            cin, cout = config.channels_at(prev), config.channels_at(stride)
            self.stages[str(stride)] = nn.Sequential(conv_block(cin, cout, 2, groups), ResidualBlock(cout, groups))
        self.fge = nn.ModuleDict(
            {str(s): FeatureGradientEnhancer(config.channels_at(s), fge) for s in config.fge_strides}
        )

    def forward(self, x: torch.Tensor, stem_residual: torch.Tensor | None = None) -> Pyramid:
        """`(B, C_in, H, W)` -> pyramid; H, W multiples of the coarsest stride. `stem_residual`
        `(B, C_1, H, W)` is a modality's own correction added to the shared stem."""
        feat = self.stem(self.structure(x))
        if stem_residual is not None:
            feat = feat + stem_residual
        out: Pyramid = {1: feat}
        for key, stage in self.stages.items():
            feat = stage(feat)
            if key in self.fge:
                feat = self.fge[key](feat)
            out[int(key)] = feat
        return out


class ModalityAdapter(nn.Module):
    """One modality's entry to the shared `LiteEncoder`: a small conv branch on its own bands whose output
    (zero at initialisation) is added to the shared stem, so each modality can add what structure misses."""

    def __init__(self, in_channels: int, shared: LiteEncoder, config: EncoderConfig) -> None:
        super().__init__()
        c1 = config.channels_at(1)
        self.branch = nn.Sequential(conv_block(in_channels, c1, 1, config.norm_groups), nn.Conv2d(c1, c1, 3, padding=1))
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)
        self.shared = [shared]  # a list keeps the shared encoder out of this module's parameters

    def forward(self, x: torch.Tensor) -> Pyramid:
        return self.shared[0](x, self.branch(x))


class PaperEncoder(nn.Module):
    """SOMA's published backbone: ResNet-50 (strides 2-16) + DINOv2 ViT-L/14 with registers at stride 16.

    The ViT is frozen and may be shared between the two modalities' encoders.
    """

    def __init__(self, in_channels: int, config: EncoderConfig, fge: FGEConfig, vit: DinoV2ViT) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resnet = ResNet50Features()
        if config.resnet_weights:
            load_weights(self.resnet, config.resnet_weights, "ResNet-50")
        self.vit = [vit]  # a list keeps the shared, frozen ViT out of this module's parameters
        self.stem = conv_block(in_channels, config.channels_at(1), 1, config.norm_groups)
        proj_in = {2: 64, 4: 256, 8: 512, 16: 1024 + vit.embed_dim}
        self.project = nn.ModuleDict({str(s): nn.Conv2d(proj_in[s], config.channels_at(s), 1) for s in proj_in})
        self.fge = nn.ModuleDict(
            {str(s): FeatureGradientEnhancer(config.channels_at(s), fge) for s in config.fge_strides}
        )

    def forward(self, x: torch.Tensor) -> Pyramid:
        rgb = x if x.shape[1] == 3 else x[:, :1].expand(-1, 3, -1, -1)
        feats = self.resnet(rgb)
        feats[16] = torch.cat([feats[16], self.vit[0].features_at_stride(rgb, 16)], dim=1)
        out: Pyramid = {1: self.stem(x)}
        for key, proj in self.project.items():
            f = proj(feats[int(key)])
            out[int(key)] = self.fge[key](f) if key in self.fge else f
        return out


def build_encoders(optical_channels: int, sar_channels: int, config: EncoderConfig, fge: FGEConfig) -> nn.ModuleDict:
    """`{"optical": encoder, "sar": encoder, ...}` for the configured kind; a shared part is registered once
    (`"shared"` for lite, `"vit"` for paper) so `.to(device)` moves it and checkpoints keep it."""
    if config.kind == "lite":
        shared = LiteEncoder(config, fge)
        return nn.ModuleDict({"optical": ModalityAdapter(optical_channels, shared, config),
                              "sar": ModalityAdapter(sar_channels, shared, config), "shared": shared})
    vit = DinoV2ViT(config.vit_embed_dim, config.vit_depth, config.vit_heads, config.vit_patch,
                    config.vit_registers, config.vit_pretrain_grid)
    if config.dinov2_weights:
        load_weights(vit, config.dinov2_weights, "DINOv2 ViT-L/14")
    vit.requires_grad_(False)
    # Registered once under "vit", so `.to(device)` moves it and checkpoints keep it.
    return nn.ModuleDict(
        {
            "optical": PaperEncoder(optical_channels, config, fge, vit),
            "sar": PaperEncoder(sar_channels, config, fge, vit),
            "vit": vit,
        }
    )
