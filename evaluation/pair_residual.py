"""A real pair's own SAR-optical misalignment as a smooth field, estimated by classical matching, so that an
evaluation case's truth is the injected warp alone and not the pair's unknown residual.

Why: offsets.csv gives one translation per 512^2 quadrant, but the residual is not rigid inside a quadrant
(S1 GRD is not terrain-corrected: range error follows relief). CFOG on the four 256^2 sub-crops of a
cleaned validation quadrant departs from the quadrant's translation by 0.96 px RMS (median over 19), more
than 1 px on 47 % of them, so a translation truth caps CMR@1 whatever the method.

Convention: like offsets.csv, ``SAR(p + r(p))`` shows the ground point of ``optical(p)``; `r` is `(2, H, W)`
(dx, dy) px on the pair's grid. The estimate is CFOG (`baselines.cfog_descriptor`) windows matched by FFT
SSD on a regular grid, edge hits and flat windows dropped, then a bicubic control grid fitted by iteratively
reweighted least squares with a diffusion term. Nothing of SOMA is used, so the truth does not lean towards
the model under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.refine import axis_weights, diffusion
from model.synthetic_warp import smooth_field

from .baselines import _grey, _sar, _ssd_match, cfog_descriptor

WINDOW_PX = 128
"""Side of a matched window."""
SEARCH_PX = 24
"""Largest offset searched each way; a peak at this distance is an edge hit and dropped."""
STEP_PX = 64
"""Spacing of the window grid."""
SPACING_PX = 256
"""Spacing of the fitted field's bicubic control points (5 x 5 on a 1024^2 pair)."""
SMOOTHNESS = 0.5
"""Diffusion weight between neighbouring control points, relative to one window's unit weight."""
MIN_STRUCTURE = 0.5
"""A window is matched when its optical descriptor energy is at least this share of the pair's median (flat
windows, water and fields, give no offset)."""
INLIER_PX = 1.5
"""IRLS: a window further than this from the fit is down-weighted (Cauchy), so a mismatch cannot pull it."""
IRLS_ITERATIONS = 5


@dataclass(frozen=True)
class PairResidual:
    """A pair's own residual: control grid, the windows it was fitted to and how well it explains them."""

    grid: np.ndarray
    """`(2, gy, gx)` control displacements, px, spanning the pair corner to corner."""
    size: tuple[int, int]
    """`(H, W)` of the pair."""
    centres: np.ndarray
    """`(n, 2)` window centres (x, y) that were matched."""
    offsets: np.ndarray
    """`(n, 2)` their matched (dx, dy)."""
    residuals: np.ndarray
    """`(n,)` distance of each window's offset from the fitted field, px."""

    def field(self) -> np.ndarray:
        """`(2, H, W)` float32 dense residual r(p)."""
        return smooth_field(self.grid, self.size)

    def explained(self, x0: int, y0: int, size: int) -> tuple[int, float]:
        """Matched windows centred in a crop, and the median distance of their offsets from the field there."""
        inside = ((self.centres[:, 0] >= x0) & (self.centres[:, 0] < x0 + size)
                  & (self.centres[:, 1] >= y0) & (self.centres[:, 1] < y0 + size))
        return int(inside.sum()), float(np.median(self.residuals[inside])) if inside.any() else float("inf")


def match_windows(optical: np.ndarray, sar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CFOG offsets `(n, 2)` (dx, dy) at window centres `(n, 2)` (x, y) of a pair, edge hits and flat windows
    dropped."""
    o, _ = _grey(optical)
    s, _ = _sar(sar)
    do, ds = cfog_descriptor(o), cfog_descriptor(s)
    energy = np.hypot(*np.gradient(o))
    height, width = o.shape
    half, margin = WINDOW_PX // 2, SEARCH_PX
    starts = lambda n: range(margin, n - WINDOW_PX - margin + 1, STEP_PX)  # noqa: E731
    boxes = [(y, x) for y in starts(height) for x in starts(width)]
    median_energy = np.median([energy[y : y + WINDOW_PX, x : x + WINDOW_PX].mean() for y, x in boxes])
    centres, offsets = [], []
    for y, x in boxes:
        if energy[y : y + WINDOW_PX, x : x + WINDOW_PX].mean() < MIN_STRUCTURE * median_energy:
            continue
        search = ds[:, y - margin : y + WINDOW_PX + margin, x - margin : x + WINDOW_PX + margin]
        dx, dy, _ = _ssd_match(do[:, y : y + WINDOW_PX, x : x + WINDOW_PX], search)
        dx, dy = dx - margin, dy - margin
        if max(abs(dx), abs(dy)) >= margin - 1:
            continue
        centres.append((x + half - 0.5, y + half - 0.5))
        offsets.append((dx, dy))
    return np.array(centres, dtype=np.float64).reshape(-1, 2), np.array(offsets, dtype=np.float64).reshape(-1, 2)


def estimate_pair_residual(optical: np.ndarray, sar: np.ndarray) -> PairResidual:
    """The pair's smooth residual field, fitted robustly to its CFOG window offsets."""
    size = (int(optical.shape[-2]), int(optical.shape[-1]))
    centres, offsets = match_windows(optical, sar)
    gy, gx = (max(2, int(np.ceil((n - 1) / SPACING_PX)) + 1) for n in size)
    if len(centres) < 4:
        grid = np.zeros((2, gy, gx))
        return PairResidual(grid, size, centres, offsets, np.full(len(centres), np.inf))
    phi_y = axis_weights(torch.from_numpy(centres[:, 1]), size[0], gy).numpy()
    phi_x = axis_weights(torch.from_numpy(centres[:, 0]), size[1], gx).numpy()
    phi = (phi_y[:, :, None] * phi_x[:, None, :]).reshape(len(centres), -1)
    reg = SMOOTHNESS * diffusion((gy, gx)).double().numpy() + 1e-6 * np.eye(gy * gx)
    weight = np.ones(len(centres))
    for _ in range(IRLS_ITERATIONS):
        normal = phi.T @ (phi * weight[:, None]) + reg
        params = np.linalg.solve(normal, phi.T @ (offsets * weight[:, None]))  # (g, 2)
        residuals = np.hypot(*(phi @ params - offsets).T)
        weight = 1.0 / (1.0 + (residuals / INLIER_PX) ** 2)
    grid = params.T.reshape(2, gy, gx)
    return PairResidual(grid, size, centres, offsets, residuals)

