"""s3:// in and out: rasters read through GDAL /vsis3/ and the Zarr group written through s3fs, against a
local S3 server (moto's, for speed; the flows' end-to-end tests use SeaweedFS)."""

import numpy as np
import pytest
import xarray as xr

from pipeline import PipelineConfig, ScenePair, StorageOptions, register_pair
from tests.conftest import MOTO_BUCKET as BUCKET
from tests.pipeline.conftest import BEN_OPT, BEN_SAR


def test_pair_from_s3_to_s3(ray_cluster, moto_s3):
    endpoint, client, _ = moto_s3
    for path in (BEN_OPT, BEN_SAR):
        client.upload_file(str(path), BUCKET, f"scenes/{path.name}")
    pair = ScenePair("ben", (f"s3://{BUCKET}/scenes/{BEN_OPT.name}",), (f"s3://{BUCKET}/scenes/{BEN_SAR.name}",))
    config = PipelineConfig(storage=StorageOptions(endpoint_url=endpoint))
    result = register_pair(pair, f"s3://{BUCKET}/out", config)
    assert result.store == f"s3://{BUCKET}/out/ben.zarr"
    ds = xr.open_zarr(result.store, storage_options=config.storage.fsspec())
    assert ds.attrs["complete"] is True
    assert ds.rio.crs.to_epsg() == 32633
    assert np.isfinite(ds.flow_x.values[ds.valid.values]).all()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"]}
    assert "out/ben.quicklook.png" in keys and "out/ben.zarr/zarr.json" in keys
    again = register_pair(pair, f"s3://{BUCKET}/out", config)
    assert again.already_complete


def test_unreachable_object_names_the_url(ray_cluster, moto_s3):
    endpoint, _, _ = moto_s3
    pair = ScenePair("missing", (f"s3://{BUCKET}/nope/opt.tif",), (f"s3://{BUCKET}/nope/sar.tif",))
    with pytest.raises(ValueError, match="s3://archive/nope/opt.tif"):
        register_pair(pair, f"s3://{BUCKET}/out", PipelineConfig(storage=StorageOptions(endpoint_url=endpoint)))
