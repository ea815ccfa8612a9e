"""`TilePool`: the Ray actors a run (or several runs at once, one per thread) sends its tiles to."""

from __future__ import annotations

import os
import threading
from types import TracebackType

import ray

from .actors import ACTOR_RESTARTS, ChunkWriter, RegistrarActor, connect
from .config import PipelineConfig

FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3")
"""Storage settings the actors take from the driver's environment when they start: workers read and write
object storage themselves, and a worker sees only the environment of its cluster otherwise."""
MODEL_SETTINGS = ("checkpoint", "refinement", "device", "threads_per_actor", "batch_size", "gpu_batch_size")
"""Config fields that decide the actors' model: a run on a shared pool must agree with its pool on them."""


class TilePool:
    """The actors that register (`config.actors` on CPU; one per GPU when the cluster has GPUs) and those that
    write chunks (`config.writers`; none: the registering actors write), and what model they hold.

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
        self._writers: list = []
        self._model: dict = {}
        self._unfinished: dict[object, list[ray.ObjectRef]] = {}

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
                config, resources = self.config, ray.cluster_resources()
                gpus = int(resources.get("GPU", 0))
                env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
                options = dict(scheduling_strategy="SPREAD", max_restarts=ACTOR_RESTARTS, max_task_retries=config.retries,
                               runtime_env={"env_vars": env} if env else None)
                registrar = ray.remote(num_cpus=config.cpus_per_actor, num_gpus=1 if gpus else 0, **options)(RegistrarActor)
                count = gpus or config.actors
                actors = [registrar.remote(config) for _ in range(count)]
                writers = config.writers
                if writers is None:  # GPU actors only register; the CPUs they leave write
                    writers = max(1, int(resources.get("CPU", 1) - count * config.cpus_per_actor)) if gpus else 0
                self._writers = [ray.remote(num_cpus=1, **options)(ChunkWriter).remote() for _ in range(writers)]
                described = ray.get([a.describe.remote() for a in actors])
                self._model = {**described[0], "batch_size": min(d["batch_size"] for d in described)}
                self._unfinished = {a: [] for a in actors + self._writers}
                self._actors = actors
            return self._actors

    @property
    def actors(self) -> list:
        """The actor handles (started on first use)."""
        return self._ensure_started()

    @property
    def writers(self) -> list:
        """The model-free actors that write chunks (started on first use; empty: the registering actors write)."""
        self._ensure_started()
        return self._writers

    @property
    def model(self) -> dict:
        """What `RegistrarActor.describe` says of the model the actors hold, with the smallest `batch_size`
        of all of them (started on first use)."""
        self._ensure_started()
        return self._model

    @property
    def batch_size(self) -> int:
        """Windows per forward pass that every registering actor takes (started on first use)."""
        return self.model["batch_size"]

    def check(self, config: PipelineConfig) -> None:
        """Refuse a run whose model settings differ from the pool's (its output would not be that model's)."""
        differ = [k for k in MODEL_SETTINGS if getattr(config, k) != getattr(self.config, k)]
        if differ:
            raise ValueError(f"the pool's actors were started with other {', '.join(differ)} than this run asks for")

    def submit(self, method: str, *args: object, num_returns: int = 1) -> list[ray.ObjectRef]:
        """Call actor `method` on the least busy actor that does it (`write_chunk`: a writer when there are
        any); its `num_returns` refs (arguments that are refs are resolved by Ray on the worker)."""
        with self._lock:
            registrars = self._ensure_started()
            group = self._writers if method == "write_chunk" and self._writers else registrars
            every = [r for refs in self._unfinished.values() for r in refs]
            if every:  # one poll for all actors
                _, left = ray.wait(every, num_returns=len(every), timeout=0, fetch_local=False)
                unfinished = set(left)
                for refs in self._unfinished.values():
                    refs[:] = [r for r in refs if r in unfinished]
            actor = min(group, key=lambda a: len(self._unfinished[a]))
            out = getattr(actor, method).options(num_returns=num_returns).remote(*args)
            refs = out if isinstance(out, list) else [out]
            self._unfinished[actor].append(refs[0])
            return refs

    def close(self) -> None:
        """Stop the actors, if started (whatever they still run is dropped)."""
        with self._lock:
            for actor in [*(self._actors or []), *self._writers]:
                ray.kill(actor)
            self._actors, self._writers = None, []

    def __enter__(self) -> TilePool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def start_pool(config: PipelineConfig) -> TilePool:
    """A started pool: what `register_pair` calls to start its own when it is given none."""
    return TilePool.start(config)
