"""A local Ray cluster on 127.0.0.1 shared by the pipeline tests, and helpers to make test scenes."""

from __future__ import annotations

import os

import pytest

from tests.conftest import SAMPLE

SCENE = SAMPLE / "scene"
SCENE_OPT = SCENE / "T11SMT_175-188_opt.tif"
SCENE_SAR = SCENE / "T11SMT_175-188_sar.tif"
BEN_OPT = SAMPLE / "bigearthnet" / "33UUP_87_48_opt.tif"
BEN_SAR = SAMPLE / "bigearthnet" / "33UUP_87_48_sar.tif"


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster (2 CPUs, loopback only) for the session."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=1 << 30, log_to_driver=False)
    yield ray
    ray.shutdown()
