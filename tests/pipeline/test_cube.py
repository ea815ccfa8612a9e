"""The change-detection cube: time order whatever the append order, idempotence, bands by polarisation, and the
two hazards with real processes (two writers at once; a writer SIGKILLed mid-append), on a local folder and on
a real S3 server (SeaweedFS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.storage
from rasterio.transform import from_origin

from pipeline.config import StorageOptions
from pipeline.cube import (CUBE_BANDS, CubeMismatch, PairNotReady, append_pair, cube_steps, certainty_summary, open_cube,
                           open_repository)
from pipeline.rasters import Grid
from tests.flows.conftest import S3_KEY, S3_SECRET, seaweed  # noqa: F401 - the real S3 server fixture
from tests.pipeline.cube_pairs import GRID, pair_arrays, write_pair

ROOT = Path(__file__).resolve().parents[2]
STEPS = {"p1": ("2024-01-05T05:10:00Z", 11), "p2": ("2024-01-17T05:10:00Z", 12), "p3": ("2024-01-29T05:10:00Z", 13)}
"""pair id -> (Sentinel-1 time, seed of its arrays)."""
CHILD_READY_S = 120
"""Longest wait for a worker process to reach its commit (a hang guard, not a timing assertion)."""


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """(output root, storage, environment for worker processes) on a local folder or on SeaweedFS."""
    if request.param == "local":
        return str(tmp_path), StorageOptions(endpoint_url=None), dict(os.environ)
    endpoint, client = request.getfixturevalue("seaweed")
    bucket = f"cube-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    client.create_bucket(Bucket=bucket)
    env = os.environ | {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                        "AWS_ENDPOINT_URL_S3": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    return f"s3://{bucket}", StorageOptions(endpoint_url=endpoint, key=S3_KEY, secret=S3_SECRET,
                                            region="us-east-1"), env


def _pairs(root: str, storage: StorageOptions, names=("p1", "p2", "p3")) -> dict[str, str]:
    return {n: write_pair(f"{root}/pairs", n, STEPS[n][0], STEPS[n][1], storage=storage) for n in names}


def _assert_steps_equal_groups(cube: xr.Dataset, names: list[str]) -> None:
    """The cube holds exactly `names`, in this order, each step equal to what its pair group was written with."""
    assert list(cube.pair_id.values) == names
    assert list(cube.time.values) == [np.datetime64(STEPS[n][0].rstrip("Z"), "ns") for n in names]
    for i, name in enumerate(names):
        truth = pair_arrays(STEPS[name][1], len(CUBE_BANDS))
        np.testing.assert_array_equal(cube.flow_x.values[i], truth["flow"][0])
        np.testing.assert_array_equal(cube.flow_y.values[i], truth["flow"][1])
        np.testing.assert_array_equal(cube.certainty.values[i], truth["certainty"])
        np.testing.assert_array_equal(cube.valid.values[i], truth["valid"])
        np.testing.assert_array_equal(cube.sar_coregistered.values[i], truth["sar"])


def _worker(cube: str, pair: str, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.pipeline.cube_pairs", cube, pair, *extra], cwd=ROOT,
                            env=env | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + CHILD_READY_S
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker ended before its commit: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("worker never reached its commit")
        time.sleep(0.05)


def test_steps_are_time_ordered_whatever_the_append_order(where):
    root, storage, _ = where
    pairs, cube = _pairs(root, storage), f"{root}/cubes/T33UUP.zarr"
    results = [append_pair(cube, pairs[n], storage) for n in ("p2", "p3", "p1")]
    assert [(r.appended, r.index, r.time_steps) for r in results] == [(True, 0, 1), (True, 1, 2), (True, 0, 3)]
    ds = open_cube(cube, storage)
    _assert_steps_equal_groups(ds, ["p1", "p2", "p3"])
    assert list(ds.band.values) == list(CUBE_BANDS)
    assert [r["sar_item"] for r in cube_steps(ds)] == ["S1_p1", "S1_p2", "S1_p3"]
    truth = pair_arrays(STEPS["p2"][1], 2)
    assert float(ds.median_certainty[1]) == pytest.approx(np.median(truth["certainty"][truth["valid"]]))
    assert str(ds.checkpoint_sha256.values[2]) == f"sha-{STEPS['p3'][1]}"


def test_appending_a_pair_again_changes_nothing(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    pairs, cube = _pairs(str(tmp_path), storage, ("p1", "p2")), str(tmp_path / "cube.zarr")
    first = [append_pair(cube, pairs[n], storage) for n in ("p1", "p2")]
    again = append_pair(cube, pairs["p1"], storage)
    assert not again.appended and again.index == 0 and again.time_steps == 2
    repo = open_repository(cube, storage)
    assert again.snapshot == first[-1].snapshot == repo.lookup_branch("main")
    assert len(list(repo.ancestry(branch="main"))) == 3  # the repository's initial commit + two appends


def test_bands_are_named_by_polarisation_whatever_the_pair_holds(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    vh_only = write_pair(str(tmp_path), "vh-only", STEPS["p1"][0], 5, polarisations=("vh",), storage=storage)
    both = write_pair(str(tmp_path), "both", STEPS["p2"][0], 6, storage=storage)
    cube = str(tmp_path / "cube.zarr")
    append_pair(cube, vh_only, storage)
    append_pair(cube, both, storage)
    ds = open_cube(cube, storage)
    sar = ds.sar_coregistered
    assert np.isnan(sar.sel(band="vv").values[0]).all()
    np.testing.assert_array_equal(sar.sel(band="vh").values[0], pair_arrays(5, 1)["sar"][0])
    np.testing.assert_array_equal(sar.values[1], pair_arrays(6, 2)["sar"])


def test_an_incomplete_pair_or_one_on_another_grid_is_refused_naming_it(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    cube = str(tmp_path / "cube.zarr")
    partial = write_pair(str(tmp_path), "partial", STEPS["p1"][0], 1, storage=storage, finish=False)
    with pytest.raises(PairNotReady, match="partial.zarr: the pair group is not complete"):
        append_pair(cube, partial, storage)
    append_pair(cube, write_pair(str(tmp_path), "p2", STEPS["p2"][0], 2, storage=storage), storage)
    other = Grid(GRID.crs, from_origin(510000, 5000000, 10, 10), GRID.height, GRID.width)
    moved = write_pair(str(tmp_path), "moved", STEPS["p3"][0], 3, storage=storage, grid=other)
    with pytest.raises(CubeMismatch, match="pair moved is on another grid"):
        append_pair(cube, moved, storage)
    assert list(open_cube(cube, storage).pair_id.values) == ["p2"]


def test_two_processes_appending_at_once_both_land_in_time_order(where):
    """Both writers start from the same head and commit once both have written everything (a file barrier):
    one commit wins, the other conflicts, is redone from the new head and lands too."""
    root, storage, env = where
    pairs, cube = _pairs(root, storage), f"{root}/cubes/T33UUP.zarr"
    append_pair(cube, pairs["p2"], storage)
    barrier = Path(env.get("TMPDIR", "/tmp")) / f"cube-barrier-{os.getpid()}-{time.monotonic_ns()}"
    a, b = f"{barrier}-a", f"{barrier}-b"
    procs = [_worker(cube, pairs["p3"], env, "--barrier", a, b), _worker(cube, pairs["p1"], env, "--barrier", b, a)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=CHILD_READY_S)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))  # icechunk may log to stdout before it
    assert all(o["appended"] for o in outs)
    assert sorted(o["attempts"] for o in outs) == [1, 2]  # one lost the race and was redone
    _assert_steps_equal_groups(open_cube(cube, storage), ["p1", "p2", "p3"])


def test_two_processes_appending_the_same_pair_at_once_leave_one_step(tmp_path):
    """Two overlapping runs finishing the same pair: the loser's redo finds the pair there and commits nothing."""
    storage, env = StorageOptions(endpoint_url=None), dict(os.environ)
    pairs, cube = _pairs(str(tmp_path), storage, ("p1", "p2")), str(tmp_path / "cube.zarr")
    append_pair(cube, pairs["p1"], storage)
    a, b = str(tmp_path / "barrier-a"), str(tmp_path / "barrier-b")
    procs = [_worker(cube, pairs["p2"], env, "--barrier", a, b), _worker(cube, pairs["p2"], env, "--barrier", b, a)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=CHILD_READY_S)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted((o["appended"], o["attempts"]) for o in outs) == [(False, 2), (True, 1)]
    _assert_steps_equal_groups(open_cube(cube, storage), ["p1", "p2"])
    assert len(list(open_repository(cube, storage).ancestry(branch="main"))) == 3


def test_a_writer_killed_mid_append_leaves_whole_steps_and_a_rerun_completes(where):
    """A writer inserting an earlier acquisition (every later step moved up in its session) is SIGKILLed with
    everything written but not committed: readers see the two earlier steps, whole and in place; a rerun lands."""
    root, storage, env = where
    pairs, cube = _pairs(root, storage), f"{root}/cubes/T33UUP.zarr"
    for n in ("p2", "p3"):
        append_pair(cube, pairs[n], storage)
    signal_file = Path(env.get("TMPDIR", "/tmp")) / f"cube-kill-{os.getpid()}-{time.monotonic_ns()}"
    proc = _worker(cube, pairs["p1"], env, "--stop-before-commit", str(signal_file))
    _wait_for(signal_file, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _assert_steps_equal_groups(open_cube(cube, storage), ["p2", "p3"])
    rerun = append_pair(cube, pairs["p1"], storage)
    assert rerun.appended and rerun.index == 0 and rerun.attempts == 1
    _assert_steps_equal_groups(open_cube(cube, storage), ["p1", "p2", "p3"])


class _KeyLog(zarr.storage.WrapperStore):
    """Records every key read (to count the chunks a read touches)."""

    def __init__(self, store, keys: list[str]) -> None:  # noqa: ANN001 - a zarr store
        super().__init__(store)
        self.keys = keys

    async def get(self, key, prototype, byte_range=None):  # noqa: ANN001, ANN201 - zarr's Store.get
        self.keys.append(key)
        return await super().get(key, prototype, byte_range)


def test_one_pixel_time_series_touches_one_chunk_per_step_and_a_map_one_chunk(tmp_path):
    """The chunking (time 1, band 1, 512 x 512), measured: a pixel's series of one band reads one chunk per step;
    one date's map of one band a single chunk per 512 x 512 block."""
    storage = StorageOptions(endpoint_url=None)
    pairs, cube = _pairs(str(tmp_path), storage), str(tmp_path / "cube.zarr")
    for n in pairs:
        append_pair(cube, pairs[n], storage)
    keys: list[str] = []
    session = icechunk.Repository.open(icechunk.local_filesystem_storage(cube)).readonly_session(branch="main")
    ds = xr.open_zarr(_KeyLog(session.store, keys), consolidated=False, zarr_format=3)
    keys.clear()
    series = ds.sar_coregistered.sel(band="vh").isel(y=50, x=40).values
    assert len(series) == 3
    assert len({k for k in keys if k.startswith("sar_coregistered/c/")}) == 3
    keys.clear()
    ds.sar_coregistered.isel(time=1).sel(band="vv").values
    assert len({k for k in keys if k.startswith("sar_coregistered/c/")}) == 1


def test_the_step_quality_is_computed_chunk_by_chunk_as_the_whole_array_gives_it():
    rng = np.random.default_rng(3)
    certainty = rng.beta(2, 5, (300, 200)).astype(np.float32)
    certainty[:40] = 0.0  # a block the guard left at 0: many equal values
    certainty[40:80] = (np.arange(40 * 200).reshape(40, 200) % 97 + 2300) / np.float32(10_000)  # float32s at bin edges
    valid = rng.random((300, 200)) > 0.3
    lazy = lambda a: da.from_array(a, chunks=(64, 64))  # noqa: E731
    median, share = certainty_summary(lazy(certainty), lazy(valid), 0.5)
    assert median == pytest.approx(np.median(certainty[valid]), rel=1e-7)  # float32's mean of the middle two
    odd = valid.copy()
    odd.flat[np.flatnonzero(odd)[0]] = odd.sum() % 2 == 1  # the other parity: one middle value
    assert certainty_summary(lazy(certainty), lazy(odd), 0.5)[0] == np.median(certainty[odd])  # one value: exact
    zeros = valid & (np.arange(300)[:, None] < 60)  # two thirds of these valid pixels are 0: the median is 0, read from no bin
    assert certainty_summary(lazy(certainty), lazy(zeros), 0.5)[0] == np.median(certainty[zeros]) == 0.0
    assert share == pytest.approx((certainty[valid] >= 0.5).mean(), rel=1e-12)
    nothing = certainty_summary(lazy(certainty), lazy(np.zeros_like(valid)), 0.5)
    assert np.isnan(nothing).all()
