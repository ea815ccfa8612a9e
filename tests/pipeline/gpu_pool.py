"""Run by `test_faults.py`-style tests in its own process (a Ray cluster of its own): pair 142 on a node that
declares one GPU (a logical resource: the pool's placement is what is tested, torch here has no CUDA).
Usage: python -m tests.pipeline.gpu_pool OUTPUT."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402 - the settings above must come first

from pipeline import register_pair  # noqa: E402
from pipeline.pool import TilePool  # noqa: E402
from tests.pipeline.conftest import FAST, PAIR_142  # noqa: E402

NODE_CPUS, NODE_GPUS = 2, 1


def main(output: str) -> None:
    ray.init(address="local", num_cpus=NODE_CPUS, num_gpus=NODE_GPUS, include_dashboard=False,
             object_store_memory=1 << 29, log_to_driver=False)
    config = dataclasses.replace(FAST, actors=2)  # a GPU cluster gets one registering actor per GPU instead
    with TilePool(config) as pool:
        result = register_pair(PAIR_142, output, config, pool=pool)
        by_writers = sum(ray.get([w.written.remote() for w in pool.writers]))
        by_registrars = sum(ray.get([a.written.remote() for a in pool.actors]))
        gpu_ids = ray.get(pool.actors[0].__ray_call__.remote(lambda self: ray.get_gpu_ids()))
        print(json.dumps({"registrars": len(pool.actors), "writers": len(pool.writers), "device": pool.model["device"],
                          "registrar_gpu_ids": gpu_ids, "by_writers": by_writers, "by_registrars": by_registrars,
                          "written": result.written_tiles, "status_counts": result.status_counts}))
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
