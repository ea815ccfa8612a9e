"""Fit the certainty calibration on training-tile cases and store it beside the checkpoint.

    python -m training.calibrate_certainty --data-root ../shared/data [--checkpoint PATH]

Cases are seeded draws of both protocols over the training tiles only (never the held-out tile); the fit
is a logistic score of the standardised features, then an isotonic table of P(EPE < 1 px) on that score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from evaluation.cases import build_cases, materialise
from evaluation.certainty import CONFIDENT, reliability, reliability_markdown, sample_pixels
from model import Registrar
from model.checkpoint import file_sha256, load_network
from model.certainty import CertaintyCalibration, calibration_path, fit_isotonic, fit_logistic
from model.config import RefineConfig
from model.registrar import BUNDLED_CHECKPOINT

from .config import default_data_root

TRAIN_TILES = ("T11SLT",)
PROTOCOLS = ("residual", "soma")
SEED = 11
"""Seed of the calibration cases (the held-out evaluation uses its own tile and seed)."""
PIXELS_PER_CASE = 4000


def calibrate(data_root: str | Path, checkpoint: Path, cases_per_protocol: int, echo=print,
              samples_path: Path | None = None) -> CertaintyCalibration:
    """Fit a calibration for `checkpoint` with the default refinement on training-tile cases."""
    refinement = RefineConfig()
    net, _ = load_network(checkpoint)  # not Registrar.load: an earlier calibration beside it plays no part
    registrar = Registrar(net, torch.device("cpu"), file_sha256(checkpoint), refinement)
    cases = [c for p in PROTOCOLS for c in build_cases(data_root, p, TRAIN_TILES, "offset", SEED)[:cases_per_protocol]]
    samples = sample_pixels(registrar, materialise(cases, data_root), PIXELS_PER_CASE, SEED, echo)
    if samples_path is not None:
        np.savez(samples_path, features=samples.features, epe=samples.epe, case=samples.case,
                 pair=np.array([c.pair_id for c in cases]), chosen=np.array(samples.chosen))
    # A tile the guard leaves uncorrected gets certainty 0 whatever its features: it does not inform the fit.
    fitted_cases = np.array([c != "identity" for c in samples.chosen])
    keep = fitted_cases[samples.case]
    features, epe = samples.features[keep], samples.epe[keep]
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    x = (features - mean) / scale
    y = (epe < 1.0).astype(np.float64)
    weights, bias = fit_logistic(x, y)
    score = x @ weights + bias
    knots, probs = fit_isotonic(score, y)
    calibration = CertaintyCalibration(
        mean=tuple(map(float, mean)), scale=tuple(map(float, scale)), weights=tuple(map(float, weights)),
        bias=bias, score_knots=tuple(map(float, knots)), probability_knots=tuple(map(float, probs)),
        checkpoint_sha256=registrar.checkpoint_sha256, refinement=refinement.to_dict(),
        fitted_on=f"tiles {','.join(TRAIN_TILES)}, protocols {','.join(PROTOCOLS)}, {int(fitted_cases.sum())} of "
                  f"{len(cases)} cases (the rest left uncorrected by the guard), {len(y)} pixels, seed {SEED}")
    fitted = calibration.probability(torch.from_numpy(features.T[None, :, :, None]).float())[0, :, 0].numpy()
    echo(f"weights {np.round(weights, 3).tolist()} over {list(calibration.features)}")
    echo("on the calibration cases themselves:\n" + reliability_markdown(reliability(fitted, epe)))
    echo("| case | RMSE (px) | guard | confident share |\n|---|---|---|---|")
    case = samples.case[keep]
    for i, c in enumerate(cases):
        share = (fitted[case == i] >= CONFIDENT).mean() if (case == i).any() else 0.0
        echo(f"| {c.case_id} | {samples.rmse[i]:.2f} | {samples.chosen[i]} | {share:.2f} |")
    return calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--checkpoint", type=Path, default=BUNDLED_CHECKPOINT)
    parser.add_argument("--cases", type=int, default=16, help="cases per protocol")
    parser.add_argument("--samples", type=Path, default=None, help="also save the pixel samples here (.npz)")
    args = parser.parse_args()
    if args.data_root is None:
        parser.error("give --data-root or set SOMA_DATA_ROOT")
    calibration = calibrate(args.data_root, args.checkpoint, args.cases, samples_path=args.samples)
    print(f"wrote {calibration.save(calibration_path(args.checkpoint))}")


if __name__ == "__main__":
    main()
