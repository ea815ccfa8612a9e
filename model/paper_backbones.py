"""The `paper` config's backbones in plain torch: ResNet-50 and DINOv2 ViT-L/14 with registers.

Parameter names follow torchvision's `resnet50` and timm's `vit_large_patch14_reg4_dinov2`, so their
published weight files load as they are. Weights come only from local files the user names; nothing is
ever downloaded. (timm itself needs torchvision, which this project's torch build cannot import.)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IGNORED_KEY_PARTS = ("num_batches_tracked", "fc.", "head.", "mask_token")
LAYER_NORM_EPS = 1e-6
BN_EPS = 1e-5


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (small batches cannot re-estimate them)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + BN_EPS).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class Bottleneck(nn.Module):
    """torchvision ResNet bottleneck (stride on the 3x3 conv)."""

    EXPANSION = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), FrozenBatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50Features(nn.Module):
    """ResNet-50 up to layer3: `(B, 3, H, W)` -> {2: 64ch, 4: 256ch, 8: 512ch, 16: 1024ch}."""

    LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2))  # (width, blocks, stride) of layer1..3

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        cin = 64
        for i, (width, blocks, stride) in enumerate(self.LAYERS, start=1):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * Bottleneck.EXPANSION
            setattr(self, f"layer{i}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        s2 = torch.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(F.max_pool2d(s2, 3, stride=2, padding=1))
        s8 = self.layer2(s4)
        return {2: s2, 4: s4, 8: s8, 16: self.layer3(s8)}


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    MLP_RATIO = 4

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * self.MLP_RATIO)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DinoV2ViT(nn.Module):
    """DINOv2 ViT with register tokens (timm layout); patch tokens returned as a feature map."""

    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(self, dim: int, depth: int, heads: int, patch: int, registers: int, pretrain_grid: int) -> None:
        super().__init__()
        self.embed_dim, self.patch = dim, patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, registers, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, pretrain_grid**2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.register_buffer("mean", torch.tensor(self.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        grid = int(self.pos_embed.shape[1] ** 0.5)
        pos = self.pos_embed.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(gh, gw), mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def features_at_stride(self, image: torch.Tensor, stride: int) -> torch.Tensor:
        """`(B, 3, H, W)` in [0, 1]-ish -> `(B, D, H/stride, W/stride)` patch features.

        The image is resized so the 14-px patch grid falls on the stride grid.
        """
        gh, gw = image.shape[-2] // stride, image.shape[-1] // stride
        x = F.interpolate(image, size=(gh * self.patch, gw * self.patch), mode="bilinear", align_corners=False)
        x = self.patch_embed((x - self.mean) / self.std).flatten(2).transpose(1, 2)
        x = x + self._pos_embed(gh, gw)
        b = x.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.reg_token.expand(b, -1, -1), x], dim=1)
        x = self.norm(self.blocks(x))[:, 1 + self.reg_token.shape[1]:]
        return x.transpose(1, 2).reshape(b, self.embed_dim, gh, gw)


def load_weights(module: nn.Module, path: str | Path, what: str) -> None:
    """Load a local state dict (`.pt`/`.pth` with `weights_only=True`, or `.safetensors`) into `module`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights not found at {path}: the paper config loads backbone weights only from a local "
            "file you name (nothing is downloaded)"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ImportError(f"reading {path} needs the `safetensors` package") from exc
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict for {what}")
    state = {k: v for k, v in state.items() if not any(part in k for part in IGNORED_KEY_PARTS)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {what}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
