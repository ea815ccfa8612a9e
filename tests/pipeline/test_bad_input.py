"""Bad input: each case gets a clear error naming the file and the problem, or a tile status; nothing already
written changes; the group left behind keeps every invariant."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from rasterio.transform import Affine
from typer.testing import CliRunner

from cli.main import app
from model.config import RefineConfig
from model.errors import CheckpointError
from pipeline import PipelineConfig, RasterError, ScenePair, register_pair
from pipeline.invariants import violations
from pipeline.store import StoreMismatch
from tests.pipeline.conftest import BEN_OPT, BEN_SAR

FAST = PipelineConfig(quicklook=False, refinement=RefineConfig(enabled=False))
"""Bad-input handling does not depend on the refinement: the network alone keeps these fast."""


def write_like(source: Path, target: Path, data: np.ndarray | None = None, **profile) -> Path:
    """`source` rewritten at `target` with other `data` and/or profile entries."""
    with rasterio.open(source) as src:
        out = src.read() if data is None else data
        meta = src.profile | {"count": out.shape[0], "dtype": str(out.dtype)} | profile
    with rasterio.open(target, "w", **meta) as dst:
        dst.write(out)
    return target


def sar_data() -> np.ndarray:
    with rasterio.open(BEN_SAR) as src:
        return src.read()


def run(tmp_path: Path, sar: Path, optical: Path = BEN_OPT, name: str = "pair", config: PipelineConfig = FAST):
    return register_pair(ScenePair(name, (str(optical),), (str(sar),)), str(tmp_path / "out"), config)


@pytest.mark.parametrize("case, expected", [
    ("not_a_raster", "cannot open as a raster"),
    ("truncated", "cannot open as a raster|truncated or corrupt"),
    ("three_bands", "SAR has 3 bands"),
    ("complex", "complex"),
    ("too_small", "at least 64 x 64"),
    ("no_overlap", "does not overlap"),
])
def test_unusable_rasters_are_refused_naming_the_file(ray_cluster, tmp_path, case, expected):
    bad = tmp_path / f"{case}.tif"
    optical = BEN_OPT
    if case == "not_a_raster":
        bad.write_text("station,value\n1,2\n")
    elif case == "truncated":
        data = BEN_SAR.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "three_bands":
        write_like(BEN_SAR, bad, np.concatenate([sar_data(), sar_data()[:1]]))
    elif case == "complex":
        write_like(BEN_SAR, bad, sar_data().astype(np.complex64))
    elif case == "too_small":
        with rasterio.open(BEN_OPT) as src:
            small = src.read()[:, :40, :40]
        optical = write_like(BEN_OPT, tmp_path / "small_opt.tif", small, width=40, height=40)
        bad = BEN_SAR
    elif case == "no_overlap":
        with rasterio.open(BEN_SAR) as src:
            far = Affine.translation(50_000, 0) * src.transform
        write_like(BEN_SAR, bad, transform=far)
    with pytest.raises(RasterError, match=expected) as error:
        run(tmp_path, bad, optical)
    assert str(bad if case != "too_small" else optical) in str(error.value)
    assert not (tmp_path / "out" / "pair.zarr").exists()  # nothing was created for a refused pair


def test_an_all_nodata_sar_gives_no_data_tiles_and_a_complete_group(ray_cluster, tmp_path):
    empty = write_like(BEN_SAR, tmp_path / "empty.tif", np.full_like(sar_data(), np.nan), nodata=np.nan)
    result = run(tmp_path, empty)
    assert result.status_counts == {"no_data": 1}
    ds = xr.open_zarr(result.store)
    assert ds.attrs["complete"] is True and violations(ds) == []
    assert not ds.valid.values.any() and np.isnan(ds.flow_x.values).all()
    runner = CliRunner()
    assert runner.invoke(app, ["check", result.store]).exit_code == 0
    zarr.open_group(result.store, mode="r+")["valid"][:10, :10] = True  # data that looks real in a no-data tile
    tampered = runner.invoke(app, ["check", result.store])
    assert tampered.exit_code == 1 and "tile 0 is no_data but its chunk holds valid" in tampered.output


def test_nan_and_inf_pixels_are_missing_not_data(ray_cluster, tmp_path):
    data = sar_data().copy()
    data[:, :30, :] = np.inf
    data[:, 30:45, :] = np.nan
    data[0, 60:70, 60:70] = -np.inf
    result = run(tmp_path, write_like(BEN_SAR, tmp_path / "holes.tif", data, nodata=np.nan))
    ds = xr.open_zarr(result.store)
    assert violations(ds) == []
    assert result.status_counts.get("failed", 0) == 0
    valid = ds.valid.values
    assert valid.mean() > 0.4
    y, x = np.mgrid[: valid.shape[0], : valid.shape[1]]
    sampled_y = (y + ds.flow_y.values)[valid]  # where each valid pixel's SAR value was taken from
    sampled_x = (x + ds.flow_x.values)[valid]
    assert sampled_y.min() > 44 - 1  # never from the inf / NaN rows (bilinear support: one pixel)
    in_block = (sampled_y > 59) & (sampled_y < 70) & (sampled_x > 59) & (sampled_x < 70)
    assert not in_block.any()  # nor from the -inf block
    assert np.isfinite(ds.sar_coregistered.values[:, valid]).all()


def test_a_sliver_of_overlap_registers_what_overlaps_and_marks_the_rest_no_data(ray_cluster, tmp_path):
    from tests.conftest import SAMPLE

    optical = SAMPLE / "s1s2_volkov" / "142_opt.tif"
    sar = SAMPLE / "s1s2_volkov" / "142_sar.tif"
    with rasterio.open(sar) as src:
        moved = Affine.translation(-700 * src.res[0], 0) * src.transform  # only the left ~320 px still overlap
    shifted = write_like(sar, tmp_path / "sliver.tif", transform=moved)
    result = run(tmp_path, shifted, optical, "sliver")
    ds = xr.open_zarr(result.store)
    assert violations(ds) == []
    assert result.status_counts.get("no_data", 0) >= 3
    assert result.status_counts.get("ok", 0) + result.status_counts.get("low_confidence", 0) >= 3
    assert not ds.valid.values[:, 400:].any()


def test_a_checkpoint_that_is_not_a_soma_state_dict_is_refused(ray_cluster, tmp_path):
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "soma-checkpoint/1", "config": print}))
    with pytest.raises(Exception, match="evil.pt") as error:
        run(tmp_path, BEN_SAR, config=PipelineConfig(quicklook=False, checkpoint=str(evil)))
    assert "CheckpointError" in repr(error.value) or isinstance(error.value, CheckpointError)


def test_an_output_prefix_that_is_a_zarr_store_is_refused_and_left_alone(ray_cluster, tmp_path):
    foreign = tmp_path / "out"
    zarr.open_group(str(foreign), mode="w", zarr_format=3).attrs["owner"] = "someone else"
    before = sorted((p.relative_to(foreign), p.read_bytes()) for p in foreign.rglob("*") if p.is_file())
    with pytest.raises(StoreMismatch, match="is itself a Zarr store"):
        run(tmp_path, BEN_SAR)
    assert sorted((p.relative_to(foreign), p.read_bytes()) for p in foreign.rglob("*") if p.is_file()) == before


def test_an_unrelated_group_at_the_pair_path_is_refused_and_left_alone(ray_cluster, tmp_path):
    group = tmp_path / "out" / "pair.zarr"
    zarr.open_group(str(group), mode="w", zarr_format=3).create_array("data", shape=(4,), dtype="int8")
    before = sorted((p.relative_to(group), p.read_bytes()) for p in group.rglob("*") if p.is_file())
    with pytest.raises(StoreMismatch, match="another layout|existing group"):
        run(tmp_path, BEN_SAR)
    assert sorted((p.relative_to(group), p.read_bytes()) for p in group.rglob("*") if p.is_file()) == before
    shutil.rmtree(group)
    assert run(tmp_path, BEN_SAR).status_counts.get("failed", 0) == 0
