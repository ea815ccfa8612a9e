"""`soma demo`: a known misregistration injected into a bundled real pair, then recovered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio

from model import Registrar
from model.synthetic_warp import Misregistration, move_sar, true_flow
from training.data import QUADRANT, read_quadrants

DEMO_PAIR = "187"
DEMO_QUADRANT = (512, 0)
"""(x0, y0) of the quadrant of pair 187 whose two independent residual estimates agree (offsets.csv)."""


def run_demo(sample: Path, shift: tuple[float, float], checkpoint: Path | None, echo: Callable[[str], None]) -> float:
    """Inject `shift` (px) into the demo pair's SAR, register, print and return the flow RMSE in px."""
    opt_path = sample / "s1s2_volkov" / f"{DEMO_PAIR}_opt.tif"
    sar_path = sample / "s1s2_volkov" / f"{DEMO_PAIR}_sar.tif"
    quadrant = next(q for q in read_quadrants(sample) if q.pair_id == DEMO_PAIR and (q.x0, q.y0) == DEMO_QUADRANT)
    window = (slice(None), slice(quadrant.y0, quadrant.y0 + QUADRANT), slice(quadrant.x0, quadrant.x0 + QUADRANT))
    with rasterio.open(opt_path) as src:
        optical = src.read()[window]
    with rasterio.open(sar_path) as src:
        sar = src.read()[window].astype(np.float32)
    # moved(q) = sar(q - shift): the SAR content moves by +shift, so the flow that undoes it is +shift (+ offset)
    mis = Misregistration(affine=np.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]]]),
                          pair_offset=quadrant.offset)
    moved = move_sar(sar, mis)
    truth, defined = true_flow(mis, optical.shape[-2:])

    reg = Registrar.load(checkpoint)
    echo(f"pair        {opt_path.name} + {sar_path.name}, quadrant x {quadrant.x0}-{quadrant.x0 + QUADRANT - 1}, "
         f"y {quadrant.y0}-{quadrant.y0 + QUADRANT - 1}")
    echo(f"model       {reg.config.name} ({reg.checkpoint_sha256[:12]}) on {reg.device}")
    start = time.perf_counter()
    result = reg.register(optical, moved)
    seconds = time.perf_counter() - start
    ok = result.valid & defined
    err = np.linalg.norm(result.flow - truth, axis=0)[ok]
    rmse = float(np.sqrt(np.mean(err**2)))
    injected = np.array(shift) + np.array(quadrant.offset)
    recovered = np.median(result.flow[:, ok], axis=1)
    echo(f"injected    dx {injected[0]:+.2f} px, dy {injected[1]:+.2f} px (shift {shift} + the pair's own offset)")
    echo(f"recovered   dx {recovered[0]:+.2f} px, dy {recovered[1]:+.2f} px (median flow)")
    echo(f"flow RMSE   {rmse:.2f} px over {ok.mean():.0%} of pixels; median certainty "
         f"{np.median(result.certainty[ok]):.2f}; {seconds:.1f} s")
    return rmse
