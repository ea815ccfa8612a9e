"""The write step of one output chunk, run on a Ray worker: blend the flows of the windows covering it,
warp the SAR with the blended flow, measure the tile row, write chunk and row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.normalize import prepare_optical, prepare_sar
from model.registrar import warp_numpy

from .blend import TileFlow, blend
from .config import PipelineConfig
from .quality import TileRecord, TileStatus, flow_statistics, structural_similarity
from .sources import PairSource, Readers
from .store import PairStore
from .tiling import Box, Tile
from .windows import TileOutput, with_nan


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to write, as the driver plans it (the registrations it needs travel beside it as refs)."""

    store: str
    """The pair's Zarr group."""
    source: PairSource
    config: PipelineConfig
    tile: Tile
    windows: tuple[Box, ...]
    """The windows covering the tile's core, in tile order (the order the blend sums them in)."""
    own: int
    """Position of the tile's own window in `windows`."""


@dataclass(frozen=True)
class ChunkArrays:
    """A chunk's arrays as they are written."""

    flow: np.ndarray
    """`(2, h, w)` float32 reference px, NaN where not valid."""
    certainty: np.ndarray
    """`(h, w)` float32, 0 where not valid."""
    valid: np.ndarray
    """`(h, w)` bool."""
    sar: np.ndarray
    """`(C, h, w)` float32 co-registered SAR, the SAR's units."""


def empty_chunk(core: Box, sar_bands: int) -> ChunkArrays:
    """The arrays of a chunk without a usable flow: NaN flow and SAR, zero certainty, nothing valid."""
    shape = (core.height, core.width)
    return ChunkArrays(np.full((2, *shape), np.nan, np.float32), np.zeros(shape, np.float32), np.zeros(shape, bool),
                       np.full((sar_bands, *shape), np.nan, np.float32))


def coregister_chunk(core: Box, flows: list[TileFlow], sar_around: np.ndarray, optical_valid: np.ndarray,
                     margin: int, ramp: int) -> ChunkArrays:
    """Blend `flows` over `core` and warp `sar_around` `(C, h + 2 margin, w + 2 margin)` with the result."""
    flow, certainty = blend(core, flows, ramp)
    # sar_around starts `margin` px before the core: shift the flow's origin accordingly
    coregistered = warp_numpy(sar_around, flow, origin=(margin, margin))
    valid = optical_valid & np.isfinite(coregistered).all(axis=0) & np.isfinite(flow).all(axis=0)
    return ChunkArrays(np.where(valid, flow, np.nan).astype(np.float32),
                       np.where(valid, certainty, 0.0).astype(np.float32), valid, coregistered)


def _sar_image(sar: np.ndarray) -> np.ndarray:
    """The band the model uses, normalised like the model sees it (linear power -> dB, robust stretch)."""
    return prepare_sar(sar).image[0]


def measure_chunk(arrays: ChunkArrays, optical: np.ndarray, optical_valid: np.ndarray, sar_before: np.ndarray,
                  confident_certainty: float) -> dict[str, float]:
    """The row's figures: structural similarity of optical `(C, h, w)` and SAR before `(C, h, w)` and after
    the warp, mean certainty, confident share and flow magnitude percentiles over valid pixels."""
    grey = prepare_optical(with_nan(optical, optical_valid)).image.mean(axis=0)
    before_valid = optical_valid & np.isfinite(sar_before).all(axis=0)
    return {"similarity_before": structural_similarity(grey, _sar_image(sar_before), before_valid),
            "similarity_after": structural_similarity(grey, _sar_image(arrays.sar), arrays.valid),
            **flow_statistics(arrays.flow, arrays.certainty, arrays.valid, confident_certainty)}


def chunk_status(valid: np.ndarray, confident_fraction: float, low_confidence_fraction: float) -> TileStatus:
    """`low_confidence` when nothing is valid or too few valid pixels are confident, else `ok`."""
    low = not valid.any() or confident_fraction < low_confidence_fraction
    return TileStatus.LOW_CONFIDENCE if low else TileStatus.OK


def write_chunk(job: ChunkJob, readers: Readers, store: PairStore,
                registrations: tuple[TileOutput, ...]) -> TileRecord:
    """Read the chunk's core (optical, and SAR with the margin), blend, warp, measure, write chunk and row;
    `registrations` are those of `job.windows`, in order. Returns the row written."""
    tile, cfg, own = job.tile, job.config, registrations[job.own]
    record = TileRecord(tile.index, tile.window.as_list(), tile.core.as_list(), TileStatus.NO_DATA,
                        seconds=own.seconds)
    if own.error:
        record.status, record.error = TileStatus.FAILED, own.error
    usable = [TileFlow(w, r.flow, r.certainty, r.affine) for w, r in zip(job.windows, registrations)
              if r.flow is not None]
    if own.flow is None or not usable:
        store.write_tile(tile, *_fields(empty_chunk(tile.core, readers.sar.bands)), record)
        return record
    core = tile.core
    optical, optical_valid = readers.optical.read(core)
    sar_around = readers.sar.read(core, pad=cfg.margin)
    sar_before = sar_around[(slice(None), *core.relative_to(core.grown(cfg.margin)))]
    arrays = coregister_chunk(core, usable, sar_around, optical_valid, cfg.margin, cfg.overlap)
    for name, value in measure_chunk(arrays, optical, optical_valid, sar_before, cfg.confident_certainty).items():
        setattr(record, name, value)
    record.affine = own.affine.tolist()
    record.status = chunk_status(arrays.valid, record.confident_fraction, cfg.low_confidence_fraction)
    store.write_tile(tile, *_fields(arrays), record)
    return record


def _fields(arrays: ChunkArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`arrays` in `PairStore.write_tile`'s order."""
    return arrays.flow, arrays.certainty, arrays.valid, arrays.sar
