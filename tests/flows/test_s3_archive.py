"""End to end on a real S3 server (SeaweedFS, credentials enforced): archive in s3://, products out to s3://."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from flows.coregister import coregister_archive
from pipeline import PipelineConfig, StorageOptions
from tests.flows.conftest import S3_KEY, S3_SECRET

BUCKET = "sentinel"


@pytest.mark.slow
def test_coregister_archive_from_s3_to_s3(prefect_api, ray_cluster, seaweed, ben_archive, monkeypatch):
    endpoint, client = seaweed
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(ben_archive.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"archive/{path.relative_to(ben_archive)}")

    config = PipelineConfig(storage=StorageOptions(endpoint_url=endpoint))
    summary = coregister_archive(f"s3://{BUCKET}/archive", f"s3://{BUCKET}/products", config=config)
    assert (summary["registered"], summary["failed"]) == (2, 0), summary
    options = StorageOptions(endpoint_url=endpoint).fsspec()
    for row in summary["rows"]:
        ds = xr.open_zarr(f"s3://{BUCKET}/products/{row['pair_id']}.zarr", storage_options=options)
        assert ds.attrs["complete"] is True
        assert ds.rio.crs.to_epsg() in (32629, 32633)
        assert np.isfinite(ds.flow_x.values[ds.valid.values]).all() and ds.valid.values.mean() > 0.5
        item = json.loads(client.get_object(Bucket=BUCKET, Key=f"products/{row['pair_id']}.json")["Body"].read())
        assert item["assets"]["zarr"]["href"] == f"./{row['pair_id']}.zarr"
        assert all(link["href"].startswith(f"s3://{BUCKET}/archive/") for link in item["links"]
                   if link["rel"] == "derived_from")

    again = coregister_archive(f"s3://{BUCKET}/archive", f"s3://{BUCKET}/products", config=config)
    assert (again["registered"], again["skipped"]) == (0, 2)
