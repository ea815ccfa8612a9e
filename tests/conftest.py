"""Shared fixtures: the bundled real sample pairs (data/sample), a local Ray cluster, free loopback ports."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import boto3
import numpy as np
import pytest
import rasterio
import torch

from training.data import read_quadrants

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def volkov_pair() -> tuple[np.ndarray, np.ndarray]:
    """Volkov pair 187 (T11SMT): optical uint8 (3, 1024, 1024), SAR VH uint8 (1, 1024, 1024)."""
    return read(SAMPLE / "s1s2_volkov" / "187_opt.tif"), read(SAMPLE / "s1s2_volkov" / "187_sar.tif")


VOLKOV_187_Q1 = (slice(0, 512), slice(512, 1024))
"""Quadrant of pair 187 where both independent residual estimates agree (offsets.csv)."""
VOLKOV_187_Q1_OFFSET = next(q.offset for q in read_quadrants(SAMPLE) if q.pair_id == "187" and (q.x0, q.y0) == (512, 0))


@pytest.fixture(scope="session")
def bigearthnet_pair() -> tuple[np.ndarray, np.ndarray]:
    """BigEarthNet 33UUP_87_48: optical uint16 reflectance (4, 120, 120), SAR float32 dB (2, 120, 120)."""
    return read(SAMPLE / "bigearthnet" / "33UUP_87_48_opt.tif"), read(SAMPLE / "bigearthnet" / "33UUP_87_48_sar.tif")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster (2 CPUs, loopback only) for the session."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    # address="local": always a new cluster, never one left running on this machine by another process
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=1 << 30,
             log_to_driver=False)
    yield ray
    ray.shutdown()


MOTO_BUCKET = "archive"


@pytest.fixture()
def moto_s3(monkeypatch):
    """moto's S3 server on a free loopback port with one bucket (quick unit tests of s3:// paths): yields the
    endpoint, a boto3 client and the server (a test may stop it)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=MOTO_BUCKET)
    yield endpoint, client, server
    with contextlib.suppress(Exception):  # a test may have stopped it already
        server.stop()
