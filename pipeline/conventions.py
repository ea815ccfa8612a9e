"""CF metadata shared by every product (per-pair groups and cubes): coordinate and variable attrs that xarray,
rioxarray and CF readers understand."""

from __future__ import annotations

import xarray as xr
from pyproj import CRS

CONVENTIONS = "CF-1.10"
CERTAINTY_RANGE = (0.0, 1.0)
PIXEL_SIZE = ("pixel_size_x", "pixel_size_y")
"""Scalar coordinates: the reference pixel size along x and y, metres per pixel (the flow's scale to metres)."""
GRID_COORDINATES = " ".join(("spatial_ref", *PIXEL_SIZE))
"""The non-dimension coordinates every gridded variable names (CF `coordinates`)."""


def pixel_size_coords(px: float, py: float) -> dict[str, tuple]:
    """The scalar `pixel_size_x`, `pixel_size_y` coordinates of a grid with pixels of `px` x `py` metres."""
    return {name: ((), float(v), {"long_name": f"reference pixel size along {axis}: flow_{axis} x this = metres",
                                  "units": "m"})
            for name, v, axis in ((PIXEL_SIZE[0], px, "x"), (PIXEL_SIZE[1], py, "y"))}


def pixel_size(ds: xr.Dataset) -> tuple[float, float]:
    """(x, y) reference pixel size in metres of a product: its `pixel_size_x`/`_y` coordinates (groups written
    before them: the flow's `pixel_size_m` attrs)."""
    if all(n in ds.coords for n in PIXEL_SIZE):
        return float(ds[PIXEL_SIZE[0]]), float(ds[PIXEL_SIZE[1]])
    return float(ds.flow_x.attrs["pixel_size_m"]), float(ds.flow_y.attrs["pixel_size_m"])


def xy_attrs(crs_wkt: str) -> tuple[dict, dict]:
    """CF attrs of the `x` and `y` pixel-centre coordinates of a grid in `crs_wkt` (projected or geographic)."""
    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return ({"standard_name": "longitude", "long_name": "longitude of pixel centre", "units": "degrees_east",
                 "axis": "X"},
                {"standard_name": "latitude", "long_name": "latitude of pixel centre", "units": "degrees_north",
                 "axis": "Y"})
    unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
    units = "m" if unit in ("metre", "meter") else unit
    return ({"standard_name": "projection_x_coordinate", "long_name": "x of pixel centre", "units": units,
             "axis": "X"},
            {"standard_name": "projection_y_coordinate", "long_name": "y of pixel centre", "units": units,
             "axis": "Y"})


def variable_attrs() -> dict[str, dict]:
    """CF attrs of the registration variables, by name (flow in reference pixels; `pixel_size_x`/`_y` the scale
    to metres)."""
    return {
        "flow_x": {"long_name": "flow along x (columns) in reference pixels: sar(p + flow) belongs at p",
                   "units": "1", "comment": "reference pixels; times pixel_size_x gives metres"},
        "flow_y": {"long_name": "flow along y (rows, downwards) in reference pixels",
                   "units": "1", "comment": "reference pixels; times pixel_size_y gives metres"},
        "certainty": {"long_name": "P(flow error < 1 px)", "units": "1",
                      "valid_range": list(CERTAINTY_RANGE), "comment": "NaN where there is no data (valid false)"},
        "valid": {"long_name": "optical and co-registered SAR have data", "units": "1"},
        "sar_coregistered": {"long_name": "SAR resampled onto the optical grid and corrected by the flow"},
    }


def cube_conventions(step: xr.Dataset, pair: xr.Dataset) -> xr.Dataset:
    """A one-step cube Dataset with CF attrs: the pair's variable attrs, `x`/`y`, `time`, `band` and the
    per-time coordinates, `grid_mapping` on every variable, a `Conventions` attribute."""
    out = step.copy()
    x_attrs, y_attrs = xy_attrs(pair.spatial_ref.attrs["crs_wkt"])
    out["x"].attrs, out["y"].attrs = x_attrs, y_attrs
    out["time"].attrs = {"standard_name": "time", "long_name": "Sentinel-1 acquisition time (UTC)", "axis": "T"}
    out["band"].attrs = {"long_name": "SAR polarisation"}
    cf = variable_attrs()
    for name in out.data_vars:
        keep = {k: v for k, v in pair[name].attrs.items() if k not in ("grid_mapping", "_FillValue", "pixel_size_m")}
        out[name].attrs = {**keep, **cf.get(name, {})}
        out[name].encoding = {"grid_mapping": "spatial_ref", "coordinates": GRID_COORDINATES}
    out["optical_time"].attrs = {"long_name": "Sentinel-2 reference acquisition time (UTC)"}
    out["median_certainty"].attrs = {"long_name": "median certainty over the step's valid pixels", "units": "1"}
    out["confident_fraction"].attrs = {"long_name": "share of valid pixels whose certainty is at least the run's "
                                                    "confident threshold", "units": "1"}
    out["checkpoint_sha256"].attrs = {"long_name": "SHA-256 of the model checkpoint that registered the step"}
    out.attrs = {"Conventions": CONVENTIONS, "title": "SOMA change-detection cube: co-registered Sentinel-1 on "
                                                      "one Sentinel-2 grid",
                 "source": "SOMA SAR-optical co-registration", "model": pair.attrs.get("model", "")}
    return out
