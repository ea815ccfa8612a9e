"""Transient object-storage faults (503 Slow Down, connection resets) while a pair's rasters are read from a
real S3 server (SeaweedFS behind a loopback proxy that fails every n-th read): retried, same product."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

from flows.coregister import is_transient
from pipeline import PipelineConfig, RasterError, ScenePair, StorageOptions, TransientReadError, register_pair
from pipeline import rasters
from pipeline.rasters import READ_ATTEMPTS
from tests.flaky_proxy import FlakyProxy
from tests.flows.conftest import S3_KEY, S3_SECRET
from tests.pipeline.conftest import BEN_OPT, BEN_SAR

BUCKET = "flaky"


@pytest.fixture()
def s3_pair(seaweed, monkeypatch) -> tuple[str, ScenePair]:
    """The BigEarthNet pair uploaded to the real S3 server; (endpoint, pair)."""
    endpoint, client = seaweed
    for k, v in (("AWS_ACCESS_KEY_ID", S3_KEY), ("AWS_SECRET_ACCESS_KEY", S3_SECRET), ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(k, v)
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    for path in (BEN_OPT, BEN_SAR):
        client.upload_file(str(path), BUCKET, f"scenes/{path.name}")
    return endpoint, ScenePair("ben", (f"s3://{BUCKET}/scenes/{BEN_OPT.name}",),
                               (f"s3://{BUCKET}/scenes/{BEN_SAR.name}",))


QUICK_RETRIES = {"http_retries": 2, "http_retry_delay_s": 0.1}
"""GDAL gives up on a request after 3 tries: a burst of 4 failed reads reaches the pipeline's own retry."""


def through(endpoint: str) -> PipelineConfig:
    return PipelineConfig(storage=StorageOptions(endpoint_url=endpoint, **QUICK_RETRIES))


@pytest.mark.slow
def test_transient_read_faults_are_retried_and_give_the_same_product(ray_cluster, s3_pair, tmp_path):
    endpoint, pair = s3_pair
    clean = register_pair(pair, str(tmp_path / "clean"), through(endpoint))
    with FlakyProxy(endpoint, f"{BUCKET}/scenes", every=5, burst=4) as proxy:
        flaky = register_pair(pair, str(tmp_path / "flaky"), through(proxy.endpoint))
    assert proxy.faults.failed["503"] >= 2 and proxy.faults.failed["reset"] >= 2, proxy.faults
    assert flaky.status_counts == clean.status_counts and "failed" not in flaky.status_counts
    a, b = xr.open_zarr(clean.store), xr.open_zarr(flaky.store)
    for name in ("flow_x", "flow_y", "certainty", "sar_coregistered", "tile_affine"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.slow
def test_a_read_that_keeps_failing_is_a_transient_error_naming_the_file(ray_cluster, s3_pair, tmp_path):
    endpoint, pair = s3_pair
    with FlakyProxy(endpoint, f"{BUCKET}/scenes", every=1) as proxy:
        with pytest.raises(TransientReadError, match=f"{pair.optical[0]}: cannot open as a raster") as caught:
            register_pair(pair, str(tmp_path / "out"), through(proxy.endpoint))
    assert is_transient(caught.value) and proxy.faults.reads >= READ_ATTEMPTS * (QUICK_RETRIES["http_retries"] + 1)
    assert not (tmp_path / "out" / "ben.zarr").exists()


def test_a_corrupt_raster_in_s3_fails_at_once_with_its_name(seaweed, s3_pair, tmp_path, monkeypatch):
    endpoint, pair = s3_pair
    _, client = seaweed
    data = BEN_SAR.read_bytes()
    client.put_object(Bucket=BUCKET, Key="scenes/truncated_sar.tif", Body=data[: len(data) // 2])
    truncated = replace(pair, sar=(f"s3://{BUCKET}/scenes/truncated_sar.tif",))
    waits = []
    monkeypatch.setattr(rasters.time, "sleep", waits.append)
    with pytest.raises(RasterError, match="truncated_sar.tif: unreadable data, truncated or corrupt") as caught:
        register_pair(truncated, str(tmp_path / "out"), through(endpoint))
    assert not is_transient(caught.value) and waits == []
