"""Feature correlations: all-pairs (global matching) and a local window (refinement)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def global_correlation(ref: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every reference cell with every SAR cell.

    Shapes: `ref`, `sar` `(B, C, h, w)` -> `(B, h*w, h*w)`, rows reference cells, columns SAR cells.
    """
    a = F.normalize(ref.flatten(2), dim=1)
    b = F.normalize(sar.flatten(2), dim=1)
    return a.transpose(1, 2) @ b


def local_correlation(ref: torch.Tensor, sar: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine similarity of each reference cell with the SAR cells within `radius` of the same position.

    Shapes: `(B, C, h, w)` twice -> `(B, (2r+1)^2, h, w)`; channel ``(dy + r) * (2r + 1) + (dx + r)``
    holds displacement (dx, dy). Outside the map the similarity is zero.
    """
    a = F.normalize(ref, dim=1)
    b = F.pad(F.normalize(sar, dim=1), (radius, radius, radius, radius))
    h, w = ref.shape[-2:]
    size = 2 * radius + 1
    out = [(a * b[:, :, dy : dy + h, dx : dx + w]).sum(dim=1) for dy in range(size) for dx in range(size)]
    return torch.stack(out, dim=1)


def displacement_table(radius: int, device: torch.device | None = None) -> torch.Tensor:
    """`((2r+1)^2, 2)` (dx, dy) of each local-correlation channel."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=1)


def soft_argmax(corr: torch.Tensor, radius: int, temperature: torch.Tensor) -> torch.Tensor:
    """Expected displacement `(B, 2, h, w)` in cells under ``softmax(corr / temperature)`` over the window."""
    probs = torch.softmax(corr / temperature, dim=1)
    table = displacement_table(radius, corr.device)  # (K, 2)
    return torch.einsum("bkhw,kc->bchw", probs, table)
