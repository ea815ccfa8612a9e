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

    Thread-safe: each call goes to the actor with the fewest unfinished calls, so several `register_pair`
    calls in threads can share one pool. A context manager: `with TilePool.start(config) as pool: ...`.
    """

    def __init__(self, actors: list, model: dict, config: PipelineConfig) -> None:
        self.actors = actors
        """The actor handles."""
        self.model = model
        """What `RegistrarActor.describe` says of the model they hold."""
        self.config = config
        """The config the pool was started with (its model settings bind every run on it)."""
        self._lock = threading.Lock()
        self._unfinished: list[list[ray.ObjectRef]] = [[] for _ in actors]

    @classmethod
    def start(cls, config: PipelineConfig) -> TilePool:
        """Connect to (or start) the cluster and start `config.actors` actors; returns once the model loaded."""
        connect()
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        remote = ray.remote(num_cpus=config.cpus_per_actor, num_gpus=1 if gpus else 0, scheduling_strategy="SPREAD",
                            max_restarts=ACTOR_RESTARTS, max_task_retries=config.retries,
                            runtime_env={"env_vars": env} if env else None)(RegistrarActor)
        device = config.device if config.device != "auto" else ("cuda" if gpus else "cpu")
        actors = [remote.remote(config.checkpoint, device, config.threads_per_actor, config.refinement)
                  for _ in range(config.actors)]
        return cls(actors, ray.get(actors[0].describe.remote()), config)

    def check(self, config: PipelineConfig) -> None:
        """Refuse a run whose model settings differ from the pool's (its output would not be that model's)."""
        differ = [k for k in MODEL_SETTINGS if getattr(config, k) != getattr(self.config, k)]
        if differ:
            raise ValueError(f"the pool's actors were started with other {', '.join(differ)} than this run asks for")

    def submit(self, method: str, *args: object, num_returns: int = 1) -> list[ray.ObjectRef]:
        """Call actor `method` on the least busy actor; its `num_returns` refs (arguments that are refs are
        resolved by Ray on the worker)."""
        with self._lock:
            for refs in self._unfinished:
                if refs:
                    _, refs[:] = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            slot = min(range(len(self.actors)), key=lambda i: len(self._unfinished[i]))
            out = getattr(self.actors[slot], method).options(num_returns=num_returns).remote(*args)
            refs = out if isinstance(out, list) else [out]
            self._unfinished[slot].append(refs[0])
            return refs

    def close(self) -> None:
        """Stop the actors (whatever they still run is dropped)."""
        for actor in self.actors:
            ray.kill(actor)

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
