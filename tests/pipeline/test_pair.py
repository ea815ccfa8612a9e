"""`register_pair` end to end on real rasters: the Zarr contract, BigEarthNet units, another UTM zone,
pool-size independence, and resuming an interrupted run."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from model.checkpoint import file_sha256
from model.config import RefineConfig
from model.registrar import BUNDLED_CHECKPOINT
from pipeline import ScenePair, TileStatus, register_pair
from pipeline.invariants import violations
from pipeline.store import tile_table
from tests.pipeline.conftest import BEN_OPT, BEN_SAR, FAST, PAIR_142, VARIABLES, arrays, rewrite_in_crs

BEN = ScenePair("ben", (str(BEN_OPT),), (str(BEN_SAR),))


@pytest.fixture(scope="module")
def ben_run(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("ben")
    return register_pair(BEN, str(out))


def test_output_reads_back_with_the_optical_grid_and_every_variable(ben_run):
    ds = xr.open_zarr(ben_run.store)
    with rasterio.open(BEN_OPT) as src:
        assert ds.rio.crs == src.crs
        assert ds.rio.transform() == src.transform
        assert (ds.sizes["y"], ds.sizes["x"]) == src.shape
    for v in VARIABLES:
        assert ds[v].attrs.get("grid_mapping") == "spatial_ref" or ds[v].encoding.get("grid_mapping") == "spatial_ref"
    assert ds.sar_coregistered.sizes["band"] == 2
    assert ds.attrs["complete"] is True and ds.attrs["pair_id"] == "ben"
    assert ds.attrs["checkpoint_sha256"] == file_sha256(BUNDLED_CHECKPOINT)  # the pipeline's default
    assert RefineConfig.from_dict(json.loads(ds.attrs["refinement"])) == RefineConfig()  # what the actors ran
    assert ds.attrs["certainty_calibrated"] is True
    assert len(tile_table(ds)) == ds.sizes["tile"] == ben_run.tiles == 1
    assert Path(ben_run.quicklook).stat().st_size > 10_000


def test_bigearthnet_units_go_through_without_scaling(ben_run):
    ds = xr.open_zarr(ben_run.store)
    row = tile_table(ds)[0]
    assert row["status"] in ("ok", "low_confidence")
    assert ds.valid.values.mean() > 0.75  # a flow of a few px moves part of a 120 px tile outside the SAR
    assert np.isfinite(ds.flow_x.values[ds.valid.values]).all()
    assert np.isfinite([row["similarity_before"], row["similarity_after"]]).all()
    # the co-registered SAR keeps the SAR's own units (dB)
    sar = ds.sar_coregistered.values[:, ds.valid.values]
    with rasterio.open(BEN_SAR) as src:
        raw = src.read()
    assert abs(np.median(sar) - np.median(raw)) < 1.0


def test_sar_in_another_utm_zone_is_reprojected_and_registered(ben_run, tmp_path):
    other = rewrite_in_crs(BEN_SAR, tmp_path / "sar_32N.tif", "EPSG:32632")
    result = register_pair(ScenePair("ben32", (str(BEN_OPT),), (str(other),)), str(tmp_path))  # as ben_run
    moved, native = xr.open_zarr(result.store), xr.open_zarr(ben_run.store)
    both = moved.valid.values & native.valid.values
    assert both.mean() > 0.8
    diff = np.hypot(moved.flow_x.values - native.flow_x.values, moved.flow_y.values - native.flow_y.values)[both]
    assert np.median(diff) < 1.0  # the same scene: the zone change adds no misregistration


def test_two_actors_give_the_same_arrays_as_one(reference_142, tmp_path):
    two = register_pair(PAIR_142, str(tmp_path), dataclasses.replace(FAST, actors=2))
    assert two.status_counts == reference_142.status_counts
    ref, got = arrays(reference_142.store), arrays(two.store)
    for v in VARIABLES:
        np.testing.assert_array_equal(got[v], ref[v], err_msg=v)


class Interrupted(RuntimeError):
    pass


def test_interrupted_run_resumes_without_rewriting_written_chunks_and_keeps_the_model_attrs(reference_142, tmp_path):
    def crash_after_three(done: int, total: int) -> None:
        if done == 3:
            raise Interrupted("killed after 3 tiles")

    with pytest.raises(Interrupted):
        register_pair(PAIR_142, str(tmp_path), FAST, progress=crash_after_three)
    store = tmp_path / "142.zarr"
    ds = xr.open_zarr(store, consolidated=False)
    assert not ds.attrs["complete"] and violations(ds) == []
    written = [i for i, s in enumerate(ds.tile_status.values) if s != TileStatus.PENDING]
    assert len(written) == 3
    chunk_files = [store / "flow_x" / "c" / str(r) / str(c)
                   for r, c in (divmod(i, 3) for i in written)]  # 1024 px = 3 x 3 chunks of 448
    stamps = [f.stat().st_mtime_ns for f in chunk_files]

    totals = []

    def crash_after_the_last(done: int, total: int) -> None:
        totals.append(total)
        if done == total:
            raise Interrupted("killed after the last tile, before the group is finished")

    with pytest.raises(Interrupted):
        register_pair(PAIR_142, str(tmp_path), FAST, progress=crash_after_the_last)
    assert set(totals) == {9 - 3}
    assert [f.stat().st_mtime_ns for f in chunk_files] == stamps  # complete chunks were not rewritten
    # every tile written, not finished: the third run registers nothing and still names the model
    resumed = register_pair(PAIR_142, str(tmp_path), FAST)
    assert resumed.written_tiles == 0 and not resumed.already_complete
    ref, got = arrays(reference_142.store), arrays(str(store))
    for v in VARIABLES:
        np.testing.assert_array_equal(got[v], ref[v], err_msg=v)
    ds = xr.open_zarr(store)
    assert violations(ds) == []
    assert ds.attrs["complete"] and ds.attrs["checkpoint_sha256"] == file_sha256(BUNDLED_CHECKPOINT)
    assert ds.attrs["batch_size"] == FAST.batch_size  # on CPU actors, the configured batch
    assert RefineConfig.from_dict(json.loads(ds.attrs["refinement"])) == FAST.refinement
    again = register_pair(PAIR_142, str(tmp_path), FAST)
    assert again.already_complete and again.written_tiles == 0
