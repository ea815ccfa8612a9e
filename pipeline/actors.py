"""Ray actors, each holding one Registrar: they read, register and write a pair's tiles themselves."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import ray

from .batching import gpu_batch_size
from .chunk import ChunkJob, write_chunk
from .config import PipelineConfig, StorageOptions
from .quality import TileRecord
from .rasters import raster_env
from .sources import PairSource, Readers, WorkerCache, open_readers
from .store import PairStore
from .tiling import Tile
from .windows import TileInput, TileOutput, window_input

LOCAL_OBJECT_STORE_BYTES = 1 << 30
"""Object store of a local cluster started by the pipeline: tiles are small, 1 GiB is plenty."""


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


def _open_store(key: tuple[str, StorageOptions]) -> PairStore:
    return PairStore(*key)


class ChunkWriter:
    """Writes chunks from registrations (read the core, blend, warp, measure, write): no model, so it can run
    on CPU cores beside GPU actors, which then only read and register."""

    def __init__(self) -> None:
        self.readers: WorkerCache[PairSource, Readers] = WorkerCache(open_readers, Readers.close)
        self.stores: WorkerCache[tuple[str, StorageOptions], PairStore] = WorkerCache(_open_store)
        self.chunks_written = 0
        """Chunks this actor wrote since it started (what a pool's split of the work shows)."""

    def write_chunk(self, job: ChunkJob, *registrations: TileOutput) -> TileRecord:
        """Blend, warp, measure and write `job`'s chunk and row from the registrations of its windows (Ray
        resolves their refs here, on the worker). Returns the row."""
        self.chunks_written += 1
        with raster_env(job.source.storage, job.source.gdal_cache_mib):
            return write_chunk(job, self.readers.get(job.source), self.stores.get((job.store, job.source.storage)),
                               registrations)

    def written(self) -> int:
        """`chunks_written` (an actor's attributes are not readable from outside)."""
        return self.chunks_written


class RegistrarActor(ChunkWriter):
    """Loads the model once; reads and registers fixed batches of windows, and writes chunks."""

    def __init__(self, config: PipelineConfig) -> None:
        import torch

        from model import Registrar

        super().__init__()
        torch.set_num_threads(config.threads_per_actor)
        device = config.device
        if device == "auto":  # a GPU actor on a node whose GPU torch cannot use still works, on its CPU
            device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        self.registrar = Registrar.load(config.checkpoint, device=device, refinement=config.refinement)
        self.batch_size = config.batch_size
        """Windows per forward pass this actor is best fed (the driver plans batches of the pool's smallest)."""
        if self.registrar.device.type == "cuda":
            self.batch_size = config.gpu_batch_size or gpu_batch_size(self.registrar, config.tile_size)

    def describe(self) -> dict:
        return {"model": self.registrar.config.name, "checkpoint_sha256": self.registrar.checkpoint_sha256,
                "refinement": json.dumps(self.registrar.refinement.to_dict(), sort_keys=True),
                "certainty_calibrated": self.registrar.calibration is not None, "batch_size": self.batch_size,
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

    def register_windows(self, source: PairSource, tiles: list[Tile],
                         min_valid_fraction: float) -> TileOutput | list[TileOutput]:
        """Read one fixed batch of windows and register those with enough data in one forward pass.

        One output per tile, in order (the caller asks Ray for one object ref each; a single output is
        returned bare, as Ray wants for one return value). A window whose optical and SAR overlap on less
        than `min_valid_fraction` is left out of the batch and returned without flow or error (no data).
        """
        started = time.perf_counter()
        with raster_env(source.storage, source.gdal_cache_mib):
            readers = self.readers.get(source)
            inputs = [window_input(readers, t, min_valid_fraction) for t in tiles]
        batch = [i for i in inputs if i is not None]
        registered = {o.index: o for o in self.register(batch)} if batch else {}
        seconds = time.perf_counter() - started
        outputs = [replace(registered[t.index], seconds=seconds) if t.index in registered else TileOutput(t.index)
                   for t in tiles]
        return outputs if len(outputs) > 1 else outputs[0]
