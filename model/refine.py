"""Test-time instance optimisation of each tile's deformation: the start's flow composed with a residual
affine plus a smooth bicubic field, fitted coarse to fine by Levenberg-Marquardt (forward-additive
Lucas-Kanade: the SAR image is resampled and its descriptor recomputed after every step) to a masked SSD
of unit descriptors, and a guard that keeps the best of refined, start and identity.

Convention (see `geometry`): flows are backward maps in full-resolution reference px. At each level the
SAR is first warped by the current flow (so the descriptors see it in the reference frame, whatever the
start's rotation), the residual r is fitted in that frame, and the flow becomes
``flow'(p) = r(p) + flow(p + r(p))``. All parameters are in px: the affine's translation, the motion its
linear part gives at half the tile size, and the field's control-point displacements. Each tile has its
own parameters and its own early stop, so a batch gives what its tiles give one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import RefineConfig
from .geometry import cell_centres, sample, warp
from .similarity import Descriptor, erode, masked_mean

BICUBIC_A = -0.75
"""Keys' cubic convolution parameter, as torch's bicubic interpolation uses."""
FULL_COVERAGE = 1 - 1e-3
"""A pooled or warped pixel is valid when at least this share of its support is."""
SAMPLING = "bicubic"
"""How the SAR image is resampled at each step (sharper than bilinear between pixels)."""
NORM_FLOOR = 0.1
"""Floor of a descriptor's per-pixel norm, relative to the reference descriptor's mean norm: each
descriptor is compared as a unit vector, so the cost measures the direction of structure, not its
contrast, while flat areas stay near zero."""
AFFINE_BASIS = 3
"""Per axis, the residual affine's basis: 1, (x - cx) / half, (y - cy) / half."""
DIAGONAL_FLOOR = 1e-6
"""Added to the damped diagonal, relative to the data term's mean curvature, so a parameter no pixel
constrains (a control point over invalid pixels) still has a solvable equation."""
DAMPING_UP, DAMPING_DOWN, MAX_DAMPING = 4.0, 3.0, 1e4
"""Levenberg-Marquardt: the damping grows on a rejected step, shrinks on an accepted one; a tile whose
damping exceeds the maximum has converged as far as it can."""


@dataclass
class Refined:
    """What the refinement found for a batch of tiles."""

    flow: torch.Tensor
    """`(B, 2, H, W)` refined flow, px."""
    iterations: tuple[tuple[int, ...], ...]
    """Per level, the iterations each tile used."""
    variance: torch.Tensor
    """`(B, H, W)` the finest level's Gauss-Newton posterior variance of each pixel's displacement,
    ``J(p) (H + R)^-1 J(p)^T`` times the tile's final cost, px^2 up to a constant: large where the similarity
    constrains the deformation poorly (along edges, on flat ground, far from structure)."""


def cubic_weights(coords: torch.Tensor, points: int) -> torch.Tensor:
    """`(n, g)` interpolation matrix of a bicubic control grid of `g` points spanning corner to corner,
    at control coordinates `coords` `(n,)` in [0, g - 1] (indices clamped at the border, as torch does)."""
    base = coords.floor()
    out = torch.zeros(coords.shape[0], points, dtype=coords.dtype, device=coords.device)
    a = BICUBIC_A
    for k in (-1, 0, 1, 2):
        t = (coords - (base + k)).abs()
        w = torch.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a)
        idx = (base + k).clamp(0, points - 1).long()
        out.scatter_add_(1, idx[:, None], w[:, None])
    return out


def axis_weights(coords: torch.Tensor, length: int, points: int) -> torch.Tensor:
    """`(n, g)` bicubic weights of `points` control points spanning an axis of `length` px corner to corner, at
    pixel coordinates `coords` `(n,)`."""
    return cubic_weights(coords * (points - 1) / (length - 1), points)


def diffusion(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """`(g, g)` quadratic form of the sum of squared neighbour differences over a `(gy, gx)` control grid."""
    gy, gx = grid
    index = torch.arange(gy * gx).view(gy, gx)
    form = torch.zeros(gy * gx, gy * gx, device=device)
    for a, b in ((index[1:, :], index[:-1, :]), (index[:, 1:], index[:, :-1])):
        for i, j in zip(a.flatten().tolist(), b.flatten().tolist()):
            form[i, i] += 1.0
            form[j, j] += 1.0
            form[i, j] -= 1.0
            form[j, i] -= 1.0
    return form


def control_points(size: tuple[int, int], spacing: int) -> tuple[int, int]:
    """Control-grid shape `(gy, gx)` for a tile of `size` at about `spacing` px (at least 2 x 2)."""
    return tuple(max(2, math.ceil((n - 1) / spacing) + 1) for n in size)  # type: ignore[return-value]


def basis(full_size: tuple[int, int], stride: int, grid: tuple[int, int] | None,
          device: torch.device) -> torch.Tensor:
    """`(h*w, n)` residual basis at the stride-`s` cell centres: affine (1, x, y scaled to +-1 at half the
    tile size) then, with a control `grid` `(gy, gx)`, the bicubic weight of each control point."""
    height, width = full_size
    centres = cell_centres(height, width, stride, device)
    half = max(height, width) / 2.0
    columns = [torch.ones_like(centres[0]), (centres[0] - (width - 1) / 2.0) / half,
               (centres[1] - (height - 1) / 2.0) / half]
    phi = torch.stack(columns, dim=-1).flatten(0, 1)
    if grid is None:
        return phi
    gy, gx = grid
    wy = axis_weights(centres[1, :, 0], height, gy)
    wx = axis_weights(centres[0, 0, :], width, gx)
    field = (wy[:, None, :, None] * wx[None, :, None, :]).flatten(0, 1).flatten(1)
    return torch.cat([phi, field], dim=1)


def regulariser(grid: tuple[int, int] | None, config: RefineConfig, device: torch.device) -> torch.Tensor:
    """`(n, n)` quadratic regulariser of one axis's parameters: ridge on the affine's linear part, diffusion
    (squared neighbour differences) plus a ridge on the control points."""
    n = AFFINE_BASIS + (grid[0] * grid[1] if grid else 0)
    reg = torch.zeros(n, n, device=device)
    reg[1, 1] = reg[2, 2] = config.linear_ridge
    if grid:
        field = slice(AFFINE_BASIS, n)
        reg[field, field] += config.field_smoothness * diffusion(grid, device)
        reg[field, field] += config.field_ridge * torch.eye(n - AFFINE_BASIS, device=device)
    return reg


def constraint(grid: tuple[int, int] | None, linear: str, device: torch.device) -> torch.Tensor:
    """`(2n, m)` map from the fitted parameters to both axes' residual parameters (x block then y block):
    the residual's linear part is a free affine, a similarity (rotation and uniform scale) or absent."""
    n = AFFINE_BASIS + (grid[0] * grid[1] if grid else 0)
    full = torch.eye(2 * n, device=device)
    if linear == "affine":
        return full
    x, y = 0, n
    keep = [i for i in range(2 * n) if i not in (x + 1, x + 2, y + 1, y + 2)]
    columns = [full[:, keep]]
    if linear == "similarity":
        scale = full[:, x + 1] + full[:, y + 2]
        rotation = full[:, y + 1] - full[:, x + 2]
        columns.append(torch.stack([scale, rotation], dim=1))
    elif linear != "translation":
        raise ValueError(f"unknown residual linear part {linear!r}")
    return torch.cat(columns, dim=1)


def compose(flow: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``r(p) + flow(p + r(p))`` at full resolution: the residual applied before the current flow."""
    full_size = (flow.shape[-2], flow.shape[-1])
    points = cell_centres(*full_size, 1, flow.device).unsqueeze(0) + residual
    return residual + sample(flow, points, full_size, padding="border")


def pooled(image: torch.Tensor, valid: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled image `(B, C, H/f, W/f)` and the cells whose support is all valid."""
    if factor == 1:
        return image, valid
    fraction = F.avg_pool2d(valid.unsqueeze(1).float(), factor)[:, 0]
    return F.avg_pool2d(image, factor), fraction >= FULL_COVERAGE


def warped_sar(sar: torch.Tensor, sar_valid: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAR `(B, C, H, W)` backward-warped by `flow` into the reference frame, and where it is valid."""
    moved = warp(sar * sar_valid.unsqueeze(1), flow)
    cover = warp(sar_valid.unsqueeze(1).float(), flow)[:, 0]
    return moved, cover >= FULL_COVERAGE


@dataclass
class LevelInputs:
    """One level's fixed inputs: the reference's descriptor and weight, the pre-warped SAR image and its valid
    mask (its descriptor is recomputed after every move: resampled descriptors blur between pixels, which
    an SSD rewards, a ripple at the pixel period as deep as the basin is at 1 px)."""

    factor: int
    ref: torch.Tensor
    """`(B, K, h, w)`."""
    ref_weight: torch.Tensor
    """`(B, h, w)` float."""
    sar: torch.Tensor
    """`(B, 1, h, w)` pooled SAR in the reference frame of the current flow."""
    sar_valid: torch.Tensor
    """`(B, h, w)` float."""


def level_inputs(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor, sar: torch.Tensor,
                 sar_valid: torch.Tensor, flow: torch.Tensor, factor: int) -> LevelInputs:
    """The reference's descriptor and the SAR warped by `flow`, both at one level (mean-pooled images)."""
    moved, moved_valid = warped_sar(sar, sar_valid, flow)
    o, ov = pooled(optical, optical_valid, factor)
    s, sv = pooled(moved, moved_valid, factor)
    return LevelInputs(factor, descriptor(o), erode(ov, descriptor.radius).float(), s, sv.float())


def gradients(descriptor: torch.Tensor, factor: int) -> torch.Tensor:
    """`(B, 3K, h, w)`: the descriptor and its x and y derivatives per full-resolution px (central
    differences on the level's grid, replicated at the border)."""
    padded = F.pad(descriptor, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / (2.0 * factor)
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / (2.0 * factor)
    return torch.cat([descriptor, dx, dy], dim=1)


def moved_image(image: torch.Tensor, valid: torch.Tensor, centres: torch.Tensor, residual: torch.Tensor,
                full_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A level's image `(B, 1, h, w)` and valid mask sampled at ``p + r(p)`` (`residual` `(B, 2, h, w)`)."""
    points = centres.unsqueeze(0) + residual
    cover = sample(valid.unsqueeze(1), points, full_size)[:, 0]
    return sample(image, points, full_size, mode=SAMPLING), cover >= FULL_COVERAGE


def norm_floor(ref: torch.Tensor) -> torch.Tensor:
    """`(B,)` floor of the descriptor norm: `NORM_FLOOR` times the reference descriptor's `(B, K, h, w)`
    mean norm."""
    return NORM_FLOOR * ref.norm(dim=1).flatten(1).mean(dim=1)


def unit(d: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """A descriptor `(B, K, h, w)` divided by its floored norm ``sqrt(|d|^2 + floor^2)`` per pixel."""
    return d / ((d**2).sum(dim=1, keepdim=True) + floor.view(-1, 1, 1, 1) ** 2).sqrt()


def fit_level(descriptor: Descriptor, inputs: LevelInputs, full_size: tuple[int, int], iterations: int,
              config: RefineConfig) -> tuple[torch.Tensor, tuple[int, ...], torch.Tensor]:
    """Levenberg-Marquardt on one level's residual; returns the full-resolution residual `(B, 2, H, W)`, the
    iterations each tile used and the posterior displacement variance `(B, H, W)` (see `Refined`)."""
    batch, channels, h, w = inputs.ref.shape
    device = inputs.ref.device
    grid = control_points(full_size, config.field_spacing_px) if config.field_spacing_px > 0 else None
    phi = basis(full_size, inputs.factor, grid, device)  # (hw, n)
    n = phi.shape[1]
    lift = constraint(grid, config.linear, device)  # (2n, m)
    reg = lift.t() @ torch.block_diag(*[regulariser(grid, config, device)] * 2) @ lift  # (m, m)
    centres = cell_centres(*full_size, inputs.factor, device)
    floor = norm_floor(inputs.ref)
    ref = unit(inputs.ref, floor).flatten(2)
    cw = descriptor.channel_weight

    def displacement(theta: torch.Tensor) -> torch.Tensor:
        return ((theta @ lift.t()).view(batch, 2, n) @ phi.t()).view(batch, 2, h, w)

    def evaluate(theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        moved, ok = moved_image(inputs.sar, inputs.sar_valid, centres, displacement(theta), full_size)
        stack = gradients(unit(descriptor(moved), floor), inputs.factor).flatten(2)
        weight = (inputs.ref_weight * erode(ok, descriptor.radius)).flatten(1)
        total = weight.sum(dim=1).clamp_min(1.0)
        gx, gy = stack[:, channels : 2 * channels], stack[:, 2 * channels :]
        error = stack[:, :channels] - ref
        cost = cw * ((error**2).sum(dim=1) * weight).sum(dim=1) / total
        return cost, error, gx, gy, weight / total[:, None]

    def normal_equations(error: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor,
                         weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss-Newton Hessian `(B, m, m)` and gradient `(B, m)` of the data term."""
        a = cw * (gx * gx).sum(dim=1) * weight
        b = cw * (gx * gy).sum(dim=1) * weight
        c = cw * (gy * gy).sum(dim=1) * weight
        jx = cw * (gx * error).sum(dim=1) * weight
        jy = cw * (gy * error).sum(dim=1) * weight
        hxx, hxy, hyy = ((phi.t() * v[:, None, :]) @ phi for v in (a, b, c))
        hessian = lift.t() @ torch.cat([torch.cat([hxx, hxy], 2), torch.cat([hxy, hyy], 2)], 1) @ lift
        return hessian, torch.cat([jx @ phi, jy @ phi], dim=1) @ lift

    theta = torch.zeros(batch, lift.shape[1], device=device)
    cost, error, gx, gy, weight = evaluate(theta)
    scale = None
    damping = torch.full((batch,), config.damping, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    used = torch.zeros(batch, dtype=torch.long, device=device)
    for _ in range(iterations):
        hessian, grad = normal_equations(error, gx, gy, weight)
        if scale is None:  # the regulariser's unit: the data term's mean curvature at the start
            scale = hessian.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
        penalty = scale[:, None, None] * reg
        diag = torch.diag_embed(hessian.diagonal(dim1=1, dim2=2) + scale[:, None] * DIAGONAL_FLOOR)
        system = hessian + penalty + damping[:, None, None] * diag
        rhs = grad + (penalty @ theta.unsqueeze(-1))[..., 0]
        step = -torch.linalg.solve(system, rhs.unsqueeze(-1))[..., 0] * active[:, None]
        trial = theta + step
        reg_now = 0.5 * (theta.unsqueeze(1) @ penalty @ theta.unsqueeze(-1))[:, 0, 0]
        reg_try = 0.5 * (trial.unsqueeze(1) @ penalty @ trial.unsqueeze(-1))[:, 0, 0]
        t_cost, t_error, t_gx, t_gy, t_weight = evaluate(trial)
        accept = active & (0.5 * t_cost + reg_try < 0.5 * cost + reg_now)
        pick = lambda new, old: torch.where(accept.view(-1, *([1] * (new.dim() - 1))), new, old)  # noqa: E731
        theta, cost, error, gx, gy, weight = map(pick, (trial, t_cost, t_error, t_gx, t_gy, t_weight),
                                                 (theta, cost, error, gx, gy, weight))
        used += active.long()
        moved_px = displacement(step).abs().amax(dim=(1, 2, 3))
        damping = torch.where(accept, damping / DAMPING_DOWN, damping * DAMPING_UP)
        active &= ~(accept & (moved_px < config.early_stop_px)) & (damping < MAX_DAMPING)
        if not active.any():
            break
    full_phi = basis(full_size, 1, grid, device)
    residual = ((theta @ lift.t()).view(batch, 2, n) @ full_phi.t()).view(batch, 2, *full_size)
    hessian, _ = normal_equations(error, gx, gy, weight)
    if scale is None:
        scale = hessian.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
    system = hessian + scale[:, None, None] * (reg + DIAGONAL_FLOOR * torch.eye(reg.shape[0], device=device))
    covariance = torch.linalg.inv(system) * cost[:, None, None]  # (B, m, m)
    jacobians = [full_phi @ lift[axis * n : (axis + 1) * n] for axis in (0, 1)]  # (HW, m) per axis
    variance = sum(((j @ covariance) * j).sum(dim=-1) for j in jacobians)
    return residual, tuple(used.tolist()), variance.view(batch, *full_size)


def refine(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor, sar: torch.Tensor,
           sar_valid: torch.Tensor, flow: torch.Tensor, config: RefineConfig) -> Refined:
    """Refine `flow` `(B, 2, H, W)` for normalised `optical` `(B, 3, H, W)` and `sar` `(B, 1, H, W)` with
    valid masks `(B, H, W)`, over the config's levels, coarse to fine."""
    full_size = (flow.shape[-2], flow.shape[-1])
    used = []
    for factor, iterations in zip(config.levels, config.iterations):
        inputs = level_inputs(descriptor, optical, optical_valid, sar, sar_valid, flow, factor)
        residual, its, variance = fit_level(descriptor, inputs, full_size, iterations, config)
        flow = compose(flow, residual)
        used.append(its)
    return Refined(flow=flow, iterations=tuple(used), variance=variance)


def flow_costs(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor, sar: torch.Tensor,
               sar_valid: torch.Tensor, flows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean cost `(N, B)` of each of `flows` `(N, B, 2, H, W)` as it is, at full resolution, and the
    share `(N, B)` of the reference's weight each leaves overlapped (the reference described once)."""
    ref = descriptor(optical)
    ref_weight = erode(optical_valid, descriptor.radius).float()
    floor = norm_floor(ref)
    ref = unit(ref, floor)
    costs, shares = [], []
    for flow in flows:
        moved, moved_valid = warped_sar(sar, sar_valid, flow)
        weight = ref_weight * erode(moved_valid, descriptor.radius)
        costs.append(masked_mean(descriptor.pixel_cost(ref, unit(descriptor(moved), floor)), weight))
        shares.append(weight.sum(dim=(1, 2)) / ref_weight.sum(dim=(1, 2)).clamp_min(1.0))
    return torch.stack(costs), torch.stack(shares)


@dataclass
class Guarded:
    """The guard's choice per tile among the refined flow, the start and the identity."""

    flow: torch.Tensor
    """`(B, 2, H, W)` the chosen flow."""
    variance: torch.Tensor
    """`(B, H, W)` the refinement's posterior displacement variance (`Refined.variance`)."""
    chosen: tuple[str, ...]
    """Per tile: "refined", "start" or "identity"."""


CANDIDATES = ("refined", "start", "identity")


def refine_guarded(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor, sar: torch.Tensor,
                   sar_valid: torch.Tensor, start: torch.Tensor, config: RefineConfig,
                   alternative: torch.Tensor | None = None) -> Guarded:
    """`refine` from `start` (and from an `alternative` start `(B, 2, H, W)`, e.g. the rotation sweep's, when given),
    then keep per tile whichever of the refined flows, the starts and identity scores best by the similarity
    (never worse than the start or no correction); a candidate that overlaps less than
    `config.guard_min_coverage` of the reference is refused."""
    starts = [start] if alternative is None else [start, alternative]
    twice = lambda t: torch.cat([t] * len(starts))  # noqa: E731
    result = refine(descriptor, twice(optical), twice(optical_valid), twice(sar), twice(sar_valid),
                    torch.cat(starts), config)
    refined = result.flow.view(len(starts), *start.shape)
    variance = result.variance.view(len(starts), *start.shape[:1], *result.variance.shape[-2:])
    flows = torch.cat([refined, torch.stack(starts), torch.zeros_like(start).unsqueeze(0)])  # (2S + 1, B, 2, H, W)
    refined_name, start_name, identity_name = CANDIDATES
    names = (refined_name,) * len(starts) + (start_name,) * len(starts) + (identity_name,)
    cost, share = flow_costs(descriptor, optical, optical_valid, sar, sar_valid, flows)
    cost = torch.where(share >= config.guard_min_coverage, cost, torch.full_like(cost, float("inf")))
    best = cost.argmin(dim=0)
    batch = torch.arange(start.shape[0], device=start.device)
    return Guarded(flow=flows[best, batch], variance=variance[best % len(starts), batch],
                   chosen=tuple(names[i] for i in best.tolist()))
