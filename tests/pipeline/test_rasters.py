"""Reading: windows of the reference, SAR reprojected onto its grid (also from another UTM zone), errors."""

import numpy as np
import pytest
import rasterio

from pipeline import PipelineConfig, StorageOptions
from pipeline.rasters import OpticalReader, RasterError, SarReader, raster_env
from pipeline.tiling import Box, contributors, make_tiles
from tests.pipeline.conftest import BEN_OPT, BEN_SAR, SCENE_OPT, SCENE_SAR, rewrite_in_crs


def test_tiles_cover_the_grid_once_with_equal_windows():
    tiles = make_tiles(1000, 700, 512, 64)
    cover = np.zeros((1000, 700), int)
    for t in tiles:
        cover[t.core.slices] += 1
        assert (t.window.height, t.window.width) == (512, 512)
        assert t.window.intersect(t.core) == t.core  # the core lies inside its window
    assert (cover == 1).all()
    assert all(t.index in contributors(tiles)[t.index] for t in tiles)


def test_sar_on_the_reference_grid_equals_the_file_when_grids_match():
    optical = OpticalReader((str(SCENE_OPT),))
    box = Box(700, 1300, 256, 300)
    window = SarReader((str(SCENE_SAR),), optical.grid, margin=64).read(box, pad=10)
    with rasterio.open(SCENE_SAR) as src:
        expected = src.read(window=rasterio.windows.Window(box.col - 10, box.row - 10, 320, 276))
    np.testing.assert_allclose(window, expected.astype(np.float32), atol=1e-3)
    image, valid = optical.read(box)
    assert image.shape == (3, 256, 300) and image.dtype == np.uint8 and valid.all()


def test_sar_from_another_utm_zone_lands_on_the_reference_grid(tmp_path):
    """BigEarthNet's SAR (UTM 33N) rewritten in UTM 32N comes back onto the 33N optical grid."""
    other = rewrite_in_crs(BEN_SAR, tmp_path / "sar_32N.tif", "EPSG:32632")
    optical = OpticalReader((str(BEN_OPT),))
    native = SarReader((str(BEN_SAR),), optical.grid, margin=8).read(Box(0, 0, 120, 120))
    moved = SarReader((str(other),), optical.grid, margin=8).read(Box(0, 0, 120, 120))
    inner = (slice(None), slice(10, 110), slice(10, 110))
    assert np.isfinite(moved[inner]).all()
    # two bilinear resamplings apart, the same image: strongly correlated, close in value
    a, b = native[inner].ravel(), moved[inner].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    assert np.median(np.abs(a - b)) < 1.0  # dB


def test_margin_reads_beyond_the_scene_as_nan():
    optical = OpticalReader((str(BEN_OPT),))
    sar = SarReader((str(BEN_SAR),), optical.grid, margin=16).read(Box(0, 0, 120, 120), pad=16)
    assert sar.shape == (2, 152, 152)
    assert np.isnan(sar[:, :16]).all() and np.isfinite(sar[:, 20:130, 20:130]).all()


def test_missing_or_ungeoreferenced_rasters_are_named(tmp_path):
    with pytest.raises(RasterError, match="nope.tif"):
        OpticalReader((str(tmp_path / "nope.tif"),))
    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16") as dst:
        dst.write(np.ones((1, 64, 64), np.uint16))
    with pytest.raises(RasterError, match="bare.tif.*no CRS"):
        OpticalReader((str(bare),))
    optical = OpticalReader((str(BEN_OPT),))
    with pytest.raises(RasterError, match="bare.tif.*no CRS"):
        SarReader((str(bare),), optical.grid, margin=8)


def test_gdal_block_cache_is_bounded_while_reading():
    """GDAL's default cache (5 % of RAM) made the driver grow with the scene; rasterio takes bytes, not MB."""
    from rasterio._env import get_gdal_config

    mib = PipelineConfig().gdal_cache_mib
    with raster_env(StorageOptions(), mib):
        assert int(get_gdal_config("GDAL_CACHEMAX")) == mib * 2**20
