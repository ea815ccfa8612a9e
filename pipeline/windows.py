"""The register step's data: one window's arrays as the model takes them, and its registration as the
write steps receive it through Ray's object store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sources import Readers
from .tiling import Tile


@dataclass
class TileInput:
    """One window's arrays, as the actor's model receives them."""

    index: int
    optical: np.ndarray
    """`(C, h, w)` float32, NaN where missing."""
    sar: np.ndarray
    """`(C, h, w)` float32 on the reference grid, NaN where missing."""


@dataclass
class TileOutput:
    """One window's registration, the error that stopped it, or neither (too little data to register)."""

    index: int
    flow: np.ndarray | None = None
    """`(2, h, w)` float32, window px."""
    certainty: np.ndarray | None = None
    """`(h, w)` float32."""
    affine: np.ndarray | None = None
    """`(2, 3)` float64, window px -> SAR px."""
    error: str = ""
    seconds: float = 0.0
    """Worker time of the window's batch (read + register), s; 0 for a window without data."""


def with_nan(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 copy of `image` `(C, h, w)` with NaN where `valid` `(h, w)` is false (the Registrar's marker)."""
    out = image.astype(np.float32)
    out[:, ~valid] = np.nan
    return out


def window_input(readers: Readers, tile: Tile, min_valid_fraction: float) -> TileInput | None:
    """The window's arrays, or None when optical and SAR overlap on less than `min_valid_fraction`."""
    optical = with_nan(*readers.optical.read(tile.window))
    sar = readers.sar.read(tile.window)
    overlap = np.isfinite(optical).all(axis=0) & np.isfinite(sar).all(axis=0)
    if overlap.mean() < min_valid_fraction:
        return None
    return TileInput(tile.index, optical, sar)
