"""A real Prefect run in stack pairing: every Sentinel-1 acquisition of a tile registered once and appended to the
tile's cube, each step equal to its pair group (its CRS and transform too), a rerun a no-op; the product Items
and their Collection load the same co-registered SAR through odc-stac."""

from __future__ import annotations

import numpy as np
import odc.stac
import pystac
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox

from flows.coregister import coregister_archive
from flows.discovery import DiscoveryConfig
from pipeline import PipelineConfig
from pipeline.cube import CUBE_BANDS, cube_path, open_cube, open_repository
from tests.flows.conftest import assert_step_equals_group

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
        assert_step_equals_group(cube, i, xr.open_zarr(f"{out}/{pair_id}.zarr"))
    assert set(cube.band.values) == set(CUBE_BANDS)

    collection = pystac.Collection.from_file(f"{out}/collection.json")
    assert collection.id == "soma-s1-s2-coregistration"
    assert sorted(link.href.removeprefix("./") for link in collection.links if link.rel == "item") == \
        sorted(f"{p}.json" for p in rows)
    items = [pystac.Item.from_file(f"{out}/{p}.json") for p in STACK]
    group = xr.open_zarr(f"{out}/{STACK[0]}.zarr")
    assert items[0].properties["proj:shape"] == [group.sizes["y"], group.sizes["x"]]
    assert items[0].properties["proj:code"] == f"EPSG:{group.rio.crs.to_epsg()}"
    assert [i.properties["soma:pairing"] for i in items] == ["stack", "stack"]
    geobox = GeoBox((group.sizes["y"], group.sizes["x"]), group.rio.transform(), group.rio.crs)
    loaded = odc.stac.load(items, bands=list(CUBE_BANDS), geobox=geobox, resampling="nearest")
    assert list(loaded.time.values) == list(cube.time.values)
    for band in CUBE_BANDS:
        np.testing.assert_array_equal(loaded[band].values, cube.sar_coregistered.sel(band=band).values)
    items_only_grid = odc.stac.load(items, bands=["vv"])  # the grid from the Items' proj:* alone
    assert items_only_grid.odc.geobox == geobox
    head = open_repository(cube_url, PipelineConfig().storage).lookup_branch("main")

    again = coregister_archive(str(ben_stack_archive), out, discovery=stack, config=PipelineConfig(actors=1))
    assert again["skipped"] == 3 and again["failed"] == 0
    assert open_repository(cube_url, PipelineConfig().storage).lookup_branch("main") == head
