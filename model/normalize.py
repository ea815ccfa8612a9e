"""Robust per-tile normalisation of optical and SAR arrays of any dtype, with validity masks.

Convention:
    - optical `(C, H, W)` with C in 1, 3, 4 or `(H, W)`: bands in red, green, blue[, nir] order;
      C = 1 is repeated to three channels, C = 4 drops the near infrared.
    - SAR `(C, H, W)` with C in 1, 2 or `(H, W)`: with two bands (VV, VH) the model sees VH.
    - float SAR whose valid values are all >= 0 is taken as linear power and converted to dB;
      anything else (dB, uint8 or uint16 scaled products) is used as it is.
    - each channel is stretched between its 2nd and 98th percentile over valid pixels to [0, 1];
      missing pixels (NaN, inf, `nodata`) are 0 and marked in the valid mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError

OPTICAL_BANDS = (1, 3, 4)
SAR_BANDS = (1, 2)
SAR_MODEL_BAND_OF_TWO = 1
"""Index of the band the model uses when SAR has two (VV, VH): VH, as in training."""
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 98.0
MIN_LINEAR_POWER = 1e-6
MIN_SIZE = 64


@dataclass(frozen=True)
class PreparedTile:
    """A normalised tile ready for the network."""

    image: np.ndarray
    """`(C, H, W)` float32 in [0, 1], 0 where invalid."""
    valid: np.ndarray
    """`(H, W)` bool."""


def _as_chw(array: np.ndarray, name: str, allowed: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InvalidInputError(f"{name}: expected (C, H, W) or (H, W), got an array of ndim {array.ndim}")
    if array.shape[0] not in allowed:
        raise InvalidInputError(
            f"{name}: {array.shape[0]} channels, expected one of {allowed} (bands first: (C, H, W))")
    if min(array.shape[1:]) < MIN_SIZE:
        raise InvalidInputError(f"{name}: {array.shape[1]}x{array.shape[2]} is too small; H and W must be >= {MIN_SIZE}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InvalidInputError(f"{name}: dtype {array.dtype} is not numeric")
    return array


def _valid(array: np.ndarray, nodata: float | None) -> np.ndarray:
    data = array.astype(np.float64, copy=False)
    finite = np.isfinite(data).all(axis=0)
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)):
        return finite
    return finite & ~(data == nodata).all(axis=0)


def _stretch(channel: np.ndarray, valid: np.ndarray) -> np.ndarray:
    values = channel[valid]
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = high - low if high > low else 1.0
    out = np.clip((channel - low) / scale, 0.0, 1.0)
    out[~valid] = 0.0
    return out.astype(np.float32)


def _normalise(array: np.ndarray, valid: np.ndarray, name: str) -> np.ndarray:
    if not valid.any():
        raise InvalidInputError(f"{name}: no valid pixels (all NaN, inf or nodata)")
    data = np.where(valid, array.astype(np.float64), 0.0)
    return np.stack([_stretch(c, valid) for c in data])


def prepare_optical(array: np.ndarray, nodata: float | None = None) -> PreparedTile:
    """Optical reference -> 3 normalised channels (red, green, blue) and its valid mask."""
    array = _as_chw(array, "optical", OPTICAL_BANDS)
    valid = _valid(array, nodata)
    rgb = np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array[:3]
    return PreparedTile(_normalise(rgb, valid, "optical"), valid)


def prepare_sar(array: np.ndarray, nodata: float | None = None) -> PreparedTile:
    """SAR -> 1 normalised channel (dB-like) and its valid mask."""
    array = _as_chw(array, "sar", SAR_BANDS)
    band = array[SAR_MODEL_BAND_OF_TWO : SAR_MODEL_BAND_OF_TWO + 1] if array.shape[0] == 2 else array
    valid = _valid(band, nodata)
    data = band.astype(np.float64)
    if np.issubdtype(band.dtype, np.floating) and valid.any() and (data[:, valid] >= 0).all():
        with np.errstate(divide="ignore", invalid="ignore"):
            data = 10.0 * np.log10(np.maximum(data, MIN_LINEAR_POWER))
    return PreparedTile(_normalise(data, valid, "sar"), valid)
