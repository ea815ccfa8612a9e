"""The driver's part of a run, once planned: send fixed batches of windows to the pool (a bounded number per
actor in flight), send each chunk's write once every window covering it is registered, pass the writes the
registrations as object refs (the driver never holds an array), and drop a registration once every chunk
that needs it is written."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import ray

from .chunk import ChunkJob
from .config import PipelineConfig
from .pool import TilePool
from .quality import TileRecord
from .sources import PairSource
from .tiling import Tile

PREFETCH_BATCHES_PER_ACTOR = 2
"""Batches in flight per actor and run: one running, one waiting, so actors never idle on reads."""
Progress = Callable[[int, int], None]
"""Called with (tiles written, tiles to write) as the run goes."""


@dataclass(frozen=True)
class RunPlan:
    """What the driver decided before any Ray work (I/O-free): which chunks to write, which windows to
    register in which fixed batches, and what each chunk needs."""

    store: str
    source: PairSource
    config: PipelineConfig
    tiles: list[Tile]
    needs: dict[int, list[int]]
    """Tile -> the tiles whose windows cover its core (itself included), in tile order."""
    pending: list[int]
    """Chunks to write, in tile order."""
    batches: list[list[int]]
    """The windows to register, in fixed batches (see `pair._whole_batches`), in tile order."""

    def job(self, index: int) -> ChunkJob:
        """The write of chunk `index`."""
        needs = self.needs[index]
        return ChunkJob(self.store, self.source, self.config, self.tiles[index],
                        tuple(self.tiles[i].window for i in needs), needs.index(index))


def run_plan(plan: RunPlan, pool: TilePool, progress: Progress | None) -> list[TileRecord]:
    """Register and write every pending chunk of `plan` on `pool`; the rows written, in the order written."""
    users = Counter(i for p in plan.pending for i in plan.needs[p])
    """Window -> pending chunks that still need its registration."""
    chunks_of: dict[int, list[int]] = {}
    for p in plan.pending:
        for i in plan.needs[p]:
            chunks_of.setdefault(i, []).append(p)
    registrations: dict[int, ray.ObjectRef] = {}
    registered: set[int] = set()
    batches_in_flight: dict[ray.ObjectRef, list[int]] = {}
    writes: dict[ray.ObjectRef, int] = {}
    queue, limit, written = iter(plan.batches), PREFETCH_BATCHES_PER_ACTOR * len(pool.actors), []
    while True:
        while len(batches_in_flight) < limit and (batch := next(queue, None)) is not None:
            refs = pool.submit("register_windows", plan.source, [plan.tiles[i] for i in batch],
                               plan.config.min_valid_fraction, num_returns=len(batch))
            registrations.update(zip(batch, refs))
            batches_in_flight[refs[0]] = batch
        if not batches_in_flight and not writes:
            return written
        done, _ = ray.wait([*batches_in_flight, *writes], num_returns=1, fetch_local=False)
        for ref in done:
            if ref in batches_in_flight:
                batch = batches_in_flight.pop(ref)
                registered.update(batch)
                for i in batch:
                    if not users[i]:
                        del registrations[i]  # in the batch only to keep batches fixed
                # each window is in one batch: a chunk becomes ready with the batch of its last window, once
                for p in sorted({p for i in batch for p in chunks_of.get(i, ())
                                 if all(j in registered for j in plan.needs[p])}):
                    (write,) = pool.submit("write_chunk", plan.job(p), *(registrations[i] for i in plan.needs[p]))
                    writes[write] = p
                continue
            index = writes.pop(ref)
            written.append(ray.get(ref))
            for i in plan.needs[index]:
                users[i] -= 1
                if not users[i]:
                    del registrations[i]
            if progress:
                progress(len(written), len(plan.pending))
