"""Per-modality encoders: a feature pyramid {stride: (B, C_s, H/s, W/s)} with FGE at the configured strides."""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig, FGEConfig
from .fge import FeatureGradientEnhancer
from .paper_backbones import DinoV2ViT, ResNet50Features, load_weights

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
    """Small CNN: a stride-1 stem, then one strided stage (conv + residual block) per pyramid level."""

    def __init__(self, in_channels: int, config: EncoderConfig, fge: FGEConfig) -> None:
        super().__init__()
        strides, groups = config.strides, config.norm_groups
        self.stem = nn.Sequential(
            conv_block(in_channels, config.channels_at(1), 1, groups),
            conv_block(config.channels_at(1), config.channels_at(1), 1, groups),
        )
        self.stages = nn.ModuleDict()
        for prev, stride in zip(strides[:-1], strides[1:]):
            cin, cout = config.channels_at(prev), config.channels_at(stride)
            self.stages[str(stride)] = nn.Sequential(conv_block(cin, cout, 2, groups), ResidualBlock(cout, groups))
        self.fge = nn.ModuleDict(
            {str(s): FeatureGradientEnhancer(config.channels_at(s), fge) for s in config.fge_strides}
        )

    def forward(self, x: torch.Tensor) -> Pyramid:
        """`(B, C_in, H, W)` -> pyramid; H, W multiples of the coarsest stride."""
        out: Pyramid = {1: self.stem(x)}
        feat = out[1]
        for key, stage in self.stages.items():
            feat = stage(feat)
            if key in self.fge:
                feat = self.fge[key](feat)
            out[int(key)] = feat
        return out


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
    """`{"optical": encoder, "sar": encoder}` for the configured kind."""
    if config.kind == "lite":
        return nn.ModuleDict(
            {"optical": LiteEncoder(optical_channels, config, fge), "sar": LiteEncoder(sar_channels, config, fge)}
        )
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
