"""The driver only plans: the Ray actors read, register, blend, warp, measure and write, and give exactly
what the same model and pipeline functions give in one process (a pool several pairs share at once:
tests/flows/test_flows.py::test_pairs_in_flight_share_one_pool_and_write_what_one_after_another_writes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from model import Registrar
from model.registrar import warp_numpy
from pipeline import ScenePair, register_pair
from pipeline.blend import TileFlow, blend
from pipeline.config import PipelineConfig
from pipeline.invariants import violations
from pipeline.rasters import OpticalReader, SarReader, raster_env
from pipeline.tiling import contributors, make_tiles
from tests.pipeline.conftest import BEN_OPT, BEN_SAR, FAST, PAIR_142, VARIABLES, arrays


def in_process(pair: ScenePair, config: PipelineConfig) -> dict[str, np.ndarray]:
    """The pair's arrays computed in this process, without Ray, from the model and the pipeline's building
    blocks (readers, tiling, blend, warp), in the order DESIGN.md gives: fixed batches of windows with enough
    data, then per chunk the blend of the windows covering it and the warp of the SAR read around it."""
    registrar = Registrar.load(config.checkpoint, device="cpu", refinement=config.refinement)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads_per_actor)  # as the actors run it
    try:
        with raster_env(config.storage, config.gdal_cache_mib):
            optical = OpticalReader(pair.optical, pair.optical_nodata)
            sar = SarReader(pair.sar, optical.grid, config.margin, pair.sar_nodata)
            grid = optical.grid
            tiles = make_tiles(grid.height, grid.width, config.tile_size, config.overlap)
            flows: dict[int, TileFlow] = {}
            for start in range(0, len(tiles), config.batch_size):
                batch = []
                for tile in tiles[start:start + config.batch_size]:
                    image, valid = optical.read(tile.window)
                    image = image.astype(np.float32)
                    image[:, ~valid] = np.nan
                    moving = sar.read(tile.window)
                    if (np.isfinite(image).all(0) & np.isfinite(moving).all(0)).mean() >= config.min_valid_fraction:
                        batch.append((tile, image, moving))
                if batch:
                    regs = registrar.register_batch([b[1] for b in batch], [b[2] for b in batch])
                    flows.update({t.index: TileFlow(t.window, r.flow, r.certainty, r.affine)
                                  for (t, _, _), r in zip(batch, regs)})
            out = {"flow_x": np.full((grid.height, grid.width), np.nan, np.float32),
                   "flow_y": np.full((grid.height, grid.width), np.nan, np.float32),
                   "certainty": np.zeros((grid.height, grid.width), np.float32),
                   "valid": np.zeros((grid.height, grid.width), bool),
                   "sar_coregistered": np.full((sar.bands, grid.height, grid.width), np.nan, np.float32)}
            for tile, needs in zip(tiles, contributors(tiles).values()):
                if tile.index not in flows:
                    continue
                core, rows_cols = tile.core, tile.core.slices
                _, optical_valid = optical.read(core)
                flow, certainty = blend(core, [flows[i] for i in needs if i in flows], config.overlap)
                warped = warp_numpy(sar.read(core, pad=config.margin), flow, origin=(config.margin, config.margin))
                valid = optical_valid & np.isfinite(warped).all(0) & np.isfinite(flow).all(0)
                out["flow_x"][rows_cols] = np.where(valid, flow[0], np.nan)
                out["flow_y"][rows_cols] = np.where(valid, flow[1], np.nan)
                out["certainty"][rows_cols] = np.where(valid, certainty, np.nan)
                out["valid"][rows_cols] = valid
                out["sar_coregistered"][(slice(None), *rows_cols)] = warped
            sar.close()
            optical.close()
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_ray_run_equals_the_in_process_reference_bit_for_bit(reference_142):
    expected, got = in_process(PAIR_142, FAST), arrays(reference_142.store)
    for v in VARIABLES:
        np.testing.assert_array_equal(got[v], expected[v], err_msg=v)
    assert violations(xr.open_zarr(reference_142.store)) == []  # rows agree with their chunks


def test_the_driver_reads_no_window(ray_cluster, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the driver read a window")

    monkeypatch.setattr(OpticalReader, "read", refuse)  # in this process only: the actors are other processes
    monkeypatch.setattr(SarReader, "read", refuse)
    result = register_pair(ScenePair("ben", (str(BEN_OPT),), (str(BEN_SAR),)), str(tmp_path), FAST)
    assert result.written_tiles == 1 and result.status_counts.get("failed", 0) == 0
    assert xr.open_zarr(result.store).valid.values.mean() > 0.75
