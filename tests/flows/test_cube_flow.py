"""A real Prefect run in stack pairing: every Sentinel-1 acquisition of a tile registered once and appended to the
tile's cube, each step equal to its pair group (its CRS and transform too), a rerun a no-op."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from flows.coregister import coregister_archive
from flows.discovery import DiscoveryConfig
from pipeline import PipelineConfig
from pipeline.cube import CUBE_BANDS, cube_path, open_cube, open_repository

BEN_TILE = "S2_33UUP_87_48"
"""The 33UUP scene's tile key (its S2 id without the date): the cube holding its two acquisitions."""
STACK = ["S2_20170613_33UUP_87_48__S1_20170615_33UUP_87_48", "S2_20170613_33UUP_87_48__S1_20170621_33UUP_87_48"]


@pytest.mark.slow
def test_a_stack_run_appends_each_acquisition_to_its_tiles_cube(prefect_api, ray_cluster, ben_stack_archive,
                                                                 tmp_path):
    out = str(tmp_path / "out")
    stack = DiscoveryConfig(pairing="stack")
    summary = coregister_archive(str(ben_stack_archive), out, discovery=stack, config=PipelineConfig(actors=1))
    rows = {r["pair_id"]: r for r in summary["rows"]}
    assert summary["failed"] == 0 and len(rows) == 3, summary
    cube_url = cube_path(out, BEN_TILE)
    assert {rows[p]["cube"] for p in STACK} == {cube_url}

    cube = open_cube(cube_url)
    assert list(cube.pair_id.values) == STACK and cube.sizes["time"] == 2
    assert list(cube.time.values) == [np.datetime64("2017-06-15T16:58:12", "ns"), np.datetime64("2017-06-21T16:50:05", "ns")]
    for i, pair_id in enumerate(STACK):
        group = xr.open_zarr(f"{out}/{pair_id}.zarr")
        for name in ("flow_x", "flow_y", "certainty", "valid"):
            np.testing.assert_array_equal(cube[name].values[i], group[name].values)
        for b, pol in enumerate(group.attrs["sar_polarisations"]):
            np.testing.assert_array_equal(cube.sar_coregistered.sel(band=pol).values[i],
                                          group.sar_coregistered.values[b])
        assert cube.rio.crs == group.rio.crs and cube.rio.transform() == group.rio.transform()
    assert set(cube.band.values) == set(CUBE_BANDS)
    head = open_repository(cube_url, PipelineConfig().storage).lookup_branch("main")

    again = coregister_archive(str(ben_stack_archive), out, discovery=stack, config=PipelineConfig(actors=1))
    assert again["skipped"] == 3 and again["failed"] == 0
    assert open_repository(cube_url, PipelineConfig().storage).lookup_branch("main") == head
