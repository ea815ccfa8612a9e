"""Prefect flows: co-register an archive (`coregister_archive`) and a date range in chunks (`backfill`)."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from pipeline import PairResult, PipelineConfig, StorageOptions, TilePool, register_pair
from pipeline.cube import AppendResult, append_pair, cube_path

from .archive import ItemProblem, filesystem, read_archive
from .discovery import DiscoveredPair, DiscoveryConfig, match_pairs, utc
from .products import PairRow, item_href, pair_row, write_product_collection, write_product_item

DEFAULT_ARCHIVE = str(Path(__file__).resolve().parents[1] / "data" / "sample" / "archive")
"""The embedded default: the bundled sample archive."""
DEFAULT_OUTPUT = "runs/archive"
STORAGE_RETRIES = 3
REGISTER_RETRIES = 2
BACKOFF_FACTOR_S = 2
ARTIFACT_KEY = "coregistration-summary"
BACKFILL_MARKERS = "_backfill"
"""Folder under the output where each finished backfill chunk leaves a marker."""


def is_transient(exc: BaseException) -> bool:
    """Storage and network errors worth retrying; bad input (ValueError: RasterError, StoreMismatch, ...) and
    missing files are not. The cause chain counts (e.g. an `ArchiveError` raised from a connection error)."""
    if isinstance(exc, (FileNotFoundError, PermissionError, ValueError)):
        return False
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    if type(exc).__module__.split(".")[0] in {"botocore", "aiobotocore", "aiohttp", "urllib3"}:
        return True
    return exc.__cause__ is not None and is_transient(exc.__cause__)


def _exception(state) -> BaseException | None:  # noqa: ANN001 - a Prefect State
    """The exception a failed task state holds (its `result()` re-raises it), or None."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - whatever the task raised
        return exc
    return None


def _retry_transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    exc = _exception(state)
    return exc is not None and is_transient(exc)


def _tally(outcomes: list[str]) -> dict[str, int]:
    """Pairs registered, skipped (already complete) and failed."""
    return {k: sum(o == k for o in outcomes) for k in ("registered", "skipped", "failed")}


@dataclass
class ArchiveSummary:
    """What one `coregister_archive` run did."""

    archive: str
    output: str
    rows: list[PairRow] = field(default_factory=list)
    problems: list[ItemProblem] = field(default_factory=list)
    """Items of the archive that were skipped, and why."""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"archive": self.archive, "output": self.output, "pairs": len(self.rows),
                **_tally([r.outcome for r in self.rows]), "seconds": round(self.seconds, 1),
                "rows": [r.as_dict() for r in self.rows], "problems": [asdict(p) for p in self.problems]}


@task(retries=STORAGE_RETRIES, retry_delay_seconds=exponential_backoff(BACKOFF_FACTOR_S),
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def find_pairs(archive: str, discovery: DiscoveryConfig,
               storage: StorageOptions) -> tuple[list[DiscoveredPair], list[ItemProblem]]:
    """Read the archive's Items and match Sentinel-2 scenes with Sentinel-1 scenes."""
    listing = read_archive(archive, storage)
    return match_pairs(listing.items, discovery), listing.problems


@task(retries=REGISTER_RETRIES, retry_delay_seconds=exponential_backoff(BACKOFF_FACTOR_S),
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE, task_run_name="register-{pair.pair_id}")
def register(pair: DiscoveredPair, output: str, config: PipelineConfig, pool: TilePool) -> PairResult:
    """One pair through the pipeline on the run's shared actor pool (a complete group is skipped, a partial
    one finished)."""
    logger = get_run_logger()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            logger.info("%s: %d/%d tiles", pair.pair_id, done, total)

    return register_pair(pair.scene, output, config, progress, pool)


@task(retries=STORAGE_RETRIES, retry_delay_seconds=exponential_backoff(BACKOFF_FACTOR_S),
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE, task_run_name="publish-{pair.pair_id}")
def publish(pair: DiscoveredPair, result: PairResult, output: str, storage: StorageOptions) -> PairRow:
    """The pair's table row, and its STAC Item beside the Zarr group (rewritten only when missing or new)."""
    row = pair_row(result, storage)
    fs, path = filesystem(item_href(output, pair.pair_id), storage)
    if not result.already_complete or not fs.exists(path):
        write_product_item(pair, result, row, output, storage)
    return row


@task(retries=STORAGE_RETRIES, retry_delay_seconds=exponential_backoff(BACKOFF_FACTOR_S),
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE, task_run_name="cube-{pair.pair_id}")
def append_to_cube(pair: DiscoveredPair, result: PairResult, output: str, storage: StorageOptions) -> AppendResult:
    """The pair's complete group as one time step of its tile's cube, `{output}/cubes/{tile}.zarr` (one
    transaction; a pair already there changes nothing)."""
    return append_pair(cube_path(output, pair.tile), result.store, storage)


@task(retries=STORAGE_RETRIES, retry_delay_seconds=exponential_backoff(BACKOFF_FACTOR_S),
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def publish_collection(output: str, storage: StorageOptions) -> str:
    """The products' STAC Collection, `{output}/collection.json`, over every product Item there."""
    return write_product_collection(output, storage)


def _publish_table(summary: ArchiveSummary) -> None:
    rows = [r.as_dict() for r in summary.rows]
    n = _tally([r.outcome for r in summary.rows])
    create_table_artifact(rows or [{"pair_id": "(no pairs)"}], key=ARTIFACT_KEY,
                          description=f"SOMA co-registration of {summary.archive} -> {summary.output}: "
                                      f"{n['registered']} registered, {n['skipped']} already complete, "
                                      f"{n['failed']} failed")


@flow(name="coregister-archive", log_prints=True)
def coregister_archive(archive: str = DEFAULT_ARCHIVE, output: str = DEFAULT_OUTPUT,
                       discovery: DiscoveryConfig | None = None, config: PipelineConfig | None = None,
                       lookback_days: float | None = None, cubes: bool = True) -> dict:
    """Discover the archive's S1/S2 pairs (`discovery`, default `DiscoveryConfig()`), skip complete ones,
    register the rest (`config`, default `PipelineConfig()`, whose `storage` also reads the archive), write a
    STAC Item per product and a quality table artifact; returns the summary (`ArchiveSummary`). With `cubes`,
    each complete pair is then appended to its tile's change-detection cube (`pipeline.cube`).

    `lookback_days` (scheduled runs): when `discovery.start` is not given, start that many days before now.
    """
    started = time.perf_counter()
    discovery, config = discovery or DiscoveryConfig(), config or PipelineConfig()
    if discovery.start is None and lookback_days is not None:
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=lookback_days)
        discovery = replace(discovery, start=since.isoformat())
    logger = get_run_logger()
    storage = config.storage
    pairs, problems = find_pairs(archive, discovery, storage)
    summary = ArchiveSummary(archive, output, problems=problems)
    for p in problems:
        logger.warning("skipped item %s: %s", p.href, p.problem)
    logger.info("%d pair(s) in %s", len(pairs), archive)
    in_flight = config.pairs_in_flight or config.actors
    rows: dict[int, PairRow] = {}
    with TilePool(config) as pool:  # its actors start with the first pair that has tiles to register
        queue, running = list(enumerate(pairs))[::-1], {}
        while queue or running:
            while queue and len(running) < in_flight:
                i, pair = queue.pop()
                running[register.submit(pair, output, config, pool)] = i
            finished = next(as_completed(list(running)))
            i = running.pop(finished)
            rows[i] = _finish(pairs[i], finished, output, storage, logger, f"[{len(rows) + 1}/{len(pairs)}]",
                              cubes)
    summary.rows = [rows[i] for i in range(len(pairs))]
    if any(r.outcome != "failed" for r in summary.rows):
        publish_collection(output, storage)
    summary.seconds = time.perf_counter() - started
    _publish_table(summary)
    return summary.as_dict()


def _finish(pair: DiscoveredPair, registered: PrefectFuture, output: str, storage: StorageOptions,
            logger, step: str, cubes: bool) -> PairRow:  # noqa: ANN001 - Prefect's logger
    """The table row of a pair whose registration finished: published (and appended to its cube), or failed
    with its error."""
    registered.wait()  # takes the final state from the finished thread (`.state` may ask the API, which lags)
    state = registered.state
    if state.is_failed():
        return _failed_row(pair, state, logger)
    result = state.result()
    logger.info("%s %s: %s", step, pair.pair_id, "already complete" if result.already_complete
                else f"wrote {result.written_tiles} tile(s) in {result.seconds:.1f} s")
    state = publish(pair, result, output, storage, return_state=True)
    if state.is_failed():
        return _failed_row(pair, state, logger)
    row = state.result()
    if not cubes:
        return row
    appended = append_to_cube(pair, result, output, storage, return_state=True)
    if appended.is_failed():
        failed = _failed_row(pair, appended, logger)
        return replace(row, outcome="failed", error=f"cube: {failed.error}")
    cube = appended.result()
    logger.info("%s %s: %s time step %d of %d in %s", step, pair.pair_id, "appended as" if cube.appended
                else "already", cube.index, cube.time_steps, cube.cube)
    return replace(row, cube=cube.cube, time_step=cube.index)


def _failed_row(pair: DiscoveredPair, state, logger) -> PairRow:  # noqa: ANN001 - a Prefect State and logger
    """The table row of a pair whose task failed (after its retries), with the error text."""
    exc = _exception(state)
    error = f"{type(exc).__name__}: {exc}" if exc is not None else "failed"
    logger.error("%s failed: %s", pair.pair_id, error)
    return PairRow(pair.pair_id, "failed", error=error)


def date_chunks(start: dt.datetime, end: dt.datetime, chunk_days: float) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut into consecutive half-open chunks of `chunk_days` (the last one shorter)."""
    if chunk_days <= 0:
        raise ValueError(f"chunk_days must be positive, got {chunk_days}")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    chunks, a = [], start
    while a < end:
        b = min(a + dt.timedelta(days=chunk_days), end)
        chunks.append((a, b))
        a = b
    return chunks


def chunk_marker(output: str, start: dt.datetime, end: dt.datetime) -> str:
    return f"{output.rstrip('/')}/{BACKFILL_MARKERS}/{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.json"


@flow(name="backfill", log_prints=True)
def backfill(archive: str, output: str, start: str, end: str, chunk_days: float = 30,
             discovery: DiscoveryConfig | None = None, config: PipelineConfig | None = None) -> dict:
    """`coregister_archive` over [start, end) in chunks of `chunk_days` (`discovery`'s own start and end are
    replaced by each chunk's); a chunk whose pairs all finished leaves a marker, so a rerun skips it (and,
    inside an unfinished chunk, complete pairs are skipped anyway)."""
    logger = get_run_logger()
    discovery, config = discovery or DiscoveryConfig(), config or PipelineConfig()
    storage = config.storage
    chunks = date_chunks(utc(start), utc(end), chunk_days)
    done, summaries = 0, []
    for a, b in chunks:
        marker = chunk_marker(output, a, b)
        fs, path = filesystem(marker, storage)
        if fs.exists(path):
            logger.info("chunk %s .. %s: finished before, skipped", a.date(), b.date())
            done += 1
            continue
        logger.info("chunk %s .. %s", a.date(), b.date())
        summary = coregister_archive(archive=archive, output=output, config=config,
                                     discovery=replace(discovery, start=a.isoformat(), end=b.isoformat()))
        summaries.append(summary)
        if summary["failed"] == 0:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "w") as f:
                json.dump(summary, f, indent=1)
    rows = [r for s in summaries for r in s["rows"]]
    return {"archive": archive, "output": output, "chunks": len(chunks), "chunks_skipped": done,
            "pairs": len(rows), **_tally([r["outcome"] for r in rows]), "rows": rows}
