"""Everything a scene-pair run depends on, in one typed place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from model.config import RefineConfig


def is_remote(url: str) -> bool:
    """Whether `url` names object storage (any scheme but file://) rather than a local path."""
    return "://" in url and not url.startswith("file://")


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage (s3://): an endpoint for MinIO, Ceph or SeaweedFS; AWS when None.

    Credentials default to the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables.
    """

    endpoint_url: str | None = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL_S3"))
    key: str | None = None
    secret: str | None = None
    region: str | None = field(default_factory=lambda: os.environ.get("AWS_REGION")
                               or os.environ.get("AWS_DEFAULT_REGION"))
    http_retries: int = 3
    """GDAL retries of one failed HTTP request of a raster read (429, 5xx, connection reset, timeout); a window
    read still failing after them is itself tried `rasters.READ_ATTEMPTS` times."""
    http_retry_delay_s: float = 0.5
    """GDAL's first retry delay; each further one about doubles."""

    def fsspec(self) -> dict:
        """Options for s3fs / fsspec (xarray's `storage_options`)."""
        opts: dict = {}
        if self.key or self.secret:
            opts.update(key=self.key, secret=self.secret)
        client = {"endpoint_url": self.endpoint_url, "region_name": self.region}
        if any(client.values()):
            opts["client_kwargs"] = {k: v for k, v in client.items() if v}
        return opts

    def for_url(self, url: str) -> dict:
        """fsspec options for `url`: these settings for object storage, none for a local path."""
        return self.fsspec() if is_remote(url) else {}

    def gdal(self) -> dict[str, str]:
        """GDAL /vsis3/ settings: retries of transient HTTP failures; for a custom endpoint, host:port without
        scheme, HTTPS and path-style addressing to match."""
        retries = {"GDAL_HTTP_MAX_RETRY": str(self.http_retries), "GDAL_HTTP_RETRY_DELAY": str(self.http_retry_delay_s)}
        if not self.endpoint_url:
            return retries
        url = urlparse(self.endpoint_url)
        return {**retries, "AWS_S3_ENDPOINT": url.netloc, "AWS_HTTPS": "YES" if url.scheme == "https" else "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE"}


@dataclass(frozen=True)
class PipelineConfig:
    """Tiling, the actor pool, quality thresholds and storage of `register_pair`."""

    tile_size: int = 512
    """Registration window, px (reference grid). Scenes smaller than this use one window of their size."""
    overlap: int = 64
    """Overlap of neighbouring windows, px: the blend zone. Chunks (and tile cores) are tile_size - overlap."""
    margin: int = 64
    """SAR read around each window, px: shifts up to this are recoverable when warping."""
    actors: int = 1
    """Ray actors, each holding one model, on a CPU cluster; a cluster with GPUs gets one per GPU instead."""
    writers: int | None = None
    """Model-free actors (1 CPU each) that write the chunks (read the core, blend, warp, measure, write), so
    the registering actors only read and register. None: none on a CPU cluster (each actor writes what it
    registers; the work is the same), and on a cluster with GPUs one per CPU the GPU actors leave."""
    cpus_per_actor: float = 1.0
    threads_per_actor: int = 1
    """Torch threads in each actor; keep it fixed so results do not depend on the pool size."""
    batch_size: int = 2
    """Tiles per forward pass on a CPU actor."""
    gpu_batch_size: int | None = None
    """Tiles per forward pass on a GPU actor; None: as many as half the GPU's memory holds at `tile_size`
    (measured by the actor at start, `pipeline.batching`), at most `batching.MAX_GPU_BATCH`."""
    pairs_in_flight: int | None = None
    """Pairs an archive run registers at once on its one shared actor pool; None: one per actor, so the
    actors stay busy while a pair is opened, planned and its last chunks written."""
    retries: int = 1
    """Ray re-sends a batch this many times when its actor dies while holding it (killed, out of memory, node
    lost; Ray's `max_task_retries`, the actor itself restarted up to `ACTOR_RESTARTS` times). An exception
    the model raises is not retried: the actor registers that batch again tile by tile, once, and a tile that
    still fails is `failed`."""
    checkpoint: str | None = None
    """SOMA checkpoint; None: the bundled one (what `Registrar.load()` gives, with its default refinement and
    certainty calibration)."""
    refinement: RefineConfig = RefineConfig()
    """The Registrar's test-time refinement (its default; the bundled certainty calibration holds for that
    one only, another falls back to the network's certainty)."""
    device: str = "auto"
    """Actor device: auto (cuda when Ray gave the actor a GPU and torch can use it), cpu or cuda."""
    min_valid_fraction: float = 0.05
    """Windows where optical and SAR overlap on less than this share are `no_data` (no model call)."""
    confident_certainty: float = 0.5
    """A pixel is confident when its certainty, the calibrated P(error < 1 px), is at least this: more
    likely within a pixel than not."""
    low_confidence_fraction: float = 0.1
    """A tile whose confident share of valid pixels is below this is `low_confidence`. On the calibration's
    training-tile cases every tile 3 px or more off fell below it, and 4 of 22 within 2.2 px did too
    (docs/model_card.md)."""
    gdal_cache_mib: int = 64
    """GDAL's raster block cache, MiB. GDAL's default (5 % of RAM) fills with a whole Sentinel-2 tile's
    blocks and makes the driver's memory grow with the scene; one row of windows fits in 64 MiB."""
    quicklook: bool = True
    quicklook_size: int = 768
    """Longest side of the quicklook panels, px."""
    storage: StorageOptions = field(default_factory=StorageOptions)

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"overlap {self.overlap} must be in [0, tile_size {self.tile_size})")
        if self.overlap % 2:
            raise ValueError(f"overlap {self.overlap} must be even (half on each side of a tile's core)")
        if self.actors < 1 or self.batch_size < 1 or (self.gpu_batch_size is not None and self.gpu_batch_size < 1):
            raise ValueError("actors, batch_size and gpu_batch_size must be at least 1")
        if self.writers is not None and self.writers < 0:
            raise ValueError(f"writers must be 0 or more (or None: by the cluster), got {self.writers}")
        if self.pairs_in_flight is not None and self.pairs_in_flight < 1:
            raise ValueError(f"pairs_in_flight must be at least 1 (or None: one per actor), got {self.pairs_in_flight}")
