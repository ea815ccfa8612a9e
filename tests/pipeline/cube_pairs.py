"""Real pair groups for the cube tests, written through `PairStore` (the pipeline's own writer) with known
arrays, and a worker process that appends one of them to a cube (`python -m tests.pipeline.cube_pairs`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from pipeline.config import StorageOptions
from pipeline.cube import append_pair
from pipeline.quality import TileRecord, TileStatus
from pipeline.rasters import Grid
from pipeline.store import Layout, PairStore
from pipeline.tiling import make_tiles

GRID = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000, 5000000, 10, 10), 96, 80)
BARRIER_POLL_S = 0.05


def pair_arrays(seed: int, bands: int, grid: Grid = GRID) -> dict[str, np.ndarray]:
    """The arrays a pair group written with `seed` holds (flow, certainty, valid, SAR)."""
    rng = np.random.default_rng(seed)
    h, w = grid.height, grid.width
    valid = np.ones((h, w), bool)
    valid[: 5 + seed % 7] = False
    certainty = np.where(valid, rng.uniform(0, 1, (h, w)), np.nan).astype(np.float32)  # the store's NaN: no data
    return {"flow": rng.normal(0, 2, (2, h, w)).astype(np.float32), "certainty": certainty, "valid": valid,
            "sar": rng.normal(-12, 3, (bands, h, w)).astype(np.float32)}


def write_pair(output: str, pair_id: str, sar_time: str, seed: int, polarisations=("vv", "vh"),
               storage: StorageOptions = StorageOptions(), grid: Grid = GRID, finish: bool = True,
               arrays: dict[str, np.ndarray] | None = None) -> str:
    """A complete (or, without `finish`, incomplete) pair group at `{output}/{pair_id}.zarr` holding `arrays`
    (default: `pair_arrays(seed, ...)`); returns its path."""
    path = f"{output.rstrip('/')}/{pair_id}.zarr"
    tiles = make_tiles(grid.height, grid.width, 512, 64)
    store = PairStore(path, storage)
    store.create(Layout(grid, 512, 64, len(polarisations), len(tiles)), {
        "pair_id": pair_id, "optical_item": f"S2_{pair_id}", "sar_item": f"S1_{pair_id}",
        "sar_datetime": sar_time, "optical_datetime": "2024-01-01T10:00:00Z",
        "sar_polarisations": list(polarisations), "pipeline_config": {"confident_certainty": 0.5}})
    a = arrays if arrays is not None else pair_arrays(seed, len(polarisations), grid)
    for t in tiles:
        rows, cols = t.core.slices
        store.write_tile(t, a["flow"][:, rows, cols], a["certainty"][rows, cols], a["valid"][rows, cols],
                         a["sar"][:, rows, cols], TileRecord(t.index, _box(t.window), _box(t.core), TileStatus.OK))
    if finish:
        store.finish({"model": "test", "checkpoint_sha256": f"sha-{seed}"})
    return path


def _box(b) -> list[int]:  # noqa: ANN001 - a tiling.Box
    return [b.row, b.col, b.height, b.width]


def main() -> None:
    """Append one pair to a cube; `--stop-before-commit FILE`: touch FILE at the commit and wait to be killed;
    `--barrier MINE OTHER`: at the first commit, touch MINE and wait until OTHER exists."""
    p = argparse.ArgumentParser()
    p.add_argument("cube")
    p.add_argument("pair")
    p.add_argument("--endpoint")
    p.add_argument("--stop-before-commit")
    p.add_argument("--barrier", nargs=2)
    args = p.parse_args()

    def hook(attempt: int) -> None:
        if args.stop_before_commit:
            Path(args.stop_before_commit).touch()
            signal.pause()  # everything is written, nothing committed: the test kills us here
        if args.barrier and attempt == 1:
            Path(args.barrier[0]).touch()
            while not Path(args.barrier[1]).exists():
                time.sleep(BARRIER_POLL_S)

    storage = StorageOptions(endpoint_url=args.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3"))
    result = append_pair(args.cube, args.pair, storage, before_commit=hook)
    print(json.dumps(asdict(result)))  # the last line of stdout


if __name__ == "__main__":
    main()
