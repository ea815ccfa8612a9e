"""Scenes of the pipeline tests, the reference run of pair 142, and a helper to make a scene in another CRS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.warp import calculate_default_transform, reproject

from model.config import RefineConfig
from pipeline import PipelineConfig, ScenePair, register_pair
from tests.conftest import SAMPLE

SCENE = SAMPLE / "scene"
SCENE_OPT = SCENE / "T11SMT_175-188_opt.tif"
SCENE_SAR = SCENE / "T11SMT_175-188_sar.tif"
BEN_OPT = SAMPLE / "bigearthnet" / "33UUP_87_48_opt.tif"
BEN_SAR = SAMPLE / "bigearthnet" / "33UUP_87_48_sar.tif"
PAIR_142 = ScenePair("142", (str(SAMPLE / "s1s2_volkov" / "142_opt.tif"),),
                     (str(SAMPLE / "s1s2_volkov" / "142_sar.tif"),))
VARIABLES = ("flow_x", "flow_y", "certainty", "valid", "sar_coregistered")
FAST = PipelineConfig(quicklook=False, refinement=RefineConfig(enabled=False))
"""For tests of the pipeline's mechanics (faults, resume, layout), not its accuracy: the network alone keeps
them fast; the accuracy tests (test_recovery, the flows' recovered vs injected) run the default model."""


def arrays(store: str) -> dict[str, np.ndarray]:
    ds = xr.open_zarr(store)
    return {v: ds[v].values for v in VARIABLES}


@pytest.fixture(scope="session")
def reference_142(ray_cluster, tmp_path_factory):
    """Pair 142 (1024², 9 tiles) registered by one actor, uninterrupted."""
    out = tmp_path_factory.mktemp("ref142")
    return register_pair(PAIR_142, str(out), FAST)


def rewrite_in_crs(source: Path, target: Path, crs: str) -> Path:
    """`source` resampled (bilinear) into `crs` at `target`, NaN outside: a scene from another UTM zone."""
    with rasterio.open(source) as src:
        transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
        with rasterio.open(target, "w", **(src.profile | {"crs": crs, "transform": transform, "width": w,
                                                          "height": h, "nodata": np.nan})) as dst:
            for b in src.indexes:
                reproject(rasterio.band(src, b), rasterio.band(dst, b), dst_nodata=np.nan,
                          resampling=rasterio.enums.Resampling.bilinear)
    return target
