"""The worked example of docs/change_detection.md: open a tile's cube, mask by certainty, compute a log-ratio change
map between two dates and save it as a picture.

Usage: python scripts/change_detection.py runs/archive S2_T11SMT_139-140 --band vh --min-certainty 0.2 \
           --png docs/images/change_detection.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from pipeline.cube import cube_path, open_cube  # noqa: E402

CHANGE_DB = 3.0
"""|log-ratio| at least this many dB counts as change (a factor of 2 in backscatter)."""
COLOUR_RANGE_DB = 6.0


def log_ratio_db(before: xr.DataArray, after: xr.DataArray) -> xr.DataArray:
    """10 log10(after / before) in dB: for SAR in dB, after - before; for linear or stretched values, the ratio."""
    if bool((before < 0).any()) or bool((after < 0).any()):  # decibels
        return after - before
    return 10 * np.log10(after.where(after > 0) / before.where(before > 0))


def change_map(cube: xr.Dataset, before: int, after: int, band: str, min_certainty: float) -> xr.Dataset:
    """The log-ratio between time steps `before` and `after` of `band`, kept where both steps are valid and both
    certainties are at least `min_certainty`; `mask` says where it is kept, `change` where |ratio| >= CHANGE_DB."""
    a, b = cube.isel(time=before), cube.isel(time=after)
    mask = a.valid & b.valid & (a.certainty >= min_certainty) & (b.certainty >= min_certainty)
    ratio = log_ratio_db(a.sar_coregistered.sel(band=band), b.sar_coregistered.sel(band=band)).where(mask)
    return xr.Dataset({"log_ratio_db": ratio, "mask": mask, "change": mask & (abs(ratio) >= CHANGE_DB)})


def picture(cube: xr.Dataset, result: xr.Dataset, before: int, after: int, band: str, min_certainty: float,
            png: Path) -> None:
    """Before, after, the certainty mask and the masked log-ratio side by side."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
    for ax, i in zip(axes[:2], (before, after)):
        sar = cube.sar_coregistered.isel(time=i).sel(band=band).values
        lo, hi = np.nanpercentile(sar, [2, 98])
        ax.imshow(sar, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"{band.upper()} {np.datetime_as_string(cube.time.values[i], unit='m')}")
    axes[2].imshow(result["mask"].values, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"kept: both valid, certainty >= {min_certainty:g}\n({float(result['mask'].mean()):.0%} of pixels)")
    im = axes[3].imshow(result["log_ratio_db"].values, cmap="RdBu_r", vmin=-COLOUR_RANGE_DB, vmax=COLOUR_RANGE_DB)
    axes[3].set_title(f"log-ratio, dB (|r| >= {CHANGE_DB:g}: {float(result['change'].sum() / result['mask'].sum()):.1%}"
                      " of kept)")
    fig.colorbar(im, ax=axes[3], shrink=0.8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", help="a run's output folder (holding cubes/)")
    p.add_argument("tile")
    p.add_argument("--before", type=int, default=0, help="time step index")
    p.add_argument("--after", type=int, default=-1, help="time step index (default: the last)")
    p.add_argument("--band", default="vh")
    p.add_argument("--min-certainty", type=float, default=0.2)
    p.add_argument("--png", type=Path, default=Path("change_detection.png"))
    args = p.parse_args()
    cube = open_cube(cube_path(args.output, args.tile))
    after = args.after % cube.sizes["time"]
    result = change_map(cube, args.before, after, args.band, args.min_certainty)
    picture(cube, result, args.before, after, args.band, args.min_certainty, args.png)
    ratio = result["log_ratio_db"].values
    print(json.dumps({"cube": cube_path(args.output, args.tile), "before": str(cube.time.values[args.before]),
                      "after": str(cube.time.values[after]), "kept_fraction": float(result["mask"].mean()),
                      "median_abs_log_ratio_db": float(np.nanmedian(np.abs(ratio))),
                      "changed_fraction_of_kept": float(result["change"].sum() / max(int(result["mask"].sum()), 1)),
                      "png": str(args.png)}))


if __name__ == "__main__":
    main()
