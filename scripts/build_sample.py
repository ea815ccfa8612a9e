"""Rebuild the product's bundled sample (data/sample/) from the shared real-data folder.

Usage: python scripts/build_sample.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

VOLKOV_PAIRS = ("142", "187")
"""Validation-tile (T11SMT) pairs whose two independent residual estimates agree (offsets.csv)."""
BIGEARTHNET_PAIRS = ("33UUP_87_48", "29SND_56_35")
"""Physical units: uint16 reflectance and float32 dB."""


def build(data_root: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pid in VOLKOV_PAIRS:
        for kind in ("opt", "sar"):
            written.append(Path(shutil.copy2(data_root / "s1s2_volkov" / f"{pid}_{kind}.tif",
                                             out / f"volkov_{pid}_{kind}.tif")))
    for pid in BIGEARTHNET_PAIRS:
        for kind in ("opt", "sar"):
            written.append(Path(shutil.copy2(data_root / "bigearthnet" / f"{pid}_{kind}.tif",
                                             out / f"bigearthnet_{pid}_{kind}.tif")))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding s1s2_volkov/ and bigearthnet/")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "sample")
    args = parser.parse_args()
    for p in build(args.data_root, args.out):
        print(p)
