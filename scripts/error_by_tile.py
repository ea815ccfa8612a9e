"""Where a checkpoint's error comes from, per Sentinel-2 tile: the mean error vector over cases (a bias the
network carries to a tile), the median case RMSE, and whether its certainty ranks pixels by their error.

Cases: the `residual` protocol's recipe on each tile's cleaned quadrants, drawn with a seed of their own
(not the evaluation's). Cited by docs/model_card.md (known limits).

Usage: python scripts/error_by_tile.py --data-root ../shared/data CKPT [--tiles T11SLT T11SMT] [--cases 16]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from evaluation.cases import build_cases, materialise
from evaluation.harness import flow_rmse
from model import Registrar

SEED = 7
"""Not the evaluation's seed (0): other transforms of the same quadrants."""
PIXEL_STRIDE = 37
"""Every n-th valid pixel enters the rank correlation (it is slow on millions)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding s1s2_volkov/")
    parser.add_argument("checkpoint")
    parser.add_argument("--tiles", nargs="+", default=["T11SLT", "T11SMT"])
    parser.add_argument("--cases", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    reg = Registrar.load(args.checkpoint, device="cpu")
    print("| tile | cases | mean error dx, dy (px) | median RMSE | CMR@1 / @3 | share of pixels < 1 px | "
          "mean certainty | certainty vs error (Spearman) |\n|---|---|---|---|---|---|---|---|")
    for tile in args.tiles:
        cases = materialise(build_cases(args.data_root, "residual", (tile,), "offset", SEED)[: args.cases],
                            args.data_root)
        bias, rmse, certainty, epe = [], [], [], []
        for m in cases:
            r = reg.register(m.optical, m.sar)
            ok, error = m.valid & r.valid, r.flow - m.flow
            bias.append(error[:, ok].mean(axis=1))
            rmse.append(flow_rmse(r.flow, m.flow, m.valid))
            certainty.append(r.certainty[ok][::PIXEL_STRIDE])
            epe.append(np.hypot(*error)[ok][::PIXEL_STRIDE])
        b, e, c, x = np.mean(bias, axis=0), np.array(rmse), np.concatenate(certainty), np.concatenate(epe)
        print(f"| {tile} | {len(cases)} | {b[0]:+.2f}, {b[1]:+.2f} | {np.median(e):.2f} px | "
              f"{(e < 1).mean():.0%} / {(e < 3).mean():.0%} | {(x < 1).mean():.0%} | {c.mean():.2f} | "
              f"{spearmanr(c, x).correlation:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
