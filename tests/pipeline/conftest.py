"""Scenes of the pipeline tests, and a helper to make one in another CRS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import calculate_default_transform, reproject

from tests.conftest import SAMPLE

SCENE = SAMPLE / "scene"
SCENE_OPT = SCENE / "T11SMT_175-188_opt.tif"
SCENE_SAR = SCENE / "T11SMT_175-188_sar.tif"
BEN_OPT = SAMPLE / "bigearthnet" / "33UUP_87_48_opt.tif"
BEN_SAR = SAMPLE / "bigearthnet" / "33UUP_87_48_sar.tif"


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
