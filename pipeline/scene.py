"""What a run takes (a scene pair) and what it returns (a summary)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScenePair:
    """One Sentinel-2 reference and one Sentinel-1 scene to register onto it.

    Each side is one or more rasters (local paths or s3:// URLs) whose bands are stacked in order:
    a multi-band GeoTIFF, or one COG per band as STAC assets give them (red, green, blue[, nir]; vv, vh).
    """

    pair_id: str
    optical: tuple[str, ...]
    sar: tuple[str, ...]
    optical_item: str | None = None
    """Source STAC item id of the optical scene, when known."""
    sar_item: str | None = None
    sar_nodata: float | None = None
    """SAR nodata value when the files do not declare one (NaN always counts as missing)."""
    optical_nodata: float | None = None
    """Optical nodata when the files do not declare one; integer rasters default to 0 (Sentinel-2 L2A)."""
    optical_datetime: str | None = None
    """Acquisition time of the optical scene, ISO 8601 UTC, when known (recorded in the group's attrs)."""
    sar_datetime: str | None = None
    """Acquisition time of the SAR scene, ISO 8601 UTC, when known (a cube's time axis; needed to append)."""
    sar_polarisations: tuple[str, ...] | None = None
    """Polarisation of each SAR raster, in order (`vv`, `vh`), when known; else read from the file names."""

    def __post_init__(self) -> None:
        if isinstance(self.optical, str) or isinstance(self.sar, str):
            raise TypeError("ScenePair.optical and .sar are tuples of paths or URLs, not a single string")
        if not self.optical or not self.sar:
            raise ValueError(f"pair {self.pair_id!r}: needs at least one optical and one SAR raster")
        if not self.pair_id or "/" in self.pair_id:
            raise ValueError(f"pair id {self.pair_id!r} must be a non-empty name without '/'")


@dataclass(frozen=True)
class PairResult:
    """The outcome of `register_pair`."""

    pair_id: str
    store: str
    """The pair's Zarr group."""
    tiles: int
    status_counts: dict[str, int] = field(default_factory=dict)
    written_tiles: int = 0
    """Tiles written by this run (0 when the pair was already complete)."""
    seconds: float = 0.0
    already_complete: bool = False
    quicklook: str | None = None
