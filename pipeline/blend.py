"""Tile flows into one scene field: a weighted mean with weights certainty x taper, so seams do not show."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tiling import Box

CERTAINTY_FLOOR = 0.05
"""Added to the certainty in the blend weight, so an uncertain tile still counts where it is alone."""
TAPER_FLOOR = 1e-3
"""Smallest taper weight: a window's edge pixel still counts where no other window covers it."""


@dataclass
class TileFlow:
    """One registered window's outputs on the reference grid."""

    window: Box
    flow: np.ndarray
    """`(2, h, w)` float32."""
    certainty: np.ndarray
    """`(h, w)` float32."""
    affine: np.ndarray
    """`(2, 3)` float64, window px."""


def taper(height: int, width: int, ramp: int) -> np.ndarray:
    """`(h, w)` weights rising linearly from the window's edges over `ramp` px to 1 inside."""

    def one(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32) + 0.5
        return np.clip(np.minimum(i, n - i) / max(ramp, 1), TAPER_FLOOR, 1.0)

    return np.outer(one(height), one(width))


def blend(core: Box, tiles: list[TileFlow], ramp: int) -> tuple[np.ndarray, np.ndarray]:
    """The flow `(2, h, w)` and certainty `(h, w)` over `core` from every tile covering part of it.

    NaN flow and zero certainty where no tile covers a pixel.
    """
    num = np.zeros((2, core.height, core.width), np.float64)
    weight = np.zeros((core.height, core.width), np.float64)
    cert_num = np.zeros_like(weight)
    cert_weight = np.zeros_like(weight)
    for t in tiles:
        part = t.window.intersect(core)
        if part is None:
            continue
        src, dst = part.relative_to(t.window), part.relative_to(core)
        tp = taper(t.window.height, t.window.width, ramp)[src]
        cert = t.certainty[src]
        w = tp * (cert + CERTAINTY_FLOOR)
        num[(slice(None), *dst)] += w * t.flow[(slice(None), *src)]
        weight[dst] += w
        cert_num[dst] += tp * cert
        cert_weight[dst] += tp
    with np.errstate(invalid="ignore", divide="ignore"):
        flow = (num / weight).astype(np.float32)
        certainty = np.where(cert_weight > 0, cert_num / cert_weight, 0.0).astype(np.float32)
    return flow, certainty
