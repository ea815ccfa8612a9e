"""An exhaustive shift search of the refinement's start: the masked SSD of unit descriptors at every integer
shift within a radius, by FFT correlation (CFOG's matching, on the refinement's own objective).

The network's global estimate is sometimes several px off in translation, beyond the Levenberg-Marquardt
basin; the search moves the start into it. Convention (see `geometry`): the shift ``t`` is found in the
reference frame of the start's warp, so the start becomes ``t + start(p + t)`` (`refine.compose`).
"""

from __future__ import annotations

import torch

from .config import RefineConfig
from .refine import compose, level_inputs, norm_floor, unit
from .similarity import Descriptor, erode

MIN_OVERLAP = 0.5
"""A shift is considered only where at least this share of the reference's weight stays overlapped."""
BASIN_PX = 4.0
"""The refinement's own capture range, px: a shift within it is left to the refinement (the search steps by
the coarsest level's factor and sees no rotation, so a small shift of its own only costs precision)."""


def correlate(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``sum_p a(p) b(p + t)`` over channels for every shift `t` `(B, 2h, 2w)` (index ``t mod 2h, 2w``), of
    `a`, `b` `(B, K, h, w)` zero-padded to `size` so that nothing wraps."""
    fa = torch.fft.rfft2(a, s=size)
    fb = torch.fft.rfft2(b, s=size)
    return torch.fft.irfft2((fa.conj() * fb).sum(dim=1), s=size)


def shift_costs(ref: torch.Tensor, ref_weight: torch.Tensor, moved: torch.Tensor,
                moved_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean SSD `(B, 2h, 2w)` of unit descriptors `(B, K, h, w)` at every shift, and the overlapped share
    of the reference's weight `(B, 2h, 2w)`."""
    h, w = ref.shape[-2:]
    size = (2 * h, 2 * w)
    wr, wm = ref_weight.unsqueeze(1), moved_weight.unsqueeze(1)
    overlap = correlate(wr, wm, size)
    energy = correlate(wr * (ref**2).sum(1, keepdim=True), wm, size) + correlate(wr, wm * (moved**2).sum(1, keepdim=True), size)
    cross = correlate(wr * ref, wm * moved, size)
    cost = (energy - 2 * cross) / overlap.clamp_min(1e-6)
    share = overlap / ref_weight.sum(dim=(1, 2)).clamp_min(1e-6).view(-1, 1, 1)
    return cost, share


def shift_offsets(size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The signed shifts `(2w,)` in x and `(2h,)` in y, in level cells, of `correlate`'s indices for maps of `size`
    `(h, w)` (index ``t mod 2h, 2w``)."""
    h, w = size
    dy = torch.arange(2 * h, device=device)
    dx = torch.arange(2 * w, device=device)
    return torch.where(dx >= w, dx - 2 * w, dx), torch.where(dy >= h, dy - 2 * h, dy)


def shift_window(dx: torch.Tensor, dy: torch.Tensor, reach: int) -> torch.Tensor:
    """`(2h, 2w)` whether each of `shift_offsets`' shifts lies within `reach` level cells in x and in y."""
    return (dy.abs()[:, None] <= reach) & (dx.abs()[None, :] <= reach)


def shift_at(dx: torch.Tensor, dy: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`(B, 2)` the (x, y) shifts, in level cells, at flat indices `index` `(B,)` of a `(2h, 2w)` cost map."""
    return torch.stack([dx[index % len(dx)], dy[index // len(dx)]], dim=1)


def search_translation(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor,
                       sar: torch.Tensor, sar_valid: torch.Tensor, start: torch.Tensor,
                       config: RefineConfig) -> torch.Tensor:
    """`start` `(B, 2, H, W)` moved by the shift, within `config.search_radius_px`, that minimises the masked SSD
    at the refinement's coarsest level, when that shift is beyond the refinement's own reach (`BASIN_PX`)."""
    if config.search_radius_px <= 0:
        return start
    factor = config.levels[0]
    inputs = level_inputs(descriptor, optical, optical_valid, sar, sar_valid, start, factor)
    floor = norm_floor(inputs.ref)
    moved = descriptor(inputs.sar)
    moved_weight = erode(inputs.sar_valid > 0.5, descriptor.radius).float()
    cost, share = shift_costs(unit(inputs.ref, floor), inputs.ref_weight, unit(moved, floor), moved_weight)
    h, w = inputs.ref.shape[-2:]
    reach = config.search_radius_px // factor
    dx, dy = shift_offsets((h, w), start.device)
    within = shift_window(dx, dy, reach)
    cost = torch.where(within & (share >= MIN_OVERLAP), cost, torch.full_like(cost, float("inf")))
    best = cost.flatten(1).argmin(dim=1)
    shift = shift_at(dx, dy, best).to(start.dtype) * factor  # (B, 2) px
    shift = torch.where(shift.abs().amax(dim=1, keepdim=True) > BASIN_PX, shift, torch.zeros_like(shift))
    residual = shift.view(-1, 2, 1, 1).expand_as(start)
    return compose(start, residual)
