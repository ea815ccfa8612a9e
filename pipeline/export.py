"""A pair group's co-registered SAR as one tiled GeoTIFF per polarisation, for readers that load rasters from STAC
Items through GDAL (odc-stac, stackstac)."""

from __future__ import annotations

import os
import tempfile

import fsspec
import numpy as np
import rasterio
from rasterio.windows import Window

from .config import StorageOptions, is_remote
from .cube import polarisations
from .store import open_pair

BLOCK = 512
"""GeoTIFF tile side, px; the group is copied one row of blocks at a time."""
GEOTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
           "predictor": 3, "dtype": "float32", "count": 1, "nodata": float("nan"), "BIGTIFF": "IF_SAFER"}


def geotiff_href(pair_store_url: str, polarisation: str) -> str:
    """`{output}/{pair_id}.{polarisation}.tif` beside the pair's `{pair_id}.zarr`."""
    return f"{pair_store_url.removesuffix('.zarr')}.{polarisation}.tif"


def export_sar(pair_store_url: str, storage: StorageOptions) -> dict[str, str]:
    """Write the group's `sar_coregistered`, one GeoTIFF per polarisation on the group's grid (NaN where there is
    no data); returns polarisation -> href."""
    ds = open_pair(pair_store_url, storage)
    names = polarisations(ds.attrs, ds.sizes["band"], pair_store_url)
    h, w = ds.sizes["y"], ds.sizes["x"]
    profile = GEOTIFF | {"height": h, "width": w, "crs": ds.rio.crs, "transform": ds.rio.transform()}
    out = {}
    for b, name in enumerate(names):
        href = geotiff_href(pair_store_url, name)
        local = href if not is_remote(href) else tempfile.mkstemp(suffix=".tif")[1]
        with rasterio.open(local, "w", **profile) as dst:
            for row in range(0, h, BLOCK):
                rows = min(BLOCK, h - row)
                block = ds.sar_coregistered.isel(band=b, y=slice(row, row + rows)).values.astype(np.float32)
                dst.write(block, 1, window=Window(0, row, w, rows))
        if local != href:
            fs, path = fsspec.core.url_to_fs(href, **storage.for_url(href))
            fs.put_file(local, path)
            os.unlink(local)
        out[name] = href
    return out
