"""Real Volkov Sentinel-1/2 pairs with each quadrant's own residual offset removed from the truth.

The pairs are misaligned by a few px (`offsets.csv`: two classical estimates per 512^2 quadrant).
A quadrant is used only where the two estimates agree within a tolerance; its offset is their mean,
and training crops add it to the ground truth (`Misregistration.pair_offset`), so the model is not
taught the dataset's own error.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

QUADRANT = 512
"""offsets.csv estimates one residual per 512 x 512 quadrant of each 1024 x 1024 pair."""
EDGE_HIT_PX = 14.9
"""offsets.csv values at the search edge (+-15-22 px) are failures, not offsets."""


@dataclass(frozen=True)
class Quadrant:
    """One 512^2 quadrant of a real pair, with its estimated residual."""

    pair_id: str
    tile: str
    x0: int
    y0: int
    offset: tuple[float, float]
    """(dx, dy): SAR(p + offset) shows the ground point of optical(p); mean of the two estimates."""
    disagreement: float
    """Distance between the two estimates, px."""
    agree: bool
    """offsets.csv `agree`: the estimates differ by <= 0.5 px and neither hit its search edge."""


@dataclass
class Pair:
    """A whole 1024^2 pair in memory: optical (3, H, W) uint8, SAR (1, H, W) uint8."""

    pair_id: str
    optical: np.ndarray
    sar: np.ndarray


def volkov_dir(data_root: str | Path) -> Path:
    """`data_root/s1s2_volkov`, with a clear error if it is not there."""
    path = Path(data_root) / "s1s2_volkov"
    if not (path / "offsets.csv").is_file() or not (path / "metadata.json").is_file():
        raise FileNotFoundError(f"{path}: expected the Volkov pairs with offsets.csv and metadata.json "
                                "(set --data-root or SOMA_DATA_ROOT to the folder holding s1s2_volkov/)")
    return path


def read_quadrants(data_root: str | Path) -> list[Quadrant]:
    """Every quadrant of offsets.csv with its tile and mean offset."""
    root = volkov_dir(data_root)
    tiles = {m["id"]: m["s2_tile"] for m in json.loads((root / "metadata.json").read_text())}
    out = []
    with open(root / "offsets.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["crop"] == "full":
                continue
            cfog = np.array([float(row["cfog_dx"]), float(row["cfog_dy"])])
            mi = np.array([float(row["mi_dx"]), float(row["mi_dy"])])
            edge = max(np.abs(cfog).max(), np.abs(mi).max()) >= EDGE_HIT_PX
            x0 = int(row["crop"].split("_x")[1].split("_")[0])
            y0 = int(row["crop"].split("_y")[1])
            mean = (cfog + mi) / 2
            out.append(Quadrant(row["id"], tiles[row["id"]], x0, y0, (float(mean[0]), float(mean[1])),
                                float("inf") if edge else float(np.linalg.norm(cfog - mi)),
                                row["agree"] == "1"))
    return out


def select_quadrants(quadrants: list[Quadrant], tiles: tuple[str, ...], max_disagreement: float | None = None,
                     agree_only: bool = False) -> list[Quadrant]:
    """Quadrants of `tiles` whose residual is trusted enough."""
    return [q for q in quadrants if q.tile in tiles
            and (not agree_only or q.agree)
            and (max_disagreement is None or q.disagreement <= max_disagreement)]


def load_pairs(data_root: str | Path, pair_ids: set[str]) -> dict[str, Pair]:
    """The named pairs, read whole (each about 4 MB in memory)."""
    root = volkov_dir(data_root)
    pairs = {}
    for pid in sorted(pair_ids):
        with rasterio.open(root / f"{pid}_opt.tif") as o, rasterio.open(root / f"{pid}_sar.tif") as s:
            pairs[pid] = Pair(pid, o.read(), s.read())
    return pairs
