"""Seconds per 512^2 tile of the Registrar's stages: network, refinement with its guard, certainty features
and calibration, on a bundled real pair (CPU, and GPU when present).

Usage: python benchmarks/registrar_stages.py [--size 512] [--batch 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from model import Registrar
from model.certainty import certainty_features
from model.geometry import affine_to_flow
from model.normalize import prepare_optical, prepare_sar
from model.refine import refine_guarded
from model.rotation_search import sweep_start

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "s1s2_volkov"


def tiles(size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A batch of the bundled pair 187's top-left crops, prepared as the Registrar prepares them."""
    with rasterio.open(SAMPLE / "187_opt.tif") as o, rasterio.open(SAMPLE / "187_sar.tif") as s:
        optical, sar = o.read()[:, :size, :size], s.read()[:, :size, :size]
    po, ps = prepare_optical(optical), prepare_sar(sar)
    stack = lambda a: torch.from_numpy(np.stack([a] * batch)).to(device)  # noqa: E731
    return stack(po.image), stack(po.valid), stack(ps.image), stack(ps.valid)


def timed(fn, device: torch.device, repeats: int):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, (time.perf_counter() - start) / repeats


@torch.inference_mode()
def measure(device: torch.device, size: int, batch: int, repeats: int) -> dict[str, float]:
    reg = Registrar.load(device=device)
    o, ov, s, sv = tiles(size, batch, device)
    out, network = timed(lambda: reg.net(o, s, ov, sv, robust=True), device, repeats)
    start = affine_to_flow(out.affine.float(), (size, size))
    _, sweep = timed(lambda: sweep_start(reg.descriptor, o, ov, s, sv, start, reg.refinement), device, repeats)
    guarded, refinement = timed(lambda: refine_guarded(reg.descriptor, o, ov, s, sv, start, reg.refinement),
                                device, repeats)

    def certainty() -> torch.Tensor:
        f = certainty_features(reg.descriptor, o, ov, s, sv, guarded.flow, out.flow, out.certainty_logit,
                               guarded.variance)
        return reg.calibration.probability(f) if reg.calibration is not None else f

    _, features = timed(certainty, device, repeats)
    return {"network": network / batch, "sweep": sweep / batch, "refinement": refinement / batch,
            "certainty": features / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.size}², batch {args.batch}")
    print(f"{'device':<6} {'network s':>10} {'sweep s':>8} {'refine s':>9} {'certainty s':>12} {'total s':>8} {'beyond network':>15}")
    for device in devices:
        m = measure(device, args.size, args.batch, args.repeats)
        total = sum(m.values())
        print(f"{device.type:<6} {m['network']:>10.3f} {m['sweep']:>8.3f} {m['refinement']:>9.3f} {m['certainty']:>12.3f} "
              f"{total:>8.3f} {(total - m['network']) / total:>15.0%}")


if __name__ == "__main__":
    main()
