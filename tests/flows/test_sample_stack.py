"""`make run`'s second half, in stack pairing (a real Prefect run, real Ray), on the sample's tile with two
Sentinel-1 acquisitions (T11SMT 139-140; the whole sample would double the suite's longest run): the
acceptance checks of the cube, and the recovered misregistration against the injected one, pair by pair. The
120² BigEarthNet pairs, which the model leaves as they are or makes worse, are in `make run`'s table and
`docs/flows.md`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flows.coregister import DEFAULT_ARCHIVE, coregister_archive
from flows.discovery import DiscoveryConfig
from flows.injected import SAMPLE_SIDECAR, recovery
from pipeline import PipelineConfig
from pipeline.cube import cube_path, open_cube
from tests.flows.conftest import assert_step_equals_group

TILE = "T11SMT_139-140"
SCENES = {k: v for k, v in json.loads(SAMPLE_SIDECAR.read_text())["scenes"].items() if TILE in k}
"""Sentinel-1 item -> what was injected into it (the tile's two acquisitions, the second made up)."""
STACKED_TILES = {f"S2_{TILE}": 2}


@pytest.fixture(scope="module")
def sample_run(prefect_api, ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("sample-stack")
    archive = root / "archive"
    for item in Path(DEFAULT_ARCHIVE).glob(f"*/*_{TILE}"):
        shutil.copytree(item, archive / item.parent.name / item.name)
    out = str(root / "out")
    summary = coregister_archive(str(archive), out, discovery=DiscoveryConfig(pairing="stack"),
                                 config=PipelineConfig(actors=2))
    assert summary["failed"] == 0 and summary["pairs"] == len(SCENES), summary
    return out, {r["pair_id"]: r for r in summary["rows"]}


@pytest.mark.slow
def test_each_tile_has_a_cube_whose_steps_equal_their_pair_groups(sample_run):
    out, rows = sample_run
    for tile, steps in STACKED_TILES.items():
        cube = open_cube(cube_path(out, tile))
        assert cube.sizes["time"] == steps and bool((np.diff(cube.time.values) > np.timedelta64(0)).all())
        for i, pair_id in enumerate(cube.pair_id.values):
            assert rows[str(pair_id)]["cube"] == cube_path(out, tile)
            assert_step_equals_group(cube, i, xr.open_zarr(f"{out}/{pair_id}.zarr"))


@pytest.mark.slow
@pytest.mark.parametrize("sar_item", sorted(SCENES))
def test_the_recovered_error_is_below_the_injected_one(sample_run, sar_item):
    out, _ = sample_run
    pair_id = f"{SCENES[sar_item]['optical_item']}__{sar_item}"
    rec = recovery(f"{out}/{pair_id}.zarr", sar_item)
    assert rec is not None
    assert rec.error_rmse_px < rec.injected_rmse_px and rec.error_median_px < rec.injected_rmse_px, rec
