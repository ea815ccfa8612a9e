"""Side by side with AROSICS on one real scene: its COREG_LOCAL tie-point grid (optical -> optical, since it
does not take SAR) vs our dense field (SAR -> optical, the product; and optical -> optical, out of the
model's domain), timed on the same machine and scored against the same injected misregistration.

The scene (default: the bundled real 2048² T11SMT scene) gets a known geotransform shift and a smooth
field, applied alike to its SAR and to a copy of its green band (AROSICS's target; the red band is its
reference). AROSICS runs in its own interpreter (`--arosics-python`; it needs GDAL's Python bindings,
never a product dependency: see ../shared/STACK.md).
Usage: python benchmarks/arosics_side_by_side.py --arosics-python /path/to/venv/bin/python
       [--grid-res 200 50] [--actors 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "data" / "sample" / "scene" / "T11SMT_175-188"
SHIFT_M = (23.0, 17.0)
"""Injected geotransform shift, metres east and north (issue 4's example)."""
FIELD_AMPLITUDE_PX = 1.5
FIELD_GRID = 4
SEED = 0
NODATA = -9999.0
AROSICS_WINDOW = (256, 256)
"""AROSICS's default matching window, px."""
AROSICS_CPUS = 2
"""All of this machine's cores, as SOMA's two actors get."""


def arosics_child(reference: str, target: str, grid_res: int, cpus: int, out: str) -> None:
    """In AROSICS's interpreter: COREG_LOCAL tie points, then the corrected target; one JSON file."""
    from arosics import COREG_LOCAL

    start = time.perf_counter()
    coreg = COREG_LOCAL(reference, target, grid_res=grid_res, window_size=AROSICS_WINDOW, r_b4match=1,
                        s_b4match=1, path_out=str(Path(out).with_suffix(".tif")), fmt_out="GTiff", CPUs=cpus,
                        progress=False, q=True)
    table = coreg.CoRegPoints_table
    tie_points = time.perf_counter() - start
    start = time.perf_counter()
    coreg.correct_shifts()
    corrected = time.perf_counter() - start
    keep = table[["X_IM", "Y_IM", "X_SHIFT_PX", "Y_SHIFT_PX", "RELIABILITY", "OUTLIER"]]
    Path(out).write_text(json.dumps({"tie_points_s": tie_points, "correct_s": corrected,
                                     "fill": coreg.outFillVal, "points": keep.astype(float).values.tolist()}))


def inject(workdir: Path) -> tuple[Path, Path, Path, np.ndarray]:
    """Optical reference, moved SAR, moved green band, and the flow that undoes the injection `(2, H, W)`."""
    import rasterio
    from affine import Affine

    from model.synthetic_warp import Misregistration, move_sar, random_field_grid, shifted_file_flow, smooth_field

    with rasterio.open(f"{SCENE}_opt.tif") as src:
        optical, profile = src.read(), src.profile
    with rasterio.open(f"{SCENE}_sar.tif") as src:
        sar = src.read()
    size = optical.shape[-2:]
    field = smooth_field(random_field_grid(np.random.default_rng(SEED), FIELD_AMPLITUDE_PX, FIELD_GRID), size)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    shifted = profile | {"transform": Affine.translation(*SHIFT_M) @ profile["transform"], "count": 1,
                         "dtype": "float32"}
    paths = {"reference": workdir / "reference.tif", "sar": workdir / "sar_moved.tif",
             "green": workdir / "green_moved.tif"}
    with rasterio.open(paths["reference"], "w", **(profile | {"count": 1})) as dst:
        dst.write(optical[:1])  # red: AROSICS's reference band
    for key, band in (("sar", sar[:1]), ("green", optical[1:2])):
        moved = move_sar(band.astype(np.float32), Misregistration(identity, field))
        nodata = NODATA if key == "green" else float("nan")  # AROSICS wants a finite nodata value
        with rasterio.open(paths[key], "w", **(shifted | {"nodata": nodata})) as dst:
            dst.write(np.where(np.isfinite(moved), moved, nodata))
    pixel = (profile["transform"].a, -profile["transform"].e)
    truth = shifted_file_flow((SHIFT_M[0] / pixel[0], -SHIFT_M[1] / pixel[1]), field)
    return paths["reference"], paths["sar"], paths["green"], truth


def run_ours(moving: Path, truth: np.ndarray, actors: int, out: Path) -> dict:
    """`register_pair` end to end (Ray start and model load included); errors over valid pixels."""
    start = time.perf_counter()
    flow, valid = _flow(moving, actors, out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "vectors": int(valid.sum()), "error": np.hypot(*(flow - truth))[valid],
            "flow": flow, "valid": valid}


def _flow(moving: Path, actors: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    import xarray as xr

    from pipeline import PipelineConfig, ScenePair, register_pair

    result = register_pair(ScenePair("side", (f"{SCENE}_opt.tif",), (str(moving),)), str(out),
                           PipelineConfig(actors=actors, quicklook=False))
    ds = xr.open_zarr(result.store, consolidated=False)
    flow = np.stack([ds.flow_x.values, ds.flow_y.values])
    return flow, ds.valid.values & np.isfinite(flow).all(axis=0)


def injected_part(moved: dict, original: Path, truth: np.ndarray, actors: int, out: Path) -> dict:
    """The moved run minus a run on the untouched SAR: the pair's own residual (a few px, in both) cancels,
    leaving what SOMA recovered of the injection."""
    flow, valid = _flow(original, actors, out)
    both = moved["valid"] & valid
    return {"seconds": moved["seconds"], "vectors": int(both.sum()),
            "error": np.hypot(*(moved["flow"] - flow - truth))[both]}


def run_arosics(python: str, reference: Path, target: Path, grid_res: int, truth: np.ndarray, workdir: Path) -> dict:
    """AROSICS in its interpreter; errors at its valid tie points (not fill, not flagged as outliers)."""
    out = workdir / f"arosics_{grid_res}.json"
    start = time.perf_counter()
    subprocess.run([python, __file__, "--arosics-child", str(reference), str(target), str(grid_res),
                    str(AROSICS_CPUS), str(out)], check=True)
    seconds = time.perf_counter() - start
    r = json.loads(out.read_text())
    points = np.array(r["points"]).reshape(-1, 6)
    ok = (points[:, 2] != r["fill"]) & (points[:, 5] == 0)
    x, y = points[ok, 0].astype(int), points[ok, 1].astype(int)
    # AROSICS reports the correction that moves the target onto the reference (image axes): minus our flow
    error = np.hypot(-points[ok, 2] - truth[0, y, x], -points[ok, 3] - truth[1, y, x])
    return {"seconds": seconds, "tie_points_s": r["tie_points_s"], "correct_s": r["correct_s"],
            "points": len(points), "vectors": int(ok.sum()), "error": error}


def row(name: str, produces: str, r: dict, truth_median: float) -> str:
    e = r["error"]
    med, p90 = (float(np.median(e)), float(np.percentile(e, 90))) if e.size else (float("nan"),) * 2
    return (f"| {name} | {produces} | {r['seconds']:.0f} | {r['vectors']:,} | {truth_median:.2f} | {med:.2f} | "
            f"{p90:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arosics-python", help="an interpreter with arosics installed (required)")
    parser.add_argument("--grid-res", type=int, nargs="+", default=[200, 50], help="AROSICS tie-point spacing, px")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--arosics-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arosics_child:
        reference, target, grid_res, cpus, out = args.arosics_child
        arosics_child(reference, target, int(grid_res), int(cpus), out)
        return
    if not args.arosics_python:
        parser.error("--arosics-python is required: AROSICS runs in its own interpreter")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        reference, sar, green, truth = inject(workdir)
        before = float(np.median(np.hypot(*truth)))
        print(f"scene {SCENE.name}: {truth.shape[2]}x{truth.shape[1]} px, injected {SHIFT_M} m + field "
              f"<= {FIELD_AMPLITUDE_PX} px; median |injected flow| {before:.2f} px", flush=True)
        print("| method | produces | seconds | vectors | median injected px | median error px | p90 error px |")
        print("|---|---|---|---|---|---|---|")
        for grid_res in args.grid_res:
            r = run_arosics(args.arosics_python, reference, green, grid_res, truth, workdir)
            print(row(f"AROSICS COREG_LOCAL grid {grid_res} px (optical→optical)",
                      f"{r['points']} tie points ({r['tie_points_s']:.0f} s) + corrected GeoTIFF "
                      f"({r['correct_s']:.0f} s)", r, before), flush=True)
        r = run_ours(sar, truth, args.actors, workdir / "sar")
        print(row(f"SOMA, {args.actors} actors (SAR→optical; error includes the pair's own residual)",
                  "dense flow + certainty + co-registered SAR (Zarr)", r, before), flush=True)
        r = injected_part(r, Path(f"{SCENE}_sar.tif"), truth, args.actors, workdir / "sar_original")
        print(row(f"SOMA, {args.actors} actors (SAR→optical; injected part: minus a run on the original SAR)",
                  "the same", r, before), flush=True)
        r = run_ours(green, truth, args.actors, workdir / "green")
        print(row(f"SOMA, {args.actors} actors (optical→optical, out of domain)", "the same", r, before), flush=True)


if __name__ == "__main__":
    main()
