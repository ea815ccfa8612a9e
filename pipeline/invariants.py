"""The promises a pair's Zarr group keeps at every moment, even after a crash (DESIGN.md), as one check.

Used by the tests after every run and fault; a reader may run it too (`soma check OUT.zarr`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .quality import TileStatus

STATISTICS_TOLERANCE = 1e-3
"""Row figures recomputed from the chunk agree with the stored row to this (float32 storage)."""


def _core(ds: xr.Dataset, tile: int) -> tuple[slice, slice]:
    row, col, height, width = (int(v) for v in ds.tile_core.values[tile])
    return slice(row, row + height), slice(col, col + width)


def violations(ds: xr.Dataset) -> list[str]:
    """Every broken invariant of an opened pair group (empty when all hold):
    - `complete` only when every tile has a status, and the stored status counts add up to the tile count;
    - a tile without a status, `no_data` or `failed` has `valid` false and NaN flow over its chunk (nothing
      that looks like real data);
    - a registered tile's chunk agrees with its row (valid pixels exist; mean certainty and median |flow|
      recomputed from the chunk match the row).
    """
    found = []
    status = ds.tile_status.values.astype(int)
    tiles = status.size
    if ds.attrs.get("complete"):
        if (status == TileStatus.PENDING).any():
            found.append(f"complete, but tiles {np.flatnonzero(status == TileStatus.PENDING).tolist()} have no status")
        counts = ds.attrs.get("status_counts", {})
        if sum(counts.values()) != tiles:
            found.append(f"status counts {counts} do not add up to {tiles} tiles")
        for s in TileStatus:
            if s != TileStatus.PENDING and counts.get(s.label, 0) != int((status == s).sum()):
                found.append(f"status count of {s.label} is {counts.get(s.label, 0)}, the table has "
                             f"{int((status == s).sum())}")
    for tile in range(tiles):
        rows, cols = _core(ds, tile) if status[tile] != TileStatus.PENDING else (None, None)
        if rows is None:
            continue  # never written: its core is not recorded yet; checked through `valid` below
        valid = ds.valid.values[rows, cols]
        flow = np.stack([ds.flow_x.values[rows, cols], ds.flow_y.values[rows, cols]])
        label = TileStatus(status[tile]).label
        if status[tile] in (TileStatus.NO_DATA, TileStatus.FAILED):
            if valid.any() or np.isfinite(flow).any():
                found.append(f"tile {tile} is {label} but its chunk holds valid or finite flow")
            continue
        if not valid.any():
            found.append(f"tile {tile} is {label} but has no valid pixel")
            continue
        if not np.isfinite(flow[:, valid]).all() or np.isfinite(flow[:, ~valid]).any():
            found.append(f"tile {tile}: finite flow and valid disagree")
        mean_certainty = float(ds.certainty.values[rows, cols][valid].mean())
        median_flow = float(np.median(np.hypot(*flow[:, valid])))
        for name, value in (("mean_certainty", mean_certainty), ("flow_median_px", median_flow)):
            stored = float(ds[f"tile_{name}"].values[tile])
            if abs(stored - value) > STATISTICS_TOLERANCE * max(1.0, abs(value)):
                found.append(f"tile {tile}: {name} is {stored:.4f} in the table, {value:.4f} in the chunk")
    written = np.zeros(ds.valid.shape, bool)
    for tile in np.flatnonzero(status != TileStatus.PENDING):
        written[_core(ds, tile)] = True
    if ds.valid.values[~written].any():
        found.append("pixels of tiles without a status are marked valid")
    return found
