"""The pair's Zarr v3 group (DESIGN.md): a template first, then one chunk region per tile, the tile table
row by row, consolidated metadata and `complete = true` last."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from dataclasses import dataclass

import dask.array as da
import fsspec
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor used to write the CRS
import xarray as xr
import zarr
import zarr.storage

from model.errors import SomaError

from .config import StorageOptions, is_remote
from .conventions import CONVENTIONS, GRID_COORDINATES, pixel_size_coords, variable_attrs, xy_attrs
from .quality import TileRecord, TileStatus
from .rasters import Grid
from .tiling import Tile

SCALAR_COLUMNS = ("mean_certainty", "confident_fraction", "flow_median_px", "flow_p95_px", "similarity_before",
                  "similarity_after", "seconds")
TEMPLATE_WAIT_S = 60
"""How long a run waits for a template another run is writing at the same time."""
TEMPLATE_POLL_S = 0.2
LAYOUT_ATTRS = ("tile_size", "overlap", "height", "width", "sar_bands")
"""Group attrs that must match for a rerun to continue an existing group."""


class StoreMismatch(SomaError, ValueError):
    """An existing group at the output path was written with another layout."""


@dataclass(frozen=True)
class Layout:
    """What fixes the arrays' shapes and chunks."""

    grid: Grid
    tile_size: int
    overlap: int
    sar_bands: int
    tiles: int

    @property
    def chunk(self) -> int:
        return self.tile_size - self.overlap


ZARR_METADATA = ("zarr.json", ".zgroup", ".zarray")


def check_output_prefix(output: str, storage: StorageOptions) -> None:
    """Refuse an output prefix that is itself a Zarr group or array: pair groups go *inside* a plain folder or
    prefix, never into someone else's store."""
    fs, root = fsspec.core.url_to_fs(output, **storage.for_url(output))
    for name in ZARR_METADATA:
        if fs.exists(f"{root.rstrip('/')}/{name}"):
            raise StoreMismatch(f"{output}: is itself a Zarr store ({name}); give a folder or prefix to hold "
                                "the pairs' groups")


class PairStore:
    """Read and write one pair's group at `path` (local or s3://)."""

    def __init__(self, path: str, storage: StorageOptions) -> None:
        self.path = path
        self.storage_options = storage.fsspec() if is_remote(path) else None
        self._opened: dict[str, zarr.Array] | None = None

    def _store(self) -> zarr.storage.StoreLike:
        if self.storage_options is not None:
            return zarr.storage.FsspecStore.from_url(self.path, storage_options=self.storage_options)
        return zarr.storage.LocalStore(self.path)

    def _group(self, mode: str = "r+") -> zarr.Group:
        return zarr.open_group(self._store(), mode=mode, zarr_format=3)

    def exists(self) -> bool:
        try:
            self._group("r")
            return True
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False

    def attrs(self) -> dict:
        return dict(self._group("r").attrs)

    def is_complete(self) -> bool:
        return self.exists() and bool(self.attrs().get("complete", False))

    def status(self) -> np.ndarray:
        """`(tiles,)` int8 status per tile (0 where not yet written)."""
        return np.asarray(self._group("r")["tile_status"][:])

    def create(self, layout: Layout, attrs: dict) -> None:
        """Write the template (metadata only, no chunk data), or check an existing group has `layout`.

        Safe against a concurrent run creating the same group: whoever loses the race checks the winner's layout.
        """
        if not self.exists():
            template = self._template(layout).assign_attrs(**self._layout_attrs(layout), **attrs, complete=False)
            try:
                template.to_zarr(self._store(), mode="w-", compute=False, zarr_format=3, consolidated=False)
                return
            except (FileExistsError, zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError):
                pass  # another run created it first
        found = self._wait_for_layout()
        if found != self._layout_attrs(layout):
            raise StoreMismatch(f"{self.path}: an existing group has layout {found}, this run needs "
                                f"{self._layout_attrs(layout)}; remove it or write elsewhere")
        self._wait_for_template(set(self._template(layout).variables))

    def _wait_for_layout(self) -> dict:
        """The group's layout attrs, once written: a concurrent run creates the group before its attrs, and its
        attrs before its arrays, so a group with arrays but no layout is another kind of group (no wait)."""
        deadline = time.monotonic() + TEMPLATE_WAIT_S
        while True:
            found = {k: self.attrs().get(k) for k in LAYOUT_ATTRS}
            if None not in found.values() or time.monotonic() > deadline:
                return found
            if next(iter(self._group("r").array_keys()), None) is not None:
                return found
            time.sleep(TEMPLATE_POLL_S)

    def _wait_for_template(self, names: set[str]) -> None:
        """Wait until every array of the template exists: a concurrent run may still be writing it."""
        deadline = time.monotonic() + TEMPLATE_WAIT_S
        while not names <= set(self._group("r").array_keys()):
            if time.monotonic() > deadline:
                missing = sorted(names - set(self._group("r").array_keys()))
                raise StoreMismatch(f"{self.path}: an existing group lacks arrays {missing} after "
                                    f"{TEMPLATE_WAIT_S} s; it is not a complete SOMA template")
            time.sleep(TEMPLATE_POLL_S)

    @staticmethod
    def _layout_attrs(layout: Layout) -> dict:
        return {"tile_size": layout.tile_size, "overlap": layout.overlap, "height": layout.grid.height,
                "width": layout.grid.width, "sar_bands": layout.sar_bands}

    @staticmethod
    def _template(layout: Layout) -> xr.Dataset:
        g, c = layout.grid, layout.chunk
        x, y = g.coordinates()
        plane = lambda dtype: da.zeros((g.height, g.width), dtype=dtype, chunks=c)  # noqa: E731
        px, py = g.pixel_size
        n = layout.tiles
        per_tile = lambda dtype, *extra: da.zeros((n, *extra), dtype=dtype, chunks=(1, *extra))  # noqa: E731
        cf = variable_attrs()
        ds = xr.Dataset(
            {
                "flow_x": (("y", "x"), plane("float32"), cf["flow_x"]),
                "flow_y": (("y", "x"), plane("float32"), cf["flow_y"]),
                "certainty": (("y", "x"), plane("float32"), cf["certainty"]),
                "valid": (("y", "x"), plane("bool"), cf["valid"]),
                "sar_coregistered": (("band", "y", "x"),
                                     da.zeros((layout.sar_bands, g.height, g.width), dtype="float32",
                                              chunks=(1, c, c)), cf["sar_coregistered"]),
                "tile_window": (("tile", "box"), per_tile("int32", 4), {"long_name": "row, col, height, width"}),
                "tile_core": (("tile", "box"), per_tile("int32", 4), {"long_name": "the tile's chunk"}),
                "tile_status": (("tile",), per_tile("int8"), {
                    "flag_values": [int(s) for s in TileStatus],
                    "flag_meanings": " ".join(s.label for s in TileStatus)}),
                "tile_error": (("tile",), np.full(n, "", dtype=object)),
                "tile_affine": (("tile", "row", "column"), per_tile("float64", 2, 3),
                                {"long_name": "window px -> SAR px"}),
                **{f"tile_{k}": (("tile",), per_tile("float32")) for k in SCALAR_COLUMNS},
            },
            coords={"y": y, "x": x, "band": np.arange(1, layout.sar_bands + 1), "tile": np.arange(n),
                    **pixel_size_coords(px, py)},
        )
        ds = ds.rio.write_crs(g.crs).rio.write_transform(g.transform)
        x_attrs, y_attrs = xy_attrs(ds.spatial_ref.attrs["crs_wkt"])
        ds["x"].attrs, ds["y"].attrs = x_attrs, y_attrs
        ds.attrs["Conventions"] = CONVENTIONS
        ds["tile_error"].encoding["chunks"] = (1,)
        for name in ("flow_x", "flow_y", "certainty", "valid", "sar_coregistered"):
            ds[name].encoding["coordinates"] = GRID_COORDINATES  # so xr.open_zarr keeps them coordinates
        return ds

    def write_tile(self, tile: Tile, flow: np.ndarray, certainty: np.ndarray, valid: np.ndarray,
                   sar: np.ndarray, record: TileRecord) -> None:
        """The tile's chunk region (certainty NaN where not valid), then its table row, `valid` and the status last (the status marks the tile
        written; `valid` just before it, so a writer killed midway leaves no valid pixel without a status).

        Straight into the template's arrays (whole chunks, so each is one atomic object): xarray's region
        writes re-read and re-validate the group on every call."""
        arrays, (rows, cols) = self._arrays(), tile.core.slices
        certainty = np.where(valid, certainty, np.float32(np.nan))  # no data: NaN, never a certainty of 0
        for name, data in (("flow_x", flow[0]), ("flow_y", flow[1]), ("certainty", certainty)):
            arrays[name][rows, cols] = data
        arrays["sar_coregistered"][:, rows, cols] = sar
        self._write_row(record)
        arrays["valid"][rows, cols] = valid
        arrays["tile_status"][record.index] = np.int8(int(record.status))

    def _arrays(self) -> dict[str, zarr.Array]:
        """The template's arrays, opened once per store (their metadata never changes after `create`)."""
        if self._opened is None:
            group = self._group()
            self._opened = {name: group[name] for name in group.array_keys()}
        return self._opened

    def _write_row(self, r: TileRecord) -> None:
        """The row's columns but its status (`write_tile` writes that last)."""
        arrays, i = self._arrays(), r.index
        arrays["tile_window"][i] = np.asarray(r.window, np.int32)
        arrays["tile_core"][i] = np.asarray(r.core, np.int32)
        arrays["tile_affine"][i] = np.asarray(r.affine, np.float64)
        arrays["tile_error"][i] = r.error
        for k in SCALAR_COLUMNS:
            arrays[f"tile_{k}"][i] = np.float32(getattr(r, k))

    def record(self, attrs: dict) -> None:
        """Add `attrs` to the group's attributes."""
        self._group().attrs.update(attrs)

    def finish(self, attrs: dict) -> None:
        """Record `attrs`, consolidate the metadata, then mark the group complete."""
        self.record({**attrs, "finished": dt.datetime.now(dt.timezone.utc).isoformat()})
        with warnings.catch_warnings():
            # zarr notes that consolidated metadata is not (yet) in the v3 spec; DESIGN.md asks for it
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(self._store())
            self._group().attrs["complete"] = True
            zarr.consolidate_metadata(self._store())


def open_pair(store: str, storage: StorageOptions) -> xr.Dataset:
    """A pair's group as a lazy Dataset, through `storage` for s3://; read from each array's own metadata, so
    an incomplete (not yet consolidated) group opens too."""
    return xr.open_zarr(store, consolidated=False, storage_options=storage.for_url(store) or None)


def tile_table(ds: xr.Dataset) -> list[dict]:
    """The tile table of an opened group as plain rows (for printing, artifacts and tests)."""
    out = []
    for i in range(ds.sizes["tile"]):
        out.append({"tile": i, "status": TileStatus(int(ds.tile_status[i])).label, "error": str(ds.tile_error[i].values),
                    "window": ds.tile_window[i].values.tolist(),
                    **{k: float(ds[f"tile_{k}"][i]) for k in SCALAR_COLUMNS}})
    return out

