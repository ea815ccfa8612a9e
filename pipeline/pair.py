"""`register_pair`: one scene pair from rasters to a complete Zarr group, resumable tile by tile."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import asdict, replace
from importlib import metadata
from itertools import groupby

from .config import PipelineConfig, StorageOptions
from .pool import TilePool, start_pool
from .quality import TileStatus
from .quicklook import write_quicklook
from .rasters import OpticalReader, SarReader, raster_env
from .scene import PairResult, ScenePair
from .schedule import Progress, RunPlan, run_plan
from .sources import PairSource
from .store import Layout, PairStore, check_output_prefix
from .tiling import contributors, make_tiles


def store_path(output: str, pair_id: str) -> str:
    """`{output}/{pair_id}.zarr`."""
    return f"{output.rstrip('/')}/{pair_id}.zarr"


def _version() -> str:
    try:
        return metadata.version("soma-coreg")
    except metadata.PackageNotFoundError:
        return "unknown"


def completed_result(pair_id: str, output: str, storage: StorageOptions) -> PairResult | None:
    """The result of a pair whose group at `{output}/{pair_id}.zarr` is already complete (nothing left to
    register), read from the group; None when it is not complete."""
    path = store_path(output, pair_id)
    store = PairStore(path, storage)
    if not store.is_complete():
        return None
    counts = Counter(TileStatus(int(s)).label for s in store.status())
    return PairResult(pair_id, path, int(sum(counts.values())), dict(counts), 0, 0.0, True,
                      store.attrs().get("quicklook") or None)


def register_pair(pair: ScenePair, output: str, config: PipelineConfig = PipelineConfig(),
                  progress: Progress | None = None, pool: TilePool | None = None) -> PairResult:
    """Register `pair` into `{output}/{pair_id}.zarr`; a complete group is skipped, a partial one finished.

    The driver only plans: it opens the rasters once to check them and take the grid, creates the group,
    and sends the tiles to `pool` (its own, started and stopped here, when None), whose actors read,
    register, blend, warp, measure and write them. A shared `pool` may serve several calls in threads.
    """
    started = time.perf_counter()
    path = store_path(output, pair.pair_id)
    check_output_prefix(output, config.storage)
    done = completed_result(pair.pair_id, output, config.storage)
    if done is not None:
        return replace(done, seconds=time.perf_counter() - started)
    if pool is not None:
        pool.check(config)
    store = PairStore(path, config.storage)
    with raster_env(config.storage, config.gdal_cache_mib):
        optical = OpticalReader(pair.optical, pair.optical_nodata)  # refuses an unusable raster, naming it
        try:
            sar = SarReader(pair.sar, optical.grid, config.margin, pair.sar_nodata)
        except Exception:
            optical.close()
            raise
        try:
            return _register(pair, config, optical, sar, store, path, started, progress, pool)
        finally:
            sar.close()
            optical.close()


def _register(pair: ScenePair, config: PipelineConfig, optical: OpticalReader, sar: SarReader, store: PairStore,
              path: str, started: float, progress: Progress | None, pool: TilePool | None) -> PairResult:
    grid = optical.grid
    tiles = make_tiles(grid.height, grid.width, config.tile_size, config.overlap)
    store.create(Layout(grid, config.tile_size, config.overlap, sar.bands, len(tiles)), {
        "pair_id": pair.pair_id, "optical_item": pair.optical_item or "", "sar_item": pair.sar_item or "",
        "optical_datetime": pair.optical_datetime or "", "sar_datetime": pair.sar_datetime or "",
        "sar_polarisations": list(pair.sar_polarisations or ()),
        "optical_hrefs": list(pair.optical), "sar_hrefs": list(pair.sar), "code_version": _version(),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(), "pipeline_config": _config_attrs(config)})
    needs = contributors(tiles)
    status = store.status()
    pending = [t.index for t in tiles if status[t.index] == TileStatus.PENDING]
    if pending:
        own = pool is None
        if own:
            pool = start_pool(config)
        try:
            # a resumed run batches as the first did; the attrs go in before any tile, so a run that finds
            # every tile written still has them
            batch_size = store.attrs().get("batch_size") or pool.batch_size
            store.record({**_model_attrs(pool.model), "batch_size": batch_size})
            needed = _whole_batches({i for p in pending for i in needs[p]}, batch_size, len(tiles))
            batches = [list(b) for _, b in groupby(needed, key=lambda i: i // batch_size)]
            run_plan(RunPlan(path, PairSource.of(pair, grid, config), config, tiles, needs, pending, batches),
                     pool, progress)
        finally:
            if own:
                pool.close()
    counts = Counter(TileStatus(int(s)).label for s in store.status())
    quicklook = write_quicklook(path, optical, sar, config) if config.quicklook else None
    store.finish({"quicklook": quicklook or "", "status_counts": dict(counts)})
    return PairResult(pair.pair_id, path, len(tiles), dict(counts), len(pending), time.perf_counter() - started,
                      False, quicklook)


def _model_attrs(model: dict) -> dict:
    """The group attributes naming the model that registers its tiles (`RegistrarActor.describe`)."""
    return {k: model[k] for k in ("model", "checkpoint_sha256", "refinement", "certainty_calibrated")}


def _whole_batches(windows: set[int], batch_size: int, count: int) -> list[int]:
    """`windows` grown to whole fixed batches (tiles k*batch_size .. (k+1)*batch_size - 1): a window is then
    always registered in the same batch, so a resumed or concurrent run writes exactly what one run writes."""
    groups = {i // batch_size for i in windows}
    return [i for g in sorted(groups) for i in range(g * batch_size, min((g + 1) * batch_size, count))]


def _config_attrs(config: PipelineConfig) -> dict:
    d = asdict(config)
    d.pop("storage")
    return d

