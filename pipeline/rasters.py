"""Window-by-window reading of the optical reference and of the SAR reprojected onto its grid.

Local paths and s3:// URLs both go through GDAL (s3:// is /vsis3/, with `StorageOptions.gdal()` for a
custom endpoint); nothing reads a whole scene.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio._err import CPLE_AWSError, CPLE_BaseError, CPLE_HttpResponseError
from rasterio.errors import RasterioIOError
from rasterio.session import AWSSession
from rasterio.transform import Affine, array_bounds
from rasterio.warp import transform_bounds
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from model.errors import SomaError

from .config import StorageOptions
from .tiling import Box

OPTICAL_BANDS_USED = 4
"""At most red, green, blue, nir are read; further bands are ignored."""
SAR_BANDS_ACCEPTED = (1, 2)
"""VV or VH, or both."""
MIN_SCENE_PX = 64
"""The model's smallest input side."""
READ_ATTEMPTS = 3
"""Tries of one open or window read whose failure is transient (GDAL has already retried each request)."""
READ_BACKOFF_S = 2.0
"""Wait before the second try; doubled before each further one."""
TRANSIENT_S3_MESSAGES = ("reduce your request rate", "internal error", "service unavailable", "request timeout",
                         "please try again")
"""S3 error messages (SlowDown, InternalError, ServiceUnavailable, RequestTimeout) GDAL reports as its AWS
error: worth another try, unlike AccessDenied or NoSuchKey."""
T = TypeVar("T")


class RasterError(SomaError, ValueError):
    """A raster cannot be used: the message names the file and the problem."""


class TransientReadError(SomaError, OSError):
    """A raster read from object storage failed in a way that may pass (timeouts, 5xx, connection resets) and
    kept failing through the retries: worth retrying later (the flows do), unlike a `RasterError`."""


def _is_transient(exc: BaseException | None) -> bool:
    """Whether GDAL's error (`exc` or one behind it) is a network failure (curl) or a retryable S3 reply."""
    while exc is not None:
        if isinstance(exc, CPLE_HttpResponseError):
            return True
        if isinstance(exc, CPLE_AWSError):
            return any(m in str(exc).lower() for m in TRANSIENT_S3_MESSAGES)
        exc = exc.__cause__ or exc.__context__
    return False


def _retrying(action: Callable[[], T], what: str) -> T:
    """`action()`, tried again with backoff while it fails transiently; a `RasterError` (`what` and GDAL's
    message) when the failure is the file's, a `TransientReadError` when the retries ran out."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return action()
        except (RasterioIOError, CPLE_BaseError) as exc:
            if not _is_transient(exc):
                raise RasterError(f"{what} ({exc})") from exc
            if attempt + 1 == READ_ATTEMPTS:
                raise TransientReadError(f"{what}: still failing after {READ_ATTEMPTS} tries ({exc})") from exc
        time.sleep(READ_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Grid:
    """The reference grid: the output grid of every array of a pair."""

    crs: rasterio.crs.CRS
    transform: Affine
    height: int
    width: int

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(x, y) pixel size in CRS units (metres for UTM)."""
        return abs(self.transform.a), abs(self.transform.e)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x, y) along the columns and rows."""
        x = self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)
        y = self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)
        return x, y


@contextlib.contextmanager
def raster_env(storage: StorageOptions, cache_mib: int) -> Iterator[None]:
    """GDAL environment: a block cache of `cache_mib`, and s3:// rasters at `storage`'s endpoint."""
    session = AWSSession(aws_access_key_id=storage.key, aws_secret_access_key=storage.secret,
                         region_name=storage.region,
                         endpoint_url=storage.gdal().get("AWS_S3_ENDPOINT")) if storage.endpoint_url else None
    options = {k: v for k, v in storage.gdal().items() if k != "AWS_S3_ENDPOINT"}
    # rasterio passes GDAL_CACHEMAX to GDALSetCacheMax64: bytes, not GDAL's "< 100000 means MB" rule
    with rasterio.Env(session=session, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_CACHEMAX=cache_mib * 2**20,
                      **options):
        yield


def _open(href: str) -> rasterio.io.DatasetReader:
    ds = _retrying(lambda: rasterio.open(href), f"{href}: cannot open as a raster")
    kind = np.dtype(ds.dtypes[0]).kind
    if kind not in "uif":
        ds.close()
        raise RasterError(f"{href}: data type {ds.dtypes[0]} is not usable (expected integer or float; complex "
                          "SAR, e.g. SLC, must be detected to amplitude or dB first)")
    try:  # a truncated file opens but fails on its last blocks: find out before anything is written
        for row, col in ((0, 0), (ds.height - 1, ds.width - 1)):
            _retrying(lambda: ds.read(window=Window(col, row, 1, 1)), f"{href}: unreadable data, truncated or corrupt")
    except Exception:
        ds.close()
        raise
    return ds


class _Stack:
    """Several rasters read as one band stack."""

    def __init__(self, hrefs: tuple[str, ...]) -> None:
        self.hrefs = hrefs
        self.datasets: list[rasterio.io.DatasetReader] = []
        try:
            for href in hrefs:
                self.datasets.append(_open(href))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        for ds in self.datasets:
            ds.close()


class OpticalReader(_Stack):
    """The Sentinel-2 reference: its grid, and `(C, h, w)` windows with a validity mask."""

    def __init__(self, hrefs: tuple[str, ...], nodata: float | None = None) -> None:
        super().__init__(hrefs)
        first = self.datasets[0]
        if first.crs is None:
            raise RasterError(f"{hrefs[0]}: optical raster has no CRS; a georeferenced reference is required")
        self.grid = Grid(first.crs, first.transform, first.height, first.width)
        if min(first.height, first.width) < MIN_SCENE_PX:
            raise RasterError(f"{hrefs[0]}: scene is {first.height} x {first.width} px; the model needs at least "
                              f"{MIN_SCENE_PX} x {MIN_SCENE_PX}")
        for href, ds in zip(hrefs[1:], self.datasets[1:]):
            if (ds.crs, ds.transform, ds.shape) != (first.crs, first.transform, first.shape):
                raise RasterError(f"{href}: optical band is not on the grid of {hrefs[0]}")
        self.bands = [(ds, b) for ds in self.datasets for b in ds.indexes][:OPTICAL_BANDS_USED]
        if len(self.bands) == 2:
            self.bands = self.bands[:1]  # two bands are not a colour image: use the first as grey
        self.nodata = [self._nodata(ds, nodata) for ds, _ in self.bands]

    @staticmethod
    def _nodata(ds: rasterio.io.DatasetReader, given: float | None) -> float | None:
        if ds.nodata is not None:
            return ds.nodata
        if given is not None:
            return given
        return 0 if np.issubdtype(np.dtype(ds.dtypes[0]), np.integer) else None

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """`(C, h, w)` in the file's dtype and the `(h, w)` mask of pixels valid in every band."""
        window = Window(box.col, box.row, box.width, box.height)
        bands, valid = [], np.ones((box.height, box.width), bool)
        for (ds, b), nodata in zip(self.bands, self.nodata):
            band = _retrying(lambda: ds.read(b, window=window), f"{ds.name}: read of window {box} failed")
            if np.issubdtype(band.dtype, np.floating):
                valid &= np.isfinite(band)
            if nodata is not None:
                valid &= band != nodata
            bands.append(band)
        return np.stack(bands), valid

    def overview(self, height: int, width: int) -> np.ndarray:
        """The whole scene averaged down to `(C, height, width)` float32 (NaN where missing)."""
        out = []
        for (ds, b), nodata in zip(self.bands, self.nodata):
            band = ds.read(b, out_shape=(height, width), resampling=Resampling.average, masked=True)
            band = band.astype(np.float32).filled(np.nan)
            if nodata is not None:
                band[band == nodata] = np.nan
            out.append(band)
        return np.stack(out)


def _overlaps(ds: rasterio.io.DatasetReader, grid: Grid) -> bool:
    """Whether `ds`'s bounds, taken into the reference CRS, intersect the reference grid's bounds."""
    left, bottom, right, top = transform_bounds(ds.crs, grid.crs, *ds.bounds)
    g_left, g_bottom, g_right, g_top = array_bounds(grid.height, grid.width, grid.transform)
    return left < g_right and right > g_left and bottom < g_top and top > g_bottom


class SarReader(_Stack):
    """The Sentinel-1 scene resampled onto the reference grid (any CRS or UTM zone), padded by `margin`
    so windows can be read with a margin around them; NaN where there is no data."""

    def __init__(self, hrefs: tuple[str, ...], grid: Grid, margin: int, nodata: float | None = None) -> None:
        super().__init__(hrefs)
        self.margin = margin
        padded = grid.transform @ Affine.translation(-margin, -margin)
        self.vrts = []
        for href, ds in zip(hrefs, self.datasets):
            if ds.crs is None:
                raise RasterError(f"{href}: SAR raster has no CRS; it cannot be placed on the optical grid")
            src_nodata = ds.nodata if ds.nodata is not None else nodata
            self.vrts.append(WarpedVRT(ds, crs=grid.crs, transform=padded, width=grid.width + 2 * margin,
                                       height=grid.height + 2 * margin, resampling=Resampling.bilinear,
                                       src_nodata=src_nodata, nodata=np.nan, dtype="float32"))
        self.bands = sum(ds.count for ds in self.datasets)
        if self.bands not in SAR_BANDS_ACCEPTED:
            raise RasterError(f"{', '.join(hrefs)}: SAR has {self.bands} bands; expected 1 (VV or VH) or 2 (VV, VH)")
        if not any(_overlaps(ds, grid) for ds in self.datasets):
            raise RasterError(f"{hrefs[0]}: SAR footprint does not overlap the optical scene")

    def close(self) -> None:
        for vrt in getattr(self, "vrts", []):
            vrt.close()
        super().close()

    def read(self, box: Box, pad: int = 0) -> np.ndarray:
        """`(C, h + 2 pad, w + 2 pad)` float32 around `box` (reference px), NaN where missing; pad <= margin."""
        if pad > self.margin:
            raise ValueError(f"pad {pad} exceeds the SAR read margin {self.margin}")
        window = Window(box.col - pad + self.margin, box.row - pad + self.margin, box.width + 2 * pad,
                        box.height + 2 * pad)
        out = []
        for vrt in self.vrts:
            data = _retrying(lambda: vrt.read(window=window, masked=True),
                             f"{vrt.src_dataset.name}: read of window {box} failed")
            out.append(data.astype(np.float32).filled(np.nan))
        return np.concatenate(out)

    def overview(self, grid: Grid, height: int, width: int) -> np.ndarray:
        """The SAR on the reference grid (before correction) averaged down to `(C, height, width)`."""
        window = Window(self.margin, self.margin, grid.width, grid.height)
        return np.concatenate([vrt.read(window=window, out_shape=(vrt.count, height, width), masked=True,
                                        resampling=Resampling.average).astype(np.float32).filled(np.nan)
                               for vrt in self.vrts])
