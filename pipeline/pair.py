"""`register_pair`: one scene pair from rasters to a complete Zarr group, resumable tile by tile."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import asdict, replace
from importlib import metadata
from typing import Callable, Iterator

import numpy as np
from ray.util import ActorPool

from model.normalize import prepare_optical, prepare_sar
from model.registrar import warp_numpy

from .actors import TileInput, TileOutput, start_pool, stop_pool
from .blend import TileFlow, blend
from .config import PipelineConfig, StorageOptions
from .quality import TileRecord, TileStatus, flow_statistics, structural_similarity
from .quicklook import write_quicklook
from .rasters import OpticalReader, SarReader, raster_env
from .scene import PairResult, ScenePair
from .store import Layout, PairStore, check_output_prefix
from .tiling import Tile, contributors, make_tiles

PREFETCH_BATCHES_PER_ACTOR = 2
"""Batches in flight per actor: one running, one waiting, so actors never idle on reads."""
Progress = Callable[[int, int], None]
"""Called with (tiles written, tiles to write) as the run goes."""


def store_path(output: str, pair_id: str) -> str:
    """`{output}/{pair_id}.zarr`."""
    return f"{output.rstrip('/')}/{pair_id}.zarr"


def _version() -> str:
    try:
        return metadata.version("soma-coreg")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Run:
    """State of one `register_pair` call: readers, the store, what is registered and what is still needed."""

    def __init__(self, pair: ScenePair, config: PipelineConfig, optical: OpticalReader, sar: SarReader,
                 store: PairStore, tiles: list[Tile]) -> None:
        self.pair, self.config, self.optical, self.sar, self.store = pair, config, optical, sar, store
        self.tiles = tiles
        self.needs = contributors(tiles)
        self.flows: dict[int, TileFlow | None] = {}
        """Registered windows kept until every chunk that needs them is written (None: no usable flow)."""
        self.errors: dict[int, str] = {}
        self.seconds: dict[int, float] = {}
        self.written: list[TileRecord] = []

    def window_input(self, tile: Tile) -> TileInput | None:
        """The window's arrays, or None when optical and SAR overlap too little to register."""
        optical = _with_nan(*self.optical.read(tile.window))
        sar = self.sar.read(tile.window)
        overlap = np.isfinite(optical).all(axis=0) & np.isfinite(sar).all(axis=0)
        if overlap.mean() < self.config.min_valid_fraction:
            return None
        return TileInput(tile.index, optical, sar)

    def accept(self, out: TileOutput, seconds: float) -> None:
        tile = self.tiles[out.index]
        self.seconds[out.index] = seconds
        if out.error:
            self.errors[out.index] = out.error
            self.flows[out.index] = None
        else:
            self.flows[out.index] = TileFlow(tile.window, out.flow, out.certainty, out.affine)

    def ready(self, index: int) -> bool:
        return all(i in self.flows for i in self.needs[index])

    def write(self, tile: Tile) -> TileRecord:
        """Blend, warp, measure and write the tile's chunk and table row."""
        core, cfg = tile.core, self.config
        optical, opt_valid = self.optical.read(core)
        sar_around = self.sar.read(core, pad=cfg.margin)
        sar_before = sar_around[(slice(None), *core.relative_to(core.grown(cfg.margin)))]
        own = self.flows.get(tile.index)
        record = TileRecord(tile.index, tile.window.as_list(), core.as_list(), TileStatus.NO_DATA,
                            seconds=self.seconds.get(tile.index, 0.0))
        usable = [f for i in self.needs[tile.index] if (f := self.flows.get(i)) is not None]
        if tile.index in self.errors:
            record.status, record.error = TileStatus.FAILED, self.errors[tile.index]
        if own is None or not usable:
            nan = np.full((2, core.height, core.width), np.nan, np.float32)
            self.store.write_tile(tile, nan, np.zeros(nan.shape[1:], np.float32), np.zeros(nan.shape[1:], bool),
                                  np.full_like(sar_before, np.nan), record)
            return record
        flow, certainty = blend(core, usable, cfg.overlap)
        # sar_around starts `margin` px before the core: shift the flow's origin accordingly
        coregistered = warp_numpy(sar_around, flow, origin=(cfg.margin, cfg.margin))
        valid = opt_valid & np.isfinite(coregistered).all(axis=0) & np.isfinite(flow).all(axis=0)
        flow = np.where(valid, flow, np.nan).astype(np.float32)
        certainty = np.where(valid, certainty, 0.0).astype(np.float32)
        grey = prepare_optical(_with_nan(optical, opt_valid)).image.mean(axis=0)
        before_valid = opt_valid & np.isfinite(sar_before).all(axis=0)
        record.similarity_before = structural_similarity(grey, _sar_image(sar_before), before_valid)
        record.similarity_after = structural_similarity(grey, _sar_image(coregistered), valid)
        for k, v in flow_statistics(flow, certainty, valid, cfg.confident_certainty).items():
            setattr(record, k, v)
        record.affine = own.affine.tolist()
        low = not valid.any() or record.confident_fraction < cfg.low_confidence_fraction
        record.status = TileStatus.LOW_CONFIDENCE if low else TileStatus.OK
        self.store.write_tile(tile, flow, certainty, valid, coregistered, record)
        return record

    def release(self, pending: set[int]) -> None:
        """Drop registered windows no pending chunk needs any more (keeps memory bounded)."""
        still = {i for p in pending for i in self.needs[p]}
        for i in [i for i in self.flows if i not in still]:
            del self.flows[i]


def _with_nan(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 copy of `image` `(C, h, w)` with NaN where `valid` is false (the Registrar's missing marker)."""
    out = image.astype(np.float32)
    out[:, ~valid] = np.nan
    return out


def _sar_image(sar: np.ndarray) -> np.ndarray:
    """The band the model uses, normalised like the model sees it (linear power -> dB, robust stretch)."""
    return prepare_sar(sar).image[0]


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
                  progress: Progress | None = None) -> PairResult:
    """Register `pair` into `{output}/{pair_id}.zarr`; a complete group is skipped, a partial one finished."""
    started = time.perf_counter()
    path = store_path(output, pair.pair_id)
    check_output_prefix(output, config.storage)
    done = completed_result(pair.pair_id, output, config.storage)
    if done is not None:
        return replace(done, seconds=time.perf_counter() - started)
    store = PairStore(path, config.storage)
    with raster_env(config.storage, config.gdal_cache_mib):
        optical = OpticalReader(pair.optical, pair.optical_nodata)
        sar = SarReader(pair.sar, optical.grid, config.margin, pair.sar_nodata)
        try:
            return _register(pair, config, optical, sar, store, path, started, progress)
        finally:
            sar.close()
            optical.close()


def _register(pair: ScenePair, config: PipelineConfig, optical: OpticalReader, sar: SarReader, store: PairStore,
              path: str, started: float, progress: Progress | None) -> PairResult:
    grid = optical.grid
    tiles = make_tiles(grid.height, grid.width, config.tile_size, config.overlap)
    store.create(Layout(grid, config.tile_size, config.overlap, sar.bands, len(tiles)), {
        "pair_id": pair.pair_id, "optical_item": pair.optical_item or "", "sar_item": pair.sar_item or "",
        "optical_hrefs": list(pair.optical), "sar_hrefs": list(pair.sar), "code_version": _version(),
        "started": dt.datetime.now(dt.timezone.utc).isoformat(), "pipeline_config": _config_attrs(config)})
    run = _Run(pair, config, optical, sar, store, tiles)
    status = store.status()
    pending = {t.index for t in tiles if status[t.index] == TileStatus.PENDING}
    needed = _whole_batches({i for p in pending for i in run.needs[p]}, config.batch_size, len(tiles))
    total = len(pending)
    model: dict = {}
    if needed:
        pool, actors, model = start_pool(config)
        try:
            _register_windows(run, [tiles[i] for i in needed], pending, pool, progress)
        finally:
            stop_pool(actors)
    counts = Counter(TileStatus(int(s)).label for s in store.status())
    quicklook = write_quicklook(path, optical, sar, config) if config.quicklook else None
    store.finish({"model": model.get("model", ""), "checkpoint_sha256": model.get("checkpoint_sha256", ""),
                  "refinement": model.get("refinement", ""),
                  "certainty_calibrated": model.get("certainty_calibrated", False),
                  "quicklook": quicklook or "", "status_counts": dict(counts)})
    return PairResult(pair.pair_id, path, len(tiles), dict(counts), total, time.perf_counter() - started, False,
                      quicklook)


def _whole_batches(windows: set[int], batch_size: int, count: int) -> list[int]:
    """`windows` grown to whole fixed batches (tiles k*batch_size .. (k+1)*batch_size - 1): a window is then
    always registered in the same batch, so a resumed or concurrent run writes exactly what one run writes."""
    groups = {i // batch_size for i in windows}
    return [i for g in sorted(groups) for i in range(g * batch_size, min((g + 1) * batch_size, count))]


def _batches(run: _Run, tiles: list[Tile]) -> Iterator[list[TileInput]]:
    """The fixed batches (see `_whole_batches`) of window inputs in tile order, so results depend neither on
    the pool size nor on what an earlier run finished; read lazily; windows without data are recorded as
    such on the way and leave their batch one short."""
    batch: list[TileInput] = []
    group = None
    for tile in tiles:
        if batch and tile.index // run.config.batch_size != group:
            yield batch
            batch = []
        group = tile.index // run.config.batch_size
        item = run.window_input(tile)
        if item is None:
            run.flows[tile.index] = None
            continue
        batch.append(item)
    if batch:
        yield batch


def _register_windows(run: _Run, needed: list[Tile], pending: set[int], pool: ActorPool,
                      progress: Progress | None) -> None:
    """Stream batches to the pool (at most two per actor in flight) and write each pending chunk as soon as
    every window covering it is registered."""
    total, submitted = len(pending), {}

    def write_ready() -> None:
        for index in sorted(p for p in pending if run.ready(p)):
            run.written.append(run.write(run.tiles[index]))
            pending.discard(index)
            if progress:
                progress(len(run.written), total)
        run.release(pending)

    def collect() -> None:
        for out in pool.get_next_unordered():
            run.accept(out, time.perf_counter() - submitted[out.index])
        write_ready()

    in_flight = 0
    for batch in _batches(run, needed):
        if in_flight >= PREFETCH_BATCHES_PER_ACTOR * run.config.actors:
            collect()
            in_flight -= 1
        now = time.perf_counter()
        submitted.update({t.index: now for t in batch})
        pool.submit(lambda actor, b: actor.register.remote(b), batch)
        in_flight += 1
    for _ in range(in_flight):
        collect()
    write_ready()  # chunks covered only by windows without data


def _config_attrs(config: PipelineConfig) -> dict:
    d = asdict(config)
    d.pop("storage")
    return d

