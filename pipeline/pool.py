"""`TilePool`: the Ray actors a run (or several runs at once, one per thread) sends its tiles to."""

from __future__ import annotations

import os
import threading
from types import TracebackType

import ray

from .actors import ACTOR_RESTARTS, RegistrarActor, connect
from .config import PipelineConfig

FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3")
"""Storage settings the actors take from the driver's environment when they start: workers read and write
object storage themselves, and a worker sees only the environment of its cluster otherwise."""
MODEL_SETTINGS = ("checkpoint", "refinement", "device", "threads_per_actor")
"""Config fields that decide the actors' model: a run on a shared pool must agree with its pool on them."""


class TilePool:
    """`config.actors` RegistrarActors (one GPU each when the cluster has GPUs) and what model they hold.

    Started on first use (`actors`, `model`, `submit`), so a flow can hand one pool to every pair and a run
    whose pairs are all complete starts no actor. Thread-safe: each call goes to the actor with the fewest
    unfinished calls, so several `register_pair` calls in threads share one pool. A context manager:
    `with TilePool(config) as pool: ...`.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        """The config the pool is started with (its model settings bind every run on it)."""
        self._lock = threading.RLock()
        self._actors: list | None = None
        self._model: dict = {}
        self._unfinished: list[list[ray.ObjectRef]] = []

    @classmethod
    def start(cls, config: PipelineConfig) -> TilePool:
        """A pool whose actors are started now; returns once the model loaded."""
        pool = cls(config)
        pool._ensure_started()
        return pool

    def _ensure_started(self) -> list:
        with self._lock:
            if self._actors is None:
                connect()
                config = self.config
                gpus = ray.cluster_resources().get("GPU", 0) >= 1
                env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
                remote = ray.remote(num_cpus=config.cpus_per_actor, num_gpus=1 if gpus else 0,
                                    scheduling_strategy="SPREAD", max_restarts=ACTOR_RESTARTS,
                                    max_task_retries=config.retries,
                                    runtime_env={"env_vars": env} if env else None)(RegistrarActor)
                device = config.device if config.device != "auto" else ("cuda" if gpus else "cpu")
                actors = [remote.remote(config.checkpoint, device, config.threads_per_actor, config.refinement)
                          for _ in range(config.actors)]
                self._model = ray.get(actors[0].describe.remote())
                self._unfinished = [[] for _ in actors]
                self._actors = actors
            return self._actors

    @property
    def actors(self) -> list:
        """The actor handles (started on first use)."""
        return self._ensure_started()

    @property
    def model(self) -> dict:
        """What `RegistrarActor.describe` says of the model the actors hold (started on first use)."""
        self._ensure_started()
        return self._model

    def check(self, config: PipelineConfig) -> None:
        """Refuse a run whose model settings differ from the pool's (its output would not be that model's)."""
        differ = [k for k in MODEL_SETTINGS if getattr(config, k) != getattr(self.config, k)]
        if differ:
            raise ValueError(f"the pool's actors were started with other {', '.join(differ)} than this run asks for")

    def submit(self, method: str, *args: object, num_returns: int = 1) -> list[ray.ObjectRef]:
        """Call actor `method` on the least busy actor; its `num_returns` refs (arguments that are refs are
        resolved by Ray on the worker)."""
        with self._lock:
            self._ensure_started()
            for refs in self._unfinished:
                if refs:
                    _, refs[:] = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            slot = min(range(len(self.actors)), key=lambda i: len(self._unfinished[i]))
            out = getattr(self.actors[slot], method).options(num_returns=num_returns).remote(*args)
            refs = out if isinstance(out, list) else [out]
            self._unfinished[slot].append(refs[0])
            return refs

    def close(self) -> None:
        """Stop the actors, if started (whatever they still run is dropped)."""
        with self._lock:
            for actor in self._actors or []:
                ray.kill(actor)
            self._actors = None

    def __enter__(self) -> TilePool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def start_pool(config: PipelineConfig) -> tuple[TilePool, list, dict]:
    """A started pool, its actor handles and what model they hold (what `register_pair` calls to start its own
    pool when it is given none)."""
    pool = TilePool.start(config)
    return pool, pool.actors, pool.model
