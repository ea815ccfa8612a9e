"""What a Ray worker needs to open a pair's rasters itself, and its cache of opened readers.

The driver ships a small picklable `PairSource` (hrefs, nodata, the reference grid, margin, storage and
GDAL settings), as stackstac and odc-stac hand their workers readers; each worker process opens a scene
once and reads every window it is given from the same datasets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .config import PipelineConfig, StorageOptions
from .rasters import Grid, OpticalReader, SarReader
from .scene import ScenePair

OPEN_SOURCES_PER_WORKER = 4
"""Pairs whose datasets a worker keeps open at once (pairs in flight on a shared pool); the least recently
used is closed beyond this."""
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class PairSource:
    """A pair's rasters as a worker opens them: picklable and hashable (the key of the worker's cache)."""

    optical: tuple[str, ...]
    """Optical hrefs (local paths or s3:// URLs), bands stacked in order."""
    sar: tuple[str, ...]
    """SAR hrefs, bands stacked in order."""
    grid: Grid
    """The reference grid the SAR is resampled onto."""
    margin: int
    """SAR read around each window, px."""
    optical_nodata: float | None
    sar_nodata: float | None
    storage: StorageOptions
    gdal_cache_mib: int
    """GDAL block cache of each worker, MiB."""

    @classmethod
    def of(cls, pair: ScenePair, grid: Grid, config: PipelineConfig) -> PairSource:
        """The source of `pair` on `grid` with `config`'s margin, storage and GDAL cache."""
        return cls(pair.optical, pair.sar, grid, config.margin, pair.optical_nodata, pair.sar_nodata,
                   config.storage, config.gdal_cache_mib)


@dataclass
class Readers:
    """A pair's opened rasters."""

    optical: OpticalReader
    sar: SarReader

    def close(self) -> None:
        """Close the SAR's warped views and every dataset."""
        self.sar.close()
        self.optical.close()


def open_readers(source: PairSource) -> Readers:
    """Open `source`'s rasters (inside `raster_env`); raises `RasterError` naming a file that cannot be used."""
    optical = OpticalReader(source.optical, source.optical_nodata)
    try:
        return Readers(optical, SarReader(source.sar, source.grid, source.margin, source.sar_nodata))
    except Exception:
        optical.close()
        raise


class WorkerCache(Generic[K, V]):
    """What a worker process opened, by key, the least recently used dropped first: each scene (or store) is
    opened once per worker, not once per tile."""

    def __init__(self, opener: Callable[[K], V], closer: Callable[[V], None] | None = None,
                 size: int = OPEN_SOURCES_PER_WORKER) -> None:
        self.opener, self.closer, self.size = opener, closer, size
        self._open: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V:
        """The value opened for `key`, opened on first use (readers: call inside `raster_env`)."""
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        value = self.opener(key)
        self._open[key] = value
        while len(self._open) > self.size:
            dropped = self._open.popitem(last=False)[1]
            if self.closer is not None:
                self.closer(dropped)
        return value
