"""The change-detection cube of one reference grid: every co-registered Sentinel-1 acquisition of a Sentinel-2
tile in one time-indexed Zarr v3 store, appended pair by pair in transactions.

The store is an Icechunk repository (transactional Zarr v3 on a local folder or s3://): an append writes its
chunks into a session and becomes visible only when the session's commit replaces the branch head, which
Icechunk does with a conditional write (S3 `If-Match` / `If-None-Match`, which SeaweedFS, MinIO and AWS
enforce). So a reader sees the last commit, whole; a writer killed mid-append leaves only unreferenced chunks;
and of two writers that started from the same head, the second's commit fails (`ConflictError`) and is redone
from the new head.

Convention:
    - `time` is the Sentinel-1 acquisition time (UTC, naive datetime64), strictly sorted, ties broken by pair id;
      an acquisition that completes after a later one is inserted at its place, the later steps moved up.
    - `band` names polarisations: always `CUBE_BANDS`; a pair without one of them has NaN there.
    - `x`, `y` are pixel centres of the reference grid; `spatial_ref` holds its CRS and GeoTransform.
    - flow is the pair groups' (reference pixels, backward map: `coregistered(p) = sar(p + flow(p))`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dask.array as da
import fsspec
import icechunk
import numpy as np
import xarray as xr
import zarr

from model.errors import SomaError

from .config import StorageOptions, is_remote
from .conventions import cube_conventions, pixel_size, pixel_size_coords
from .store import open_pair

CUBE_BANDS = ("vv", "vh")
"""Polarisations along `band`, in this order."""
SPATIAL_CHUNK = 512
"""Chunk side along y and x (a map read of one date is one chunk per 512 x 512 block)."""
TIME_CHUNK = 1
"""Time steps per chunk: each append or insert writes only its own chunks (docs/cube.md measures the cost)."""
CHUNKS = {"time": TIME_CHUNK, "band": 1, "y": SPATIAL_CHUNK, "x": SPATIAL_CHUNK}
"""Chunk size along each of the cube's dimensions."""
BRANCH = "main"
COMMIT_ATTEMPTS = 30
"""Commits tried before giving up when other writers keep moving the branch head."""
RETRY_DELAY_S = 0.05
"""First pause after a conflicting commit; each further one about doubles (with jitter), up to RETRY_MAX_S."""
RETRY_MAX_S = 2.0
MEDIAN_BINS = 10_000
"""Bins of width 1 / MEDIAN_BINS over [0, 1] that a step's median certainty is located in (one pass), before
the one bin holding it is read exactly."""
PLANES = ("flow_x", "flow_y", "certainty", "valid")
"""Per-pair `(y, x)` variables that become `(time, y, x)`."""
STEP_COORDS = ("pair_id", "sar_item", "optical_item", "optical_time", "median_certainty", "confident_fraction",
               "checkpoint_sha256")
"""Per-time coordinates: which pair each step came from and how good it is."""
TIME_ENCODING = {"units": "milliseconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian",
                 "dtype": "int64"}
LOG_ENV = "ICECHUNK_LOG"
LOCAL_LOG_FILTER = "warn,icechunk::storage::object_store=error"
"""Icechunk's log filter for local cubes, unless ICECHUNK_LOG sets one."""
DEFAULT_REGION = "us-east-1"
"""Region given to Icechunk's S3 client when the storage names none (custom endpoints ignore it)."""
COMMIT_LOCK = "soma-commit.lock"
"""Lock file inside a local cube's folder (see `_commit_lock`)."""


class CubeError(SomaError):
    """A cube cannot take a pair, or cannot be read."""


class CubeMismatch(CubeError, ValueError):
    """The pair's grid or bands do not fit the cube it was to be appended to."""


class PairNotReady(CubeError, ValueError):
    """The pair group is missing, not complete, or lacks the attrs a time step needs."""


class CubeBusy(CubeError, TimeoutError):
    """Other writers kept moving the branch head for `COMMIT_ATTEMPTS` commits."""


@dataclass(frozen=True)
class AppendResult:
    """What one `append_pair` did."""

    cube: str
    pair_id: str
    appended: bool
    """False when the cube already held the pair (nothing was written)."""
    index: int
    """The pair's time step in the cube (0-based, time-ordered)."""
    time_steps: int
    """Steps in the cube after this call."""
    attempts: int
    """Commits tried (more than one when another writer committed first)."""
    snapshot: str
    """Icechunk snapshot id that holds the pair."""


def cube_path(output: str, tile: str) -> str:
    """`{output}/cubes/{tile}.zarr`."""
    return f"{output.rstrip('/')}/cubes/{tile}.zarr"


def cube_storage(url: str, storage: StorageOptions) -> icechunk.Storage:
    """Icechunk storage for a local folder or an s3:// prefix (`storage`'s endpoint and credentials; the usual
    AWS_* environment variables when it gives none)."""
    if not is_remote(url):
        if LOG_ENV not in os.environ:  # its warning that local commits are unsafe: `_commit_lock` makes them safe
            icechunk.set_logs_filter(LOCAL_LOG_FILTER)
        return icechunk.local_filesystem_storage(str(Path(url.removeprefix("file://")).absolute()))
    parsed = urlparse(url)
    if parsed.scheme != "s3":
        raise CubeError(f"{url}: cubes live on a local path or s3://, not {parsed.scheme}://")
    endpoint = storage.endpoint_url
    credentials = ({"access_key_id": storage.key, "secret_access_key": storage.secret}
                   if storage.key and storage.secret else {"from_env": True})
    return icechunk.s3_storage(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint_url=endpoint,
                               allow_http=bool(endpoint and endpoint.startswith("http://")),
                               force_path_style=bool(endpoint), region=storage.region or DEFAULT_REGION,
                               **credentials)


def open_repository(url: str, storage: StorageOptions, create: bool = False) -> icechunk.Repository:
    """The cube's Icechunk repository; with `create`, made when missing (safe when two writers race to make it)."""
    st = cube_storage(url, storage)
    if icechunk.Repository.exists(st):
        return icechunk.Repository.open(st)
    if not create:
        raise CubeError(f"{url}: no cube here (no Icechunk repository)")
    try:
        return icechunk.Repository.create(st)
    except icechunk.IcechunkError:
        if icechunk.Repository.exists(st):  # another writer created it first
            return icechunk.Repository.open(st)
        raise


def open_cube(url: str, storage: StorageOptions | None = None, snapshot: str | None = None) -> xr.Dataset:
    """The cube at `url` as a lazy Dataset: the branch head (whole time steps only), or `snapshot`."""
    repo = open_repository(url, storage or StorageOptions())
    session = repo.readonly_session(snapshot_id=snapshot) if snapshot else repo.readonly_session(branch=BRANCH)
    try:
        return xr.open_zarr(session.store, consolidated=False, zarr_format=3)
    except FileNotFoundError as exc:
        raise CubeError(f"{url}: the cube holds no time step yet") from exc


def append_pair(cube_url: str, pair_store_url: str, storage: StorageOptions | None = None, *,
                before_commit: Callable[[int], None] | None = None) -> AppendResult:
    """Append the complete pair group at `pair_store_url` to the cube at `cube_url` as one time step, in one
    transaction, at its place in time (created on the first pair). Idempotent: a pair already held changes
    nothing. `before_commit(attempt)` is called just before each commit (tests use it to stop a writer there).
    """
    storage = storage or StorageOptions()
    step = pair_step(pair_store_url, storage)
    pair_id = str(step.pair_id.values[0])
    repo = open_repository(cube_url, storage, create=True)
    delay = RETRY_DELAY_S
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        session = repo.writable_session(BRANCH)
        existing = _existing(session)
        if existing is not None and pair_id in existing.pair_id.values:
            index = int(np.flatnonzero(existing.pair_id.values == pair_id)[0])
            return AppendResult(cube_url, pair_id, False, index, existing.sizes["time"], attempt,
                                session.snapshot_id)
        index = _write_step(session, existing, step, cube_url)
        steps = 1 if existing is None else existing.sizes["time"] + 1
        if before_commit is not None:
            before_commit(attempt)
        try:
            with _commit_lock(cube_url):
                snapshot = session.commit(f"append {pair_id} at time step {index}")
        except icechunk.ConflictError:
            time.sleep(delay * (1 + random.random()))
            delay = min(2 * delay, RETRY_MAX_S)
            continue
        return AppendResult(cube_url, pair_id, True, index, steps, attempt, snapshot)
    raise CubeBusy(f"{cube_url}: {COMMIT_ATTEMPTS} commits of {pair_id} lost to other writers; try again")


@contextlib.contextmanager
def _commit_lock(cube_url: str):  # noqa: ANN202 - a context manager
    """On a local folder, commits one at a time (an exclusive `flock`, released by the kernel when its holder
    dies): Icechunk's local storage has no conditional write, so its commit's check of the branch head and
    the write of the new one must not interleave with another's. Object storage needs none (conditional PUT)."""
    if is_remote(cube_url):
        yield
        return
    lock = Path(cube_url.removeprefix("file://")) / COMMIT_LOCK
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _existing(session: icechunk.Session) -> xr.Dataset | None:
    """The cube as this session sees it, or None when it holds no step yet."""
    try:
        return xr.open_zarr(session.store, consolidated=False, zarr_format=3)
    except FileNotFoundError:
        return None


def _write_step(session: icechunk.Session, existing: xr.Dataset | None, step: xr.Dataset, cube_url: str) -> int:
    """Write `step` into the session at its place in time; returns its index."""
    if existing is None:
        encoding = {name: {"chunks": _chunks(step[name])} for name in step.data_vars}
        encoding["time"] = dict(TIME_ENCODING)
        step.to_zarr(session.store, mode="w-", encoding=encoding, consolidated=False, zarr_format=3)
        return 0
    _check_fits(existing, step, cube_url)
    keys = list(zip(existing.time.values, existing.pair_id.values))
    new_key = (step.time.values[0], step.pair_id.values[0])
    index = int(np.searchsorted(np.array([k > new_key for k in keys]), True))  # first existing key after new
    n = len(keys)
    _timed(step).to_zarr(session.store, mode="a-", append_dim="time", consolidated=False)
    if index < n:
        _rotate(zarr.open_group(session.store, mode="r+", zarr_format=3), index, n)
    return index


def _rotate(group: zarr.Group, index: int, last: int) -> None:
    """Move the step at `last` (just appended) to `index`, steps index..last-1 one up: every array along time,
    the time coordinate too, copied as stored (encoded), one step at a time from the end so nothing is
    overwritten before it is copied."""
    for name, array in group.arrays():
        if array.metadata.dimension_names is None or array.metadata.dimension_names[0] != "time":
            continue
        new = array[last]
        for j in range(last - 1, index - 1, -1):
            array[j + 1] = array[j]
        array[index] = new


def _timed(ds: xr.Dataset) -> xr.Dataset:
    """Only the variables along `time` (appends and region writes leave the rest as it is)."""
    return ds.drop_vars([n for n in ds.variables if "time" not in ds[n].dims])


def _chunks(var: xr.DataArray) -> tuple[int, ...]:
    return tuple(min(CHUNKS.get(d, n), n) for d, n in zip(var.dims, var.shape))


def _check_fits(cube: xr.Dataset, step: xr.Dataset, cube_url: str) -> None:
    """Refuse a pair on another grid (shape, coordinates, CRS) than the cube's."""
    pair = str(step.pair_id.values[0])
    if (cube.sizes["y"], cube.sizes["x"]) != (step.sizes["y"], step.sizes["x"]) or not (
            np.allclose(cube.x.values, step.x.values) and np.allclose(cube.y.values, step.y.values)):
        raise CubeMismatch(f"{cube_url}: pair {pair} is on another grid ({step.sizes['y']} x {step.sizes['x']} from "
                           f"x={step.x.values[0]}, y={step.y.values[0]}) than the cube ({cube.sizes['y']} x "
                           f"{cube.sizes['x']} from x={cube.x.values[0]}, y={cube.y.values[0]})")
    if cube.spatial_ref.attrs.get("crs_wkt") != step.spatial_ref.attrs.get("crs_wkt"):
        raise CubeMismatch(f"{cube_url}: pair {pair} has another CRS than the cube")


def pair_step(pair_store_url: str, storage: StorageOptions) -> xr.Dataset:
    """One complete pair group as a lazy one-step cube Dataset (dims time, band, y, x)."""
    try:
        pair = open_pair(pair_store_url, storage)
    except (FileNotFoundError, KeyError) as exc:
        raise PairNotReady(f"{pair_store_url}: no pair group here") from exc
    attrs = pair.attrs
    if not attrs.get("complete"):
        raise PairNotReady(f"{pair_store_url}: the pair group is not complete; finish it before appending")
    if not attrs.get("sar_datetime"):
        raise PairNotReady(f"{pair_store_url}: the group has no `sar_datetime` attr (the Sentinel-1 acquisition "
                           "time); register it again with the acquisition times")
    names = polarisations(attrs, pair.sizes["band"], pair_store_url)
    y, x = pair.sizes["y"], pair.sizes["x"]
    sar = pair.sar_coregistered.data
    planes = [sar[names.index(b)] if b in names else da.full((y, x), np.nan, dtype="float32",
                                                                 chunks=sar.chunksize[1:])
              for b in CUBE_BANDS]
    confident = float(attrs.get("pipeline_config", {}).get("confident_certainty", 0.5))
    median, share = certainty_summary(pair.certainty.data, pair.valid.data, confident)
    per_time = {
        "pair_id": attrs["pair_id"], "sar_item": attrs.get("sar_item", ""), "optical_item": attrs.get("optical_item", ""),
        "optical_time": _naive(attrs.get("optical_datetime") or attrs["sar_datetime"]),
        "median_certainty": np.float32(median), "confident_fraction": np.float32(share),
        "checkpoint_sha256": attrs.get("checkpoint_sha256", "")}
    coords = {"time": [_naive(attrs["sar_datetime"])], "band": np.array(CUBE_BANDS, dtype=object), "y": pair.y, "x": pair.x,
              "spatial_ref": pair.spatial_ref,
              **pixel_size_coords(*pixel_size(pair)),
              **{k: ("time", np.array([v], dtype=object if isinstance(v, str) else None)) for k, v in per_time.items()}}
    data = {"sar_coregistered": (("time", "band", "y", "x"), da.stack(planes)[None])}
    for name in PLANES:
        data[name] = (("time", "y", "x"), pair[name].data[None])
    step = xr.Dataset(data, coords=coords)
    for name in step.data_vars:
        step[name] = step[name].chunk({d: CHUNKS[d] for d in step[name].dims})
    return cube_conventions(step, pair)


def certainty_summary(certainty: da.Array, valid: da.Array, confident: float) -> tuple[float, float]:
    """The median certainty over `valid` pixels and their share at or above `confident`, both exact, chunk by
    chunk: a full Sentinel-2 tile's planes are never in memory at once. NaN, NaN when nothing is valid."""
    usable = valid & ~da.isnan(certainty)
    bins = da.clip(da.floor(certainty.astype(np.float64) * MEDIAN_BINS), 0, MEDIAN_BINS - 1)
    bins = da.where(usable, bins, MEDIAN_BINS).astype(np.int64)  # not usable: one bin past the last
    counts, sure = da.compute(da.bincount(bins.ravel(), minlength=MEDIAN_BINS + 1),
                              (usable & (certainty >= confident)).sum())
    counts = counts[:MEDIAN_BINS]
    total = int(counts.sum())
    if not total:
        return float("nan"), float("nan")
    ranks = (total // 2,) if total % 2 else (total // 2 - 1, total // 2)
    return float(np.mean(_order_statistics(certainty, bins, counts, ranks))), float(sure) / total


def _order_statistics(values: da.Array, bins: da.Array, counts: np.ndarray, ranks: tuple[int, ...]) -> list[float]:
    """The `ranks`-th smallest (0-based) of the values in bins `0 .. len(counts) - 1`, given their counts: each bin
    that holds one is read once, and not at all when its values all equal its smallest (a block of 0s)."""
    cumulative = np.cumsum(counts)
    by_bin: dict[int, list[int]] = {}
    for r in ranks:
        by_bin.setdefault(int(np.searchsorted(cumulative, r + 1)), []).append(r)
    found: dict[int, float] = {}
    for k, in_k in by_bin.items():
        inside = bins == k
        smallest = float(da.where(inside, values, np.inf).min().compute())
        at_smallest = int((inside & (values == smallest)).sum().compute())
        within = {r: r - int(cumulative[k] - counts[k]) for r in in_k}  # rank among the bin's values
        if max(within.values()) >= at_smallest:
            rest = np.sort(values[inside & (values != smallest)].compute())
        found.update({r: smallest if w < at_smallest else float(rest[w - at_smallest]) for r, w in within.items()})
    return [found[r] for r in ranks]


def polarisations(attrs: dict, bands: int, where: str) -> list[str]:
    """The polarisation of each SAR band of a pair group: its `sar_polarisations` attr, else its files' names."""
    names = list(attrs.get("sar_polarisations") or [])
    if not names:
        names = [Path(urlparse(h).path).stem.lower() for h in attrs.get("sar_hrefs", [])]
    if len(names) != bands or any(n not in CUBE_BANDS for n in names):
        raise CubeMismatch(f"{where}: cannot name its {bands} SAR band(s) as polarisations {CUBE_BANDS} "
                           f"(found {names}); give the pair's `sar_polarisations`")
    return names


def _naive(value: str) -> np.datetime64:
    """An ISO time as naive UTC datetime64[ns] (xarray's time type)."""
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "ns")


def list_cubes(output: str, storage: StorageOptions | None = None) -> list[str]:
    """The tiles that have a cube under `{output}/cubes/`, sorted."""
    storage = storage or StorageOptions()
    fs, root = fsspec.core.url_to_fs(f"{output.rstrip('/')}/cubes", **storage.for_url(output))
    if not fs.exists(root):
        return []
    names = (Path(p.rstrip("/")).name for p in fs.ls(root, detail=False))
    return sorted(n.removesuffix(".zarr") for n in names if n.endswith(".zarr"))


def cube_history(url: str, storage: StorageOptions | None = None) -> list[dict]:
    """The cube's commits, newest first: snapshot id, time written, message."""
    repo = open_repository(url, storage or StorageOptions())
    return [{"snapshot": c.id, "written": c.written_at.isoformat(timespec="seconds"), "message": c.message}
            for c in repo.ancestry(branch=BRANCH)]


def cube_steps(ds: xr.Dataset) -> list[dict]:
    """The cube's time steps as plain rows: time, pair, source items and quality (for `soma cube list`)."""
    return [{"index": i, "time": str(np.datetime_as_string(ds.time.values[i], unit="s")),
             "pair_id": str(ds.pair_id.values[i]), "sar_item": str(ds.sar_item.values[i]),
             "optical_item": str(ds.optical_item.values[i]),
             "median_certainty": float(ds.median_certainty.values[i]),
             "confident_fraction": float(ds.confident_fraction.values[i])} for i in range(ds.sizes["time"])]
