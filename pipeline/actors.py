"""A pool of Ray actors, each holding one Registrar: tiles in, registrations out."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import ray
from ray.util import ActorPool

from model.config import RefineConfig

from .config import PipelineConfig

LOCAL_OBJECT_STORE_BYTES = 1 << 30
"""Object store of a local cluster started by the pipeline: tiles are small, 1 GiB is plenty."""


@dataclass
class TileInput:
    """One window's arrays, as the actor receives them."""

    index: int
    optical: np.ndarray
    sar: np.ndarray


@dataclass
class TileOutput:
    """One window's registration, or the error that stopped it."""

    index: int
    flow: np.ndarray | None = None
    certainty: np.ndarray | None = None
    affine: np.ndarray | None = None
    error: str = ""


def local_cluster_env() -> None:
    """Settings (unless already set) for a Ray cluster this process starts on this machine."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local cluster on loopback
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private loopback cluster: no token to manage


def connect() -> None:
    """Join the cluster at RAY_ADDRESS when set; otherwise start a local one bound to 127.0.0.1."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        return
    local_cluster_env()
    ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
             log_to_driver=False)  # a new cluster of our own, not whatever another process left running


ACTOR_RESTARTS = 3
"""A dead actor (killed, out of memory, its node lost) is restarted this often, on any node with room."""


class RegistrarActor:
    """Loads the model once; registers batches of same-size windows."""

    def __init__(self, checkpoint: str | None, device: str, threads: int, refinement: RefineConfig) -> None:
        import torch

        from model import Registrar

        torch.set_num_threads(threads)
        self.registrar = Registrar.load(checkpoint, device=device, refinement=refinement)

    def describe(self) -> dict:
        return {"model": self.registrar.config.name, "checkpoint_sha256": self.registrar.checkpoint_sha256,
                "refinement": json.dumps(self.registrar.refinement.to_dict(), sort_keys=True),
                "certainty_calibrated": self.registrar.calibration is not None,
                "device": str(self.registrar.device), "node": ray.get_runtime_context().get_node_id()}

    def register(self, batch: list[TileInput]) -> list[TileOutput]:
        """Register `batch` in one forward pass; if that fails, tile by tile, so one bad tile fails alone."""
        try:
            regs = self.registrar.register_batch([t.optical for t in batch], [t.sar for t in batch])
            return [TileOutput(t.index, r.flow, r.certainty, r.affine) for t, r in zip(batch, regs)]
        except Exception:  # noqa: BLE001 - isolate the failing tile below
            return [self._one(t) for t in batch]

    def _one(self, tile: TileInput) -> TileOutput:
        try:
            r = self.registrar.register(tile.optical, tile.sar)
            return TileOutput(tile.index, r.flow, r.certainty, r.affine)
        except Exception as exc:  # noqa: BLE001 - the error text goes into the tile table
            return TileOutput(tile.index, error=f"{type(exc).__name__}: {exc}")


def start_pool(config: PipelineConfig) -> tuple[ActorPool, list, dict]:
    """`config.actors` actors (one GPU each when the cluster has GPUs), the pool over them, and what model
    they hold."""
    connect()
    gpus = ray.cluster_resources().get("GPU", 0) >= 1
    remote = ray.remote(num_cpus=config.cpus_per_actor, num_gpus=1 if gpus else 0, scheduling_strategy="SPREAD",
                        max_restarts=ACTOR_RESTARTS, max_task_retries=config.retries)(RegistrarActor)
    device = config.device if config.device != "auto" else ("cuda" if gpus else "cpu")
    actors = [remote.remote(config.checkpoint, device, config.threads_per_actor, config.refinement)
              for _ in range(config.actors)]
    model = ray.get(actors[0].describe.remote())
    return ActorPool(actors), actors, model


def stop_pool(actors: list) -> None:
    for actor in actors:
        ray.kill(actor)
