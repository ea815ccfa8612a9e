"""Run by `test_faults.py` in its own process (a Ray cluster of its own): pair 142 on a simulated 2-node
cluster whose worker node is removed after two tiles. Usage: python -m tests.pipeline.node_loss OUTPUT."""

from __future__ import annotations

import atexit
import json
import os
import sys

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray  # noqa: E402 - the settings above must come first
from ray.cluster_utils import Cluster  # noqa: E402

import pipeline.pair as pair_module  # noqa: E402
from model.config import RefineConfig  # noqa: E402
from pipeline import PipelineConfig, register_pair  # noqa: E402
from tests.pipeline.conftest import PAIR_142  # noqa: E402

NODE_CPUS = 2


def main(output: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": NODE_CPUS, "include_dashboard": False,
                                                            "object_store_memory": 1 << 29})
    atexit.register(cluster.shutdown)  # its node processes must not outlive this one, even on an error
    worker = cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=1 << 29)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    placed, real_start = {}, pair_module.start_pool

    def start_and_remember(config):
        pool = real_start(config)
        placed["actors"] = pool.actors
        return pool

    def lose_worker_after_two(done: int, total: int) -> None:
        if done == 2 and "nodes" not in placed:
            placed["nodes"] = {ray.get(a.describe.remote())["node"] for a in placed["actors"]}
            cluster.remove_node(worker)

    pair_module.start_pool = start_and_remember
    config = PipelineConfig(actors=2, quicklook=False, refinement=RefineConfig(enabled=False))  # mechanics only
    result = register_pair(PAIR_142, output, config, lose_worker_after_two)
    print(json.dumps({"status_counts": result.status_counts, "written": result.written_tiles,
                      "nodes_with_actors_before_loss": len(placed.get("nodes", ())),
                      "worker_had_an_actor": worker.node_id in placed.get("nodes", ()),
                      "nodes_alive_after": sum(n["Alive"] for n in ray.nodes())}))
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
