"""How well one translation per quadrant describes a pair's own misalignment: CFOG translations of the four
256^2 sub-crops of each offset-cleaned quadrant, against the quadrant's offsets.csv translation (the
`offset` truth of `soma eval`). No model is involved. Cited by docs/results.md (ground truth).

Usage: python scripts/truth_floor.py --data-root ../shared/data [--tile T11SLT]
"""

from __future__ import annotations

import argparse

import numpy as np

from evaluation.baselines import _grey, _sar, _ssd_match, cfog_descriptor
from training.data import QUADRANT, load_pairs, read_quadrants, select_quadrants

SUB = QUADRANT // 2
MARGIN = 24
"""The template is the sub-crop less this margin, searched inside the sub-crop: +-24 px, all inside the pair."""


def sub_crop_offsets(optical: np.ndarray, sar: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """`(4, 2)` CFOG (dx, dy) of the quadrant's sub-crops (NaN for an edge hit)."""
    o, _ = _grey(optical[:, y0 : y0 + QUADRANT, x0 : x0 + QUADRANT])
    s, _ = _sar(sar.astype(np.float32))
    do, ds = cfog_descriptor(o), cfog_descriptor(s)
    out = []
    for sy in (0, SUB):
        for sx in (0, SUB):
            template = do[:, sy + MARGIN : sy + SUB - MARGIN, sx + MARGIN : sx + SUB - MARGIN]
            dx, dy, _ = _ssd_match(template, ds[:, y0 + sy : y0 + sy + SUB, x0 + sx : x0 + sx + SUB])
            d = np.array([dx - MARGIN, dy - MARGIN])
            out.append(d if np.abs(d).max() < MARGIN - 1 else np.full(2, np.nan))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--tile", default="T11SLT")
    args = parser.parse_args()
    quadrants = select_quadrants(read_quadrants(args.data_root), (args.tile,), agree_only=True)
    pairs = load_pairs(args.data_root, {q.pair_id for q in quadrants})
    spread = []
    for q in quadrants:
        e = sub_crop_offsets(pairs[q.pair_id].optical, pairs[q.pair_id].sar, q.x0, q.y0)
        dev = np.hypot(*(e - np.array(q.offset)).T)
        spread.append(float(np.sqrt(np.nanmean(dev**2))))
        print(f"{q.pair_id} x{q.x0} y{q.y0}: offset ({q.offset[0]:.2f}, {q.offset[1]:.2f}) sub-crops "
              + " ".join(f"({a:.1f}, {b:.1f})" for a, b in e) + f"  RMS departure {spread[-1]:.2f} px")
    a = np.array(spread)
    print(f"{args.tile}: {len(a)} quadrants; sub-crop RMS departure from the quadrant's translation: median "
          f"{np.median(a):.2f} px, > 1 px on {(a > 1).mean():.0%}, > 0.5 px on {(a > 0.5).mean():.0%}")


if __name__ == "__main__":
    main()
