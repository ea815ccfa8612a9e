"""Rebuild the product's bundled sample (data/sample/) from the shared real-data folder.

The sample keeps the shared folder's layout (`s1s2_volkov/` with its offsets.csv and metadata.json rows,
`bigearthnet/`), so it is itself a valid `--data-root` for `soma train` and `soma eval`.

Usage: python scripts/build_sample.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import rasterio
from rasterio.merge import merge

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding s1s2_volkov/ and bigearthnet/")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample")
    args = parser.parse_args()
    for p in build(args.data_root, args.out):
        print(p)
