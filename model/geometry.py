"""Pixel grids, the backward warp and affine <-> flow conversions: the project's one coordinate convention.

Convention:
    - pixel coordinates ``(x, y)`` = (column, row); pixel centres at integers, origin top-left.
    - a feature map at stride ``s`` of a ``(H, W)`` image has shape ``(H / s, W / s)``; its cell
      ``j`` covers pixels ``s*j .. s*j + s - 1``, so its centre is at ``s*j + (s - 1) / 2``.
    - every flow is in full-resolution reference pixels, whatever the stride it lives at.
    - flow is the backward map: ``coregistered(p) = sar(p + flow(p))``.
    - sampling uses ``grid_sample(..., align_corners=False)`` with ``u = (2x + 1) / W - 1``,
      which is the same mapping at every stride.
    - affine ``A`` (2x3) maps reference pixels to SAR pixels: ``q = A @ [x, y, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IDENTITY_AFFINE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def identity_affine(batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`(B, 2, 3)` identity affines."""
    return torch.tensor(IDENTITY_AFFINE, device=device, dtype=dtype).expand(batch, 2, 3).clone()


def cell_centres(height: int, width: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """`(2, H/s, W/s)` full-resolution (x, y) of the cell centres of a stride-`s` map of a `(H, W)` image."""
    offset = (stride - 1) / 2.0
    ys = torch.arange(height // stride, device=device, dtype=torch.float32) * stride + offset
    xs = torch.arange(width // stride, device=device, dtype=torch.float32) * stride + offset
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])


def sample(image: torch.Tensor, points: torch.Tensor, full_size: tuple[int, int], mode: str = "bilinear",
           padding: str = "zeros") -> torch.Tensor:
    """Sample `image` `(B, C, h, w)` at full-resolution pixel positions `points` `(B, 2, H', W')`.

    `image` may be any stride of a `full_size = (H, W)` image; outside samples are zero (`padding="border"`:
    the nearest edge value, as for a flow).
    """
    height, width = full_size
    u = (2.0 * points[:, 0] + 1.0) / width - 1.0
    v = (2.0 * points[:, 1] + 1.0) / height - 1.0
    grid = torch.stack([u, v], dim=-1)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=False)


def sample_nan_aware(image: torch.Tensor, points: torch.Tensor, full_size: tuple[int, int],
                     tolerance: float) -> torch.Tensor:
    """Bilinear sample of `image` `(C, h, w)` (NaN or inf = missing) at `points` `(1, 2, H', W')` -> `(C, H', W')`.

    NaN wherever less than ``1 - tolerance`` of the bilinear support lies on valid pixels (outside the
    image or touching a NaN or inf).
    """
    valid = torch.isfinite(image).all(dim=0, keepdim=True)
    stack = torch.cat([torch.where(valid, image, torch.zeros_like(image)), valid.to(image.dtype)]).unsqueeze(0)
    out = sample(stack, points, full_size)[0]
    data, cover = out[:-1], out[-1]
    data[:, cover < 1 - tolerance] = float("nan")
    return data


def warp(image: torch.Tensor, flow: torch.Tensor, full_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Backward-warp `image` `(B, C, h, w)` with `flow` `(B, 2, h', w')`: ``out(p) = image(p + flow(p))``.

    `flow` lives on a grid of the same stride as its shape implies relative to `full_size`
    (default: the image's own size, i.e. stride 1). Outside samples are zero.
    """
    full_size = full_size or (image.shape[-2], image.shape[-1])
    stride = full_size[1] // flow.shape[-1]
    centres = cell_centres(full_size[0], full_size[1], stride, flow.device)
    return sample(image, centres.unsqueeze(0) + flow, full_size)


def inside(points: torch.Tensor, full_size: tuple[int, int]) -> torch.Tensor:
    """`(B, H', W')` bool: positions `(B, 2, H', W')` that fall inside the `(H, W)` image."""
    height, width = full_size
    x, y = points[:, 0], points[:, 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def apply_affine(affine: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map `points` `(B, N, 2)` by `affine` `(B, 2, 3)`."""
    return points @ affine[:, :, :2].transpose(1, 2) + affine[:, :, 2].unsqueeze(1)


def affine_to_flow(affine: torch.Tensor, full_size: tuple[int, int], stride: int = 1) -> torch.Tensor:
    """`(B, 2, H/s, W/s)` flow ``A p - p`` at the stride-`s` cell centres of a `full_size` image."""
    centres = cell_centres(full_size[0], full_size[1], stride, affine.device)
    batch = affine.shape[0]
    pts = centres.flatten(1).t().unsqueeze(0).expand(batch, -1, -1)
    moved = apply_affine(affine.to(pts.dtype), pts)
    return (moved - pts).transpose(1, 2).reshape(batch, 2, *centres.shape[1:])


def nearest_similarity(affine: torch.Tensor, full_size: tuple[int, int]) -> torch.Tensor:
    """`(B, 2, 3)` the similarity (rotation, uniform scale, shift) nearest to `affine` `(B, 2, 3)`: its linear part
    projected onto ``[[a, -b], [b, a]]`` (Frobenius), the motion at the `full_size` image's centre kept."""
    height, width = full_size
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=affine.dtype, device=affine.device)
    linear = affine[:, :, :2]
    a = (linear[:, 0, 0] + linear[:, 1, 1]) / 2
    b = (linear[:, 1, 0] - linear[:, 0, 1]) / 2
    similar = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)
    shift = (linear - similar) @ centre + affine[:, :, 2]
    return torch.cat([similar, shift.unsqueeze(-1)], dim=2)


def downsample_flow(flow: torch.Tensor, valid: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean full-resolution flow `(B, 2, H, W)` over each stride-`s` cell, and the cell's valid fraction > 0.5.

    The mean of the flow over a cell equals the flow at the cell centre for any affine flow.
    """
    if stride == 1:
        return flow, valid
    weights = valid.unsqueeze(1).float()
    total = F.avg_pool2d(weights, stride)
    mean = F.avg_pool2d(flow * weights, stride) / total.clamp_min(1e-6)
    return mean, total[:, 0] > 0.5


def upsample_flow(flow: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear upsampling of a flow by `factor`; units stay full-resolution pixels."""
    return F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False)


def pool_valid(valid: torch.Tensor, stride: int) -> torch.Tensor:
    """`(B, H/s, W/s)` bool: stride-`s` cells whose pixels are mostly valid."""
    if stride == 1:
        return valid
    return F.avg_pool2d(valid.unsqueeze(1).float(), stride)[:, 0] > 0.5


def corner_error(affine: torch.Tensor, target: torch.Tensor, full_size: tuple[int, int]) -> torch.Tensor:
    """`(B,)` mean distance in pixels between the image corners mapped by two affines."""
    height, width = full_size
    corners = torch.tensor(
        [[0.0, 0.0], [width - 1.0, 0.0], [0.0, height - 1.0], [width - 1.0, height - 1.0]],
        device=affine.device,
        dtype=affine.dtype,
    ).expand(affine.shape[0], 4, 2)
    diff = apply_affine(affine, corners) - apply_affine(target.to(affine.dtype), corners)
    return diff.norm(dim=-1).mean(dim=-1)
