"""CF metadata on every product: the pair group and the cube read back with units, axes, fill values, the flow's
scale to metres, the acquisition times and the grid (rioxarray)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.config import StorageOptions
from pipeline.cube import append_pair, open_cube
from tests.pipeline.cube_pairs import GRID, pair_arrays, write_pair


def _check_cf(ds: xr.Dataset, where: str) -> None:
    assert ds.attrs["Conventions"].startswith("CF-"), where
    assert (ds.x.attrs["axis"], ds.x.attrs["units"], ds.x.attrs["standard_name"]) == ("X", "m", "projection_x_coordinate")
    assert (ds.y.attrs["axis"], ds.y.attrs["units"], ds.y.attrs["standard_name"]) == ("Y", "m", "projection_y_coordinate")
    assert ds.certainty.attrs["units"] == "1" and list(ds.certainty.attrs["valid_range"]) == [0.0, 1.0]
    assert np.isnan(ds.certainty.encoding["_FillValue"]) and np.isnan(ds.sar_coregistered.encoding["_FillValue"])
    assert float(ds.pixel_size_x) == GRID.pixel_size[0] and ds.pixel_size_x.attrs["units"] == "m"
    assert "pixel_size_m" not in ds.flow_x.attrs  # the scale is a coordinate, not an ad-hoc attribute
    assert ds.rio.crs == GRID.crs and ds.rio.transform() == GRID.transform, where


def test_a_pair_group_and_its_cube_carry_cf_metadata_and_nan_where_there_is_no_data(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    path = write_pair(str(tmp_path), "p", "2024-01-17T05:10:00Z", 4, storage=storage)
    group = xr.open_zarr(path)
    _check_cf(group, path)
    truth = pair_arrays(4, 2)
    certainty = group.certainty.values
    assert np.isnan(certainty[~truth["valid"]]).all() and (certainty[truth["valid"]] >= 0).all()
    assert group.attrs["sar_datetime"] == "2024-01-17T05:10:00Z" and group.attrs["optical_datetime"]
    flow_m = group.flow_x * group.pixel_size_x
    np.testing.assert_allclose(flow_m.values, truth["flow"][0] * GRID.pixel_size[0])

    append_pair(str(tmp_path / "cube.zarr"), path, storage)
    cube = open_cube(str(tmp_path / "cube.zarr"), storage)
    _check_cf(cube, "cube")
    assert cube.time.attrs["standard_name"] == "time" and cube.time.attrs["axis"] == "T"
    assert all(cube[v].attrs.get("grid_mapping") is None and "spatial_ref" in cube[v].coords for v in cube.data_vars)
