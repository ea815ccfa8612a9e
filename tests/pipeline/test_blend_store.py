"""Blending without seams, tiling of small scenes, and a store that refuses another layout."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.blend import TileFlow, blend, taper
from pipeline.config import PipelineConfig, StorageOptions
from pipeline.rasters import Grid
from pipeline.store import Layout, PairStore, StoreMismatch
from pipeline.tiling import Box, make_tiles


def test_taper_is_one_inside_and_positive_at_the_edges():
    t = taper(512, 512, 64)
    assert t[64:-64, 64:-64].min() == 1.0
    assert 0 < t[0, 0] < t[0, 32] < t[32, 32] <= 1.0


def test_a_flow_that_agrees_across_windows_blends_to_itself():
    """Two overlapping windows with the same linear flow field: the blend reproduces it exactly (no seam)."""
    tiles = make_tiles(512, 960, 512, 64)
    yy, xx = np.mgrid[0:512, 0:960].astype(np.float32)
    field = np.stack([0.01 * xx - 2, 0.005 * yy + 1])
    flows = [TileFlow(t.window, field[(slice(None), *t.window.slices)],
                      np.full((t.window.height, t.window.width), 0.3 + 0.2 * t.index, np.float32), np.eye(2, 3))
             for t in tiles]
    for t in tiles:
        flow, certainty = blend(t.core, flows, ramp=64)
        np.testing.assert_allclose(flow, field[(slice(None), *t.core.slices)], atol=1e-5)
        assert ((certainty >= 0.3) & (certainty <= 0.3 + 0.2 * len(tiles))).all()


def test_disagreeing_windows_meet_smoothly():
    """Constant flows 0 and 1 on two windows: across the overlap the blend ramps instead of jumping."""
    a, b = Box(0, 0, 64, 512), Box(0, 448, 64, 512)
    ones = np.ones((64, 512), np.float32)
    flows = [TileFlow(a, np.stack([0 * ones, 0 * ones]), ones, np.eye(2, 3)),
             TileFlow(b, np.stack([ones, ones]), ones, np.eye(2, 3))]
    flow, _ = blend(Box(0, 0, 64, 960), flows, ramp=64)
    row = flow[0, 32]
    assert row[:448].max() < 0.5 and row[512:].min() > 0.5
    assert np.abs(np.diff(row)).max() < 0.05  # no seam: the largest step between neighbours is small


def test_scene_smaller_than_a_tile_is_one_window_of_its_size():
    tiles = make_tiles(120, 100, 512, 64)
    assert len(tiles) == 1 and tiles[0].window == Box(0, 0, 120, 100) == tiles[0].core


def test_config_rejects_an_odd_or_too_large_overlap():
    with pytest.raises(ValueError, match="overlap"):
        PipelineConfig(overlap=63)
    with pytest.raises(ValueError, match="overlap"):
        PipelineConfig(tile_size=256, overlap=256)


def test_existing_group_with_another_layout_is_refused(tmp_path):
    grid = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000, 5000000, 10, 10), 900, 700)
    store = PairStore(str(tmp_path / "p.zarr"), StorageOptions())
    store.create(Layout(grid, 512, 64, 2, len(make_tiles(900, 700, 512, 64))), {"pair_id": "p"})
    assert not store.is_complete() and (store.status() == 0).all()
    store.create(Layout(grid, 512, 64, 2, len(make_tiles(900, 700, 512, 64))), {"pair_id": "p"})  # same: fine
    with pytest.raises(StoreMismatch, match="p.zarr.*tile_size"):
        store.create(Layout(grid, 256, 64, 2, len(make_tiles(900, 700, 256, 64))), {"pair_id": "p"})
