"""Per-tile quality: the tile table row of DESIGN.md, including a structural similarity before and after."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage

GRADIENT_SIGMA = 2.0
"""Gaussian scale (px) of the gradient magnitudes whose correlation measures structural similarity."""
MIN_SIMILARITY_PIXELS = 64


class TileStatus(IntEnum):
    """Stored as int8 with CF flag_values / flag_meanings; 0 = not written yet."""

    PENDING = 0
    OK = 1
    LOW_CONFIDENCE = 2
    NO_DATA = 3
    FAILED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class TileRecord:
    """One row of the tile table."""

    index: int
    window: list[int]
    core: list[int]
    status: TileStatus
    error: str = ""
    mean_certainty: float = float("nan")
    confident_fraction: float = float("nan")
    affine: list[list[float]] = field(default_factory=lambda: [[np.nan] * 3] * 2)
    flow_median_px: float = float("nan")
    flow_p95_px: float = float("nan")
    similarity_before: float = float("nan")
    similarity_after: float = float("nan")
    seconds: float = float("nan")


def structural_similarity(optical_grey: np.ndarray, sar: np.ndarray, valid: np.ndarray) -> float:
    """Normalised cross-correlation of gradient magnitudes over `valid`: sign- and contrast-free, so it
    compares SAR and optical structure. NaN with too few valid pixels."""
    ok = valid & np.isfinite(sar) & np.isfinite(optical_grey)
    if ok.sum() < MIN_SIMILARITY_PIXELS:
        return float("nan")
    fill = lambda a: np.where(ok, a, np.nanmedian(np.where(ok, a, np.nan)))  # noqa: E731 - local helper
    ga = ndimage.gaussian_gradient_magnitude(fill(optical_grey).astype(np.float64), GRADIENT_SIGMA)[ok]
    gb = ndimage.gaussian_gradient_magnitude(fill(sar).astype(np.float64), GRADIENT_SIGMA)[ok]
    ga, gb = ga - ga.mean(), gb - gb.mean()
    denom = np.sqrt((ga * ga).sum() * (gb * gb).sum())
    return float((ga * gb).sum() / denom) if denom > 0 else float("nan")


def flow_statistics(flow: np.ndarray, certainty: np.ndarray, valid: np.ndarray,
                    confident_certainty: float) -> dict[str, float]:
    """Mean certainty, confident share and flow magnitude percentiles over `valid` pixels."""
    if not valid.any():
        return {}
    magnitude = np.hypot(flow[0], flow[1])[valid]
    cert = certainty[valid]
    return {"mean_certainty": float(cert.mean()), "confident_fraction": float((cert >= confident_certainty).mean()),
            "flow_median_px": float(np.median(magnitude)), "flow_p95_px": float(np.percentile(magnitude, 95))}
