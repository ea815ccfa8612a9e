"""Feature correlations: all-pairs (global matching) and a local window (refinement)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def matching_features(x: torch.Tensor) -> torch.Tensor:
    """Per-channel spatially centred, per-cell unit-norm features `(B, C, h, w)`.

    Centring removes what all cells share, so the cosine similarity reflects structure, not the offset
    that non-negative (post-ReLU) features have in common.
    """
    return F.normalize(x - x.mean(dim=(2, 3), keepdim=True), dim=1)


def global_correlation(ref: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every reference cell with every SAR cell (centred features).

    Shapes: `ref`, `sar` `(B, C, h, w)` -> `(B, h*w, h*w)`, rows reference cells, columns SAR cells.
    """
    a = matching_features(ref).flatten(2)
    b = matching_features(sar).flatten(2)
    return a.transpose(1, 2) @ b


def local_correlation(ref: torch.Tensor, sar: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine similarity (centred features) of each reference cell with the SAR cells within `radius`.

    Shapes: `(B, C, h, w)` twice -> `(B, (2r+1)^2, h, w)`; channel ``(dy + r) * (2r + 1) + (dx + r)``
    holds displacement (dx, dy). Outside the map the similarity is zero.
    """
    a = matching_features(ref)
    b = F.pad(matching_features(sar), (radius, radius, radius, radius))
    h, w = ref.shape[-2:]
    size = 2 * radius + 1
    out = [(a * b[:, :, dy : dy + h, dx : dx + w]).sum(dim=1) for dy in range(size) for dx in range(size)]
    return torch.stack(out, dim=1)


def displacement_table(radius: int, device: torch.device | None = None) -> torch.Tensor:
    """`((2r+1)^2, 2)` (dx, dy) of each local-correlation channel."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=1)


def soft_argmax(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """Expected displacement `(B, 2, h, w)` in cells under ``softmax(logits)`` over the local window."""
    probs = torch.softmax(logits, dim=1)
    table = displacement_table(radius, logits.device)  # (K, 2)
    return torch.einsum("bkhw,kc->bchw", probs, table)
