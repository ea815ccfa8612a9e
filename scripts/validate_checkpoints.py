"""Checkpoints side by side on the validation tile's fixed cases (the training recipe's, never the
evaluation cases), at the training range and at a geocoding-residual-like range: how a second stage is
chosen (docs/model_card.md).

Usage: python scripts/validate_checkpoints.py --data-root ../shared/data CKPT [CKPT ...]
"""

from __future__ import annotations

import argparse

import torch

from model import Registrar
from model.synthetic_warp import MisregistrationRange
from training.config import TrainConfig
from training.loop import validate, validation_batches

RANGES = {
    "training range": MisregistrationRange(max_translation_px=25.0),
    "residual-like": MisregistrationRange(max_rotation_deg=1.0, max_translation_px=8.0, scale_range=(0.98, 1.02),
                                          max_shear=0.0, field_amplitude_px=1.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding s1s2_volkov/")
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| validation cases | checkpoint | val loss | median RMSE | CMR@1 / @3 / @5 |\n|---|---|---|---|---|")
    for name, warp in RANGES.items():
        cases = validation_batches(TrainConfig(data_root=args.data_root, warp=warp))
        for path in args.checkpoints:
            r = validate(Registrar.load(path, device="cpu").net, cases)
            print(f"| {name} | {path} | {r['val_loss']:.2f} | {r['val_median_rmse']:.2f} px | "
                  f"{r['val_cmr@1']:.0%} / {r['val_cmr@3']:.0%} / {r['val_cmr@5']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
