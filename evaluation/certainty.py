"""How well the certainty means P(EPE < 1 px): per-pixel samples of certainty, features and end-point error
from seeded cases, a 10-bin reliability table, the expected calibration error and Spearman's rank
correlation with the error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from model import Registrar

from .cases import Materialised

RELIABILITY_BINS = 10
CONFIDENT = 0.5
"""Certainty at and above which a pixel counts as confident (the pipeline's default)."""


@dataclass
class PixelSamples:
    """Per-pixel samples pooled over cases: certainty, features `(N, F)`, end-point error (px) and case index."""

    certainty: np.ndarray
    features: np.ndarray
    epe: np.ndarray
    case: np.ndarray
    rmse: np.ndarray
    """Per case, the flow RMSE (px)."""
    chosen: list[str]


def sample_pixels(registrar: Registrar, cases: list[Materialised], per_case: int, seed: int,
                  progress: Callable[[str], None] | None = None) -> PixelSamples:
    """Register each case and draw `per_case` of its valid pixels at random (seeded)."""
    rng = np.random.default_rng(seed)
    cert, feats, epe, index, rmse, chosen = [], [], [], [], [], []
    for i, m in enumerate(cases):
        r = registrar.register_batch([m.optical], [m.sar], keep_features=True)[0]
        valid = m.valid & r.valid
        error = np.sqrt(((r.flow - m.flow) ** 2).sum(axis=0))
        rmse.append(float(np.sqrt((error[m.valid] ** 2).mean())))
        chosen.append(r.chosen)
        ys, xs = np.nonzero(valid)
        pick = rng.choice(len(ys), size=min(per_case, len(ys)), replace=False)
        ys, xs = ys[pick], xs[pick]
        cert.append(r.certainty[ys, xs])
        feats.append(r.features[:, ys, xs].T)
        epe.append(error[ys, xs])
        index.append(np.full(len(ys), i))
        if progress:
            progress(f"{i + 1}/{len(cases)} {m.case.case_id}: rmse {rmse[-1]:.2f} px ({r.chosen})")
    return PixelSamples(np.concatenate(cert), np.concatenate(feats), np.concatenate(epe), np.concatenate(index),
                        np.array(rmse), chosen)


@dataclass(frozen=True)
class Reliability:
    """Calibration of a certainty against the outcome EPE < 1 px."""

    bins: list[tuple[float, float, int, float, float]]
    """Per bin: lower and upper certainty, pixels, mean certainty, observed share within 1 px."""
    ece: float
    """Expected calibration error: the pixel-weighted mean |mean certainty - observed share| over bins."""
    spearman: float
    """Spearman's rank correlation of certainty with the end-point error (negative is good)."""
    confident_share: float
    """Share of pixels with certainty >= `CONFIDENT`."""
    confident_precision: float
    """Among those, the share truly within 1 px (NaN when there are none)."""


def reliability(certainty: np.ndarray, epe: np.ndarray, bins: int = RELIABILITY_BINS) -> Reliability:
    """Reliability of `certainty` `(N,)` for the outcome ``epe < 1`` over equal-width certainty bins."""
    from scipy.stats import spearmanr

    correct = epe < 1.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(certainty, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        mean_c = float(certainty[sel].mean()) if n else float("nan")
        observed = float(correct[sel].mean()) if n else float("nan")
        rows.append((float(edges[b]), float(edges[b + 1]), n, mean_c, observed))
        if n:
            ece += n / len(certainty) * abs(mean_c - observed)
    confident = certainty >= CONFIDENT
    return Reliability(rows, float(ece), float(spearmanr(certainty, epe).statistic), float(confident.mean()),
                       float(correct[confident].mean()) if confident.any() else float("nan"))


def reliability_markdown(r: Reliability) -> str:
    """The reliability table and its summary figures as markdown."""
    lines = ["| certainty | pixels | mean certainty | observed share EPE < 1 px |", "|---|---|---|---|"]
    for lo, hi, n, mean_c, observed in r.bins:
        lines.append(f"| {lo:.1f}–{hi:.1f} | {n} | {mean_c:.3f} | {observed:.3f} |" if n else
                     f"| {lo:.1f}–{hi:.1f} | 0 | – | – |")
    lines.append("")
    lines.append(f"ECE {r.ece:.3f}; Spearman(certainty, EPE) {r.spearman:.3f}; certainty >= {CONFIDENT}: "
                 f"{r.confident_share:.1%} of pixels, {r.confident_precision:.1%} of them within 1 px.")
    return "\n".join(lines) + "\n"


def main() -> None:
    """`python -m evaluation.certainty --data-root DIR [--protocol P] [--limit N]`: the reliability table of
    the default Registrar's certainty on the held-out cases (the same seeded cases as `soma eval`)."""
    import argparse
    from pathlib import Path

    from training.config import default_data_root

    from .cases import build_cases, materialise
    from .run import HELD_OUT_TILES

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--protocol", default="residual")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--pixels", type=int, default=4000, help="pixels drawn per case")
    args = parser.parse_args()
    if args.data_root is None:
        parser.error("give --data-root or set SOMA_DATA_ROOT")
    cases = build_cases(args.data_root, args.protocol, HELD_OUT_TILES, "offset", seed=0)[: args.limit]
    samples = sample_pixels(Registrar.load(device="cpu"), materialise(cases, args.data_root), args.pixels, seed=0,
                            progress=print)
    print(f"{args.protocol}, {len(cases)} held-out cases ({', '.join(HELD_OUT_TILES)}), {len(samples.epe)} pixels; "
          f"case RMSE median {np.median(samples.rmse):.2f} px, CMR@1/3 {np.mean(samples.rmse < 1):.0%}/"
          f"{np.mean(samples.rmse < 3):.0%}")
    print(reliability_markdown(reliability(samples.certainty, samples.epe)))
    print("| case | RMSE (px) | guard | confident share | share within 1 px |\n|---|---|---|---|---|")
    for i, c in enumerate(cases):
        sel = samples.case == i
        print(f"| {c.case_id} | {samples.rmse[i]:.2f} | {samples.chosen[i]} | "
              f"{(samples.certainty[sel] >= CONFIDENT).mean():.2f} | {(samples.epe[sel] < 1).mean():.2f} |")


if __name__ == "__main__":
    main()
