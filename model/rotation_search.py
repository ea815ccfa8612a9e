"""A robust start for large transforms: a sweep of rotations (and scales), each with an exhaustive FFT shift
search of the refinement's objective at a coarse level, ranked by that objective alongside the network's own
estimate.

The network's global affine is sometimes far off on large rotations (protocol `soma`: +-20 deg), beyond the
refinement's capture range; a CFOG-style search at every rotation of a grid finds the basin instead. Every
candidate, the network's start included, is scored by the same centred cosine of the structure channels at its
best shift (`ShiftScorer`), and the best few are ranked by the guard's cost after a coarse fit, so the choice
between the network and the sweep is made by the similarity, never by the truth.

Convention (see `geometry`): a candidate is the similarity ``R`` (rotation and scale about the tile centre),
its flow ``R p - p``; its shift ``t`` is found in the reference frame of that warp, so the start becomes
``t + flow(p + t)`` (`refine.compose`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .config import RefineConfig
from .geometry import affine_to_flow, cell_centres, sample
from .refine import FULL_COVERAGE, compose, flow_costs, norm_floor, pooled, refine, unit
from .similarity import Descriptor, erode
from .translation_search import BASIN_PX, MIN_OVERLAP, shift_at, shift_offsets, shift_window


@dataclass
class SweepResult:
    """The best start per tile among the network's estimate and the sweep's candidates."""

    flow: torch.Tensor
    """`(B, 2, H, W)` the chosen start, shift included."""
    chosen: tuple[str, ...]
    """Per tile: "network" or "sweep"."""


def centred_similarity(angles_deg: torch.Tensor, scales: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(N, 2, 3)` similarities, reference px -> SAR px: rotation `angles_deg` `(N,)` and `scales` `(N,)` about the
    centre of a `size` tile."""
    height, width = size
    t = angles_deg.double() * math.pi / 180.0
    a, b = scales.double() * torch.cos(t), scales.double() * torch.sin(t)
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], dim=1)  # (N, 2, 2)
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=torch.float64, device=angles_deg.device)
    shift = centre - linear @ centre
    return torch.cat([linear, shift.unsqueeze(-1)], dim=2)


def sweep_grid(config: RefineConfig, device: torch.device) -> torch.Tensor:
    """`(N, 2)` (angle deg, scale) of the sweep: every angle of ``-max .. max`` in `sweep_step_deg` with every scale."""
    half = round(config.sweep_max_rotation_deg / config.sweep_step_deg)
    angles = torch.arange(-half, half + 1, device=device, dtype=torch.float64) * config.sweep_step_deg
    scales = torch.tensor(config.sweep_scales, device=device, dtype=torch.float64)
    return torch.cartesian_prod(angles, scales)


def centred(descriptor: torch.Tensor) -> torch.Tensor:
    """`(B, K, h, w)` minus its per-pixel mean over channels: the structure channels are all non-negative, so
    two raw descriptors agree in direction almost everywhere; centred, they agree only where the orientations do."""
    return descriptor - descriptor.mean(dim=1, keepdim=True)


class ShiftScorer:
    """The reference's side of the centred cosine at one level, described and transformed once per batch, then
    scored against any number of warped SAR descriptors: ``1 - cos`` `(B, 2h, 2w)` between the two descriptor
    fields over their overlap at every shift. Unlike the SSD, it does not favour a shift that overlaps flat
    ground (small descriptors on both sides)."""

    def __init__(self, ref: torch.Tensor, ref_weight: torch.Tensor) -> None:
        h, w = ref.shape[-2:]
        self.size = (2 * h, 2 * w)
        self.total = ref_weight.sum(dim=(1, 2)).clamp_min(1e-6).view(-1, 1, 1)
        wr = ref_weight.unsqueeze(1)
        spectrum = lambda t: torch.fft.rfft2(t, s=self.size).conj()  # noqa: E731
        self.weight, self.energy, self.ref = spectrum(wr), spectrum(wr * (ref**2).sum(1, keepdim=True)), spectrum(wr * ref)

    def __call__(self, moved: torch.Tensor, moved_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``1 - cos`` and the overlapped share of the reference's weight, both `(B, 2h, 2w)`, for a moved
        descriptor `(B, K, h, w)` and its weight `(B, h, w)`."""
        wm = moved_weight.unsqueeze(1)
        back = lambda a, t: torch.fft.irfft2((a * torch.fft.rfft2(t, s=self.size)).sum(dim=1), s=self.size)  # noqa: E731
        overlap, ref_energy = back(self.weight, wm), back(self.energy, wm)
        moved_energy, cross = back(self.weight, wm * (moved**2).sum(1, keepdim=True)), back(self.ref, wm * moved)
        cosine = cross / (ref_energy * moved_energy).clamp_min(1e-12).sqrt()
        return 1 - cosine, overlap / self.total


def sweep_candidates(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor,
                     sar: torch.Tensor, sar_valid: torch.Tensor, config: RefineConfig,
                     network: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(K, B, 2, H, W)` the `config.sweep_keep` best starts per tile of the sweep's rotations and scales, each
    moved by its best shift within `config.sweep_radius_px`, by the centred cosine at level `config.sweep_level`
    (the SAR is pooled once and resampled at that level for every candidate), best first; and `(B,)` whether
    the `network` start `(B, 2, H, W)`, scored the same way within `BASIN_PX`, beats them all (all False
    without one)."""
    batch, _, height, width = optical.shape
    size, factor = (height, width), config.sweep_level
    o, ov = pooled(optical, optical_valid, factor)
    ref = descriptor(o)
    floor = norm_floor(ref)
    scorer = ShiftScorer(centred(unit(ref, floor)), erode(ov, descriptor.radius).float())
    s, sv = pooled(sar * sar_valid.unsqueeze(1), sar_valid, factor)
    dx, dy = shift_offsets(ref.shape[-2:], optical.device)
    reach = config.sweep_radius_px // factor
    within = shift_window(dx, dy, reach)
    centres = cell_centres(height, width, factor, optical.device).unsqueeze(0)
    grid = sweep_grid(config, optical.device)
    similarities = centred_similarity(grid[:, 0], grid[:, 1], size).float()
    costs, shifts = [], []

    def shift_costs(points: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """`(B, 2h, 2w)` the scorer's cost of the SAR sampled at `points` `(B, 2, h, w)`, inf at a shift outside
        `allowed` or with too little overlap."""
        moved = sample(s, points, size)
        moved_valid = sample(sv.unsqueeze(1).float(), points, size)[:, 0] >= FULL_COVERAGE
        cost, share = scorer(centred(unit(descriptor(moved), floor)), erode(moved_valid, descriptor.radius).float())
        return torch.where(allowed & (share >= MIN_OVERLAP), cost, torch.full_like(cost, float("inf")))

    for similarity in similarities:
        points = centres + affine_to_flow(similarity.unsqueeze(0), size, factor)
        cost = shift_costs(points.expand(batch, -1, -1, -1), within)
        value, best = cost.flatten(1).min(dim=1)
        costs.append(value)
        shifts.append(shift_at(dx, dy, best).float() * factor)
    unbeaten = torch.zeros(batch, dtype=torch.bool, device=optical.device)
    if network is not None:
        cost = shift_costs(centres + F.avg_pool2d(network, factor), shift_window(dx, dy, BASIN_PX // factor))
        unbeaten = cost.flatten(1).amin(dim=1) <= torch.stack(costs).amin(dim=0)
    order = torch.stack(costs).argsort(dim=0)[: config.sweep_keep]  # (K, B)
    shifts = torch.stack(shifts)  # (N, B, 2)
    starts = []
    for rank in order:
        flow = torch.stack([affine_to_flow(similarities[i].unsqueeze(0), size)[0] for i in rank.tolist()])
        shift = shifts[rank, torch.arange(batch, device=optical.device)]
        starts.append(compose(flow, shift.view(batch, 2, 1, 1).expand_as(flow)))
    return torch.stack(starts), unbeaten


def sweep_start(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor, sar: torch.Tensor,
                sar_valid: torch.Tensor, network: torch.Tensor, config: RefineConfig) -> SweepResult:
    """Per tile, the best of the network's start `network` `(B, 2, H, W)` and the sweep's best candidates, each
    first fitted as a similarity at the sweep's level (`coarse_fit`), by the guard's full-resolution cost."""
    swept, unbeaten = sweep_candidates(descriptor, optical, optical_valid, sar, sar_valid, config, network)
    if bool(unbeaten.all()):  # the network's start already scores best: nothing to rank
        return SweepResult(flow=network, chosen=("network",) * len(unbeaten))
    candidates = torch.cat([network.unsqueeze(0), swept])  # (1 + K, B, 2, H, W)
    count, batch = candidates.shape[:2]
    repeat = lambda t: t.unsqueeze(0).expand(count, *t.shape).flatten(0, 1)  # noqa: E731
    fitted = refine(descriptor, repeat(optical), repeat(optical_valid), repeat(sar), repeat(sar_valid),
                    candidates.flatten(0, 1), coarse_fit(config)).flow.view_as(candidates)
    cost, share = flow_costs(descriptor, optical, optical_valid, sar, sar_valid, fitted)
    cost = torch.where(share >= config.guard_min_coverage, cost, torch.full_like(cost, float("inf")))
    best = cost.argmin(dim=0)
    index = torch.arange(batch, device=network.device)
    flow = fitted[best, index]
    # A winner within the refinement's basin of the network's start confirms it: the start is kept as it was
    # (the coarse fit is less precise than the network, and the full refinement follows).
    same_basin = (flow - network).norm(dim=1).flatten(1).mean(dim=1) < BASIN_PX
    keep = (best == 0) | same_basin | unbeaten
    return SweepResult(flow=torch.where(keep.view(-1, 1, 1, 1), network, flow),
                       chosen=tuple("network" if k else "sweep" for k in keep.tolist()))


def coarse_fit(config: RefineConfig) -> RefineConfig:
    """The refinement reduced to a similarity at the sweep's level: what ranks the candidates."""
    return replace(config, levels=(config.sweep_level,), iterations=(config.sweep_iterations,), field_spacing_px=0)
