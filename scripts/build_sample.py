"""Rebuild the product's bundled sample (data/sample/) from the shared real-data folder.

The sample keeps the shared folder's layout (`s1s2_volkov/` with its offsets.csv and metadata.json rows,
`bigearthnet/`), so it is itself a valid `--data-root` for `soma train` and `soma eval`. `archive/` is a
small STAC archive (see `build_archive`) that `make run` co-registers; `archive-injected.json` records
what was done to its SAR scenes.

Usage: python scripts/build_sample.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac
import rasterio
from rasterio.io import MemoryFile
from rasterio.merge import merge
from rasterio.transform import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from model.registrar import warp_numpy
from model.synthetic_warp import Misregistration, move_sar, random_field_grid, smooth_field

VOLKOV_PAIRS = ("142", "187")
"""Validation-tile (T11SMT) pairs whose two independent residual estimates agree (offsets.csv)."""
BIGEARTHNET_PAIRS = ("33UUP_87_48", "29SND_56_35")
"""Physical units: uint16 reflectance and float32 dB."""
SCENE_BLOCK = ("175", "176", "187", "188")
"""A 2 x 2 block of neighbouring validation-tile pairs (T11SMT, one S1 and one S2 acquisition), mosaicked
into one 2048 x 2048 scene for the pipeline's tests and demo."""
SCENE_NAME = "T11SMT_175-188"


def build(data_root: Path, out: Path) -> list[Path]:
    src, dst = data_root / "s1s2_volkov", out / "s1s2_volkov"
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for pid in VOLKOV_PAIRS:
        for kind in ("opt", "sar"):
            written.append(Path(shutil.copy2(src / f"{pid}_{kind}.tif", dst / f"{pid}_{kind}.tif")))
    with open(src / "offsets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst / "offsets.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["id"] in VOLKOV_PAIRS)
    meta = [m for m in json.loads((src / "metadata.json").read_text()) if m["id"] in VOLKOV_PAIRS]
    (dst / "metadata.json").write_text(json.dumps(meta, indent=1))
    written += [dst / "offsets.csv", dst / "metadata.json"]
    big = out / "bigearthnet"
    big.mkdir(parents=True, exist_ok=True)
    for pid in BIGEARTHNET_PAIRS:
        for kind in ("opt", "sar"):
            written.append(Path(shutil.copy2(data_root / "bigearthnet" / f"{pid}_{kind}.tif", big / f"{pid}_{kind}.tif")))
    written += build_scene(src, out / "scene")
    written += build_archive(data_root, out / "archive", out / "archive-injected.json")
    return written


def build_scene(volkov: Path, out: Path) -> list[Path]:
    """Mosaic `SCENE_BLOCK` into tiled, DEFLATE-compressed GeoTIFFs `scene/{SCENE_NAME}_{opt,sar}.tif`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("opt", "sar"):
        sources = [rasterio.open(volkov / f"{pid}_{kind}.tif") for pid in SCENE_BLOCK]
        try:
            mosaic, transform = merge(sources)
            profile = sources[0].profile
        finally:
            for s in sources:
                s.close()
        profile.update(driver="GTiff", height=mosaic.shape[1], width=mosaic.shape[2], transform=transform,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2)
        path = out / f"{SCENE_NAME}_{kind}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(mosaic)
        written.append(path)
    return written


@dataclass(frozen=True)
class ArchiveScene:
    """One scene pair of the sample archive and the misregistration injected into its SAR."""

    name: str
    fragments: tuple[str, ...]
    """Two Volkov pairs side by side (the scene is the central `VOLKOV_SCENE_WIDTH` columns of their mosaic,
    the seam down its middle), or one BigEarthNet pair."""
    source: str
    """`volkov` or `bigearthnet`."""
    optical_time: str
    sar_time: str
    shift_m: tuple[float, float]
    """Geotransform shift written into the SAR file: metres east, north."""
    field_amplitude_px: float
    repeats: tuple[tuple[str, tuple[float, float]], ...] = ()
    """Made-up later Sentinel-1 acquisitions of the scene, (time, shift_m): the same real SAR scene moved by its
    own smooth field and geotransform shift, so a cube of the scene has more than one time step. Not real
    acquisitions: the shared data holds one Sentinel-1 acquisition per scene (data/sample/README.md)."""


ARCHIVE_SCENES = (
    ArchiveScene("T11SMT_139-140", ("139", "140"), "volkov", "2020-11-04T18:35:41Z", "2020-11-07T13:52:41Z",
                 (23.0, 17.0), 1.5, repeats=(("2020-11-13T13:51:58Z", (-14.0, -21.0)),)),
    ArchiveScene("T11SMT_155-156", ("155", "156"), "volkov", "2020-11-04T18:35:41Z", "2020-11-07T13:52:41Z",
                 (-31.0, 12.0), 1.5),
    ArchiveScene("33UUP_87_48", ("33UUP_87_48",), "bigearthnet", "2017-06-13T10:10:31Z", "2017-06-15T16:58:12Z",
                 (15.0, -25.0), 1.0, repeats=(("2017-06-21T16:50:05Z", (-18.0, 22.0)),)),
    ArchiveScene("29SND_56_35", ("29SND_56_35",), "bigearthnet", "2017-08-07T11:21:11Z", "2017-08-10T18:36:40Z",
                 (-20.0, 20.0), 1.0),
)
"""Volkov fragments are T11SMT (held out from training) neighbours whose two residual estimates agree
(offsets.csv `full`, agree = 1). BigEarthNet files carry no dates: the sample assigns plausible ones (2017,
the dataset's span), two months apart so that a backfill has two chunks."""
FIELD_GRID_SIZE = 3
VOLKOV_SCENE_WIDTH = 1024
"""Keeps the archive small (the repo's sample stays under 30 MB) while every scene still spans a seam."""
ARCHIVE_SEED = 2026
REPEAT_SEED = 2027
"""The made-up repeats draw their fields from their own generator, so the other scenes stay as they were."""
SAR_NODATA_UINT8 = 0
"""Volkov SAR is uint8; the moved scene keeps uint8 with 0 as nodata (real 0s are raised to 1)."""
OPTICAL_ASSETS = {"volkov": ("red", "green", "blue"), "bigearthnet": ("red", "green", "blue", "nir")}
SAR_ASSETS = {"volkov": ("vh",), "bigearthnet": ("vv", "vh")}
REFLECTANCE_SCALE = 1e-4
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


def _agreed_offset(rows: list[dict], pair_id: str) -> tuple[float, float]:
    """The pair's own residual (dx, dy) px: the mean of the two estimates, which must agree (offsets.csv)."""
    row = next(r for r in rows if r["id"] == pair_id and r["crop"] == "full")
    if row["agree"] != "1":
        raise ValueError(f"pair {pair_id}: its residual estimates disagree; choose another fragment")
    return ((float(row["cfog_dx"]) + float(row["mi_dx"])) / 2, (float(row["cfog_dy"]) + float(row["mi_dy"])) / 2)


def _mosaic(datasets: list) -> tuple[np.ndarray, dict]:
    mosaic, transform = merge(datasets)
    profile = dict(datasets[0].profile) | {"height": mosaic.shape[1], "width": mosaic.shape[2],
                                           "transform": transform}
    return mosaic, profile


def _volkov_scene(volkov: Path, scene: ArchiveScene, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Optical and SAR of the scene, each SAR fragment first moved by its own agreed residual so the scene is
    aligned to about a pixel (what is left is the non-rigid part)."""
    opticals = [rasterio.open(volkov / f"{pid}_opt.tif") for pid in scene.fragments]
    memfiles, sars = [], []
    try:
        for pid in scene.fragments:
            with rasterio.open(volkov / f"{pid}_sar.tif") as src:
                sar, profile = src.read().astype(np.float32), src.profile
            dx, dy = _agreed_offset(rows, pid)
            flow = np.broadcast_to(np.array([dx, dy], np.float32)[:, None, None], (2, *sar.shape[-2:]))
            aligned = np.nan_to_num(warp_numpy(sar, np.ascontiguousarray(flow)), nan=0.0)  # sar(p + r) -> optical(p)
            memfile = MemoryFile()
            with memfile.open(**(profile | {"dtype": "float32"})) as dst:
                dst.write(aligned)
            memfiles.append(memfile)
            sars.append(memfile.open())
        optical, profile = _mosaic(opticals)
        sar, _ = _mosaic(sars)
        x0 = (optical.shape[-1] - VOLKOV_SCENE_WIDTH) // 2
        optical, sar = optical[..., x0 : x0 + VOLKOV_SCENE_WIDTH], sar[..., x0 : x0 + VOLKOV_SCENE_WIDTH]
        profile |= {"width": VOLKOV_SCENE_WIDTH, "transform": profile["transform"] * Affine.translation(x0, 0)}
    finally:
        for d in opticals + sars:
            d.close()
        for m in memfiles:
            m.close()
    return optical, sar, profile


def _write_cog(path: Path, band: np.ndarray, profile: dict, nodata: float | None) -> None:
    cog = {"driver": "COG", "dtype": str(band.dtype), "count": 1, "crs": profile["crs"],
           "transform": profile["transform"], "height": band.shape[0], "width": band.shape[1],
           "nodata": nodata, "compress": "deflate", "predictor": 2, "blocksize": 256}
    with rasterio.open(path, "w", **cog) as dst:
        dst.write(band, 1)


def _item(item_id: str, collection: str, when: str, profile: dict, platform: str) -> pystac.Item:
    bounds = transform_bounds(profile["crs"], "EPSG:4326",
                              *rasterio.transform.array_bounds(profile["height"], profile["width"],
                                                               profile["transform"]))
    item = pystac.Item(item_id, mapping(box(*bounds)), list(bounds),
                       dt.datetime.fromisoformat(when.replace("Z", "+00:00")),
                       {"platform": platform, "proj:code": profile["crs"].to_string()},
                       stac_extensions=[RASTER_EXTENSION, PROJECTION_EXTENSION], collection=collection)
    return item


def _add_assets(item: pystac.Item, names: tuple[str, ...], data: np.ndarray, profile: dict, nodata: float | None,
                scale: float | None, unit: str | None, files: dict) -> None:
    """One COG asset per band of `data` (`raster:bands` with its type, nodata, scale and unit), the band kept in
    `files` to be written beside the Item."""
    for band, name in enumerate(names):
        bands = {"data_type": str(data.dtype), "nodata": "nan" if nodata != nodata else nodata}
        if scale:
            bands |= {"scale": scale, "offset": 0.0}
        if unit:
            bands |= {"unit": unit}
        item.add_asset(name, pystac.Asset(f"./{name}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                          extra_fields={"raster:bands": [bands]}))
        files[(item.id, name)] = (data[band], profile, nodata)


def build_archive(data_root: Path, out: Path, sidecar: Path) -> list[Path]:
    """A static STAC catalog of `ARCHIVE_SCENES` as public Sentinel archives lay them out (one COG per band,
    collections `sentinel-2-l2a` and `sentinel-1-grd`), each SAR scene misregistered by a known geotransform
    shift plus a smooth field, recorded in `sidecar` (read only by tests and the demo's report)."""
    if out.exists():
        shutil.rmtree(out)
    rows = list(csv.DictReader(open(data_root / "s1s2_volkov" / "offsets.csv", newline="")))
    rng, repeat_rng = np.random.default_rng(ARCHIVE_SEED), np.random.default_rng(REPEAT_SEED)
    catalog = pystac.Catalog("soma-sample-archive", "Real Sentinel-1/2 scene pairs for the SOMA demo: "
                             "Contains modified Copernicus Sentinel data 2020; BigEarthNet (CDLA-Permissive-1.0).")
    collections = {c: pystac.Collection(c, f"Sample {c} scenes", pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])), license="other")
        for c in ("sentinel-2-l2a", "sentinel-1-grd")}
    for c in collections.values():
        catalog.add_child(c)
    injected, files = {}, {}
    for scene in ARCHIVE_SCENES:
        if scene.source == "volkov":
            optical, sar, profile = _volkov_scene(data_root / "s1s2_volkov", scene, rows)
            opt_nodata, sar_dtype, sar_nodata = 0, "uint8", SAR_NODATA_UINT8
        else:
            base = data_root / "bigearthnet" / scene.fragments[0]
            with rasterio.open(f"{base}_opt.tif") as o, rasterio.open(f"{base}_sar.tif") as s:
                optical, sar, profile = o.read(), s.read().astype(np.float32), o.profile
            opt_nodata, sar_dtype, sar_nodata = 0, "float32", float("nan")
        s2_id = f"S2_{scene.optical_time[:10].replace('-', '')}_{scene.name}"
        s2 = _item(s2_id, "sentinel-2-l2a", scene.optical_time, profile, "sentinel-2a")
        _add_assets(s2, OPTICAL_ASSETS[scene.source], optical, profile, opt_nodata,
                    REFLECTANCE_SCALE if scene.source == "bigearthnet" else None, None, files)
        collections["sentinel-2-l2a"].add_item(s2)
        acquisitions = [(scene.sar_time, scene.shift_m, rng, None)]
        acquisitions += [(when, shift, repeat_rng, "made up from the real scene (data/sample/README.md)")
                         for when, shift in scene.repeats]
        for when, shift_m, generator, note in acquisitions:
            grid = random_field_grid(generator, scene.field_amplitude_px, FIELD_GRID_SIZE)
            moved = move_sar(sar, Misregistration(np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                                                  smooth_field(grid, sar.shape[-2:])))
            if sar_dtype == "uint8":
                moved = np.where(np.isfinite(moved), np.clip(np.rint(moved), 1, 255),
                                 SAR_NODATA_UINT8).astype(np.uint8)
            sar_profile = profile | {"transform": Affine.translation(*shift_m) @ profile["transform"]}
            s1_id = f"S1_{when[:10].replace('-', '')}_{scene.name}"
            s1 = _item(s1_id, "sentinel-1-grd", when, sar_profile, "sentinel-1a" if note is None else "sentinel-1b")
            _add_assets(s1, SAR_ASSETS[scene.source], moved, sar_profile, sar_nodata, None,
                        "dB" if scene.source == "bigearthnet" else "stretched 0-255 (not physical)", files)
            collections["sentinel-1-grd"].add_item(s1)
            injected[s1_id] = {"optical_item": s2_id, "shift_m": list(shift_m), "field_grid_px": grid.tolist(),
                               "fragments": list(scene.fragments),
                               "own_residual_removed_px": {p: list(_agreed_offset(rows, p)) for p in scene.fragments}
                               if scene.source == "volkov" else {}}
            if note is not None:
                injected[s1_id]["synthetic"] = note
    for c in collections.values():
        c.update_extent_from_items()
    catalog.normalize_hrefs(str(out))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    written = [Path(catalog.self_href)]
    for item in catalog.get_items(recursive=True):
        folder = Path(item.self_href).parent
        written.append(Path(item.self_href))
        for name in item.assets:
            band, prof, nodata = files[(item.id, name)]
            _write_cog(folder / f"{name}.tif", band, prof, nodata)
            written.append(folder / f"{name}.tif")
    sidecar.write_text(json.dumps({
        "about": "Misregistration injected into each SAR scene of the sample archive: the SAR was moved by a "
                 "smooth field (px, on a grid spanning the scene; moved(q) = sar(q + field(q))) and written with "
                 "its geotransform shifted by shift_m (metres east, north). Volkov fragments had their own "
                 "agreed residual removed first. Read only by tests and the demo's report.",
        "scenes": injected}, indent=1))
    return written + [sidecar]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding s1s2_volkov/ and bigearthnet/")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample")
    args = parser.parse_args()
    for p in build(args.data_root, args.out):
        print(p)
