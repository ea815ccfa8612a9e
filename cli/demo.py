"""`soma demo`: a known misregistration injected into a bundled real pair, then recovered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio

from model import Registrar
from model.synthetic_warp import Misregistration, move_sar, true_flow

DEMO_PAIR = "volkov_187"
DEMO_WINDOW = (slice(0, 512), slice(512, 1024))
"""The quadrant of pair 187 whose two independent residual estimates agree."""
DEMO_PAIR_OFFSET = (2.0, 2.0)
"""That quadrant's own SAR-optical residual (offsets.csv: CFOG 1.98, 2.01; MI 2.0, 2.0)."""


def run_demo(sample: Path, shift: tuple[float, float], checkpoint: Path | None, echo: Callable[[str], None]) -> float:
    """Inject `shift` (px) into the demo pair's SAR, register, print and return the flow RMSE in px."""
    opt_path, sar_path = sample / f"{DEMO_PAIR}_opt.tif", sample / f"{DEMO_PAIR}_sar.tif"
    with rasterio.open(opt_path) as src:
        optical = src.read()[:, DEMO_WINDOW[0], DEMO_WINDOW[1]]
    with rasterio.open(sar_path) as src:
        sar = src.read()[:, DEMO_WINDOW[0], DEMO_WINDOW[1]].astype(np.float32)
    # moved(q) = sar(q - shift): the SAR content moves by +shift, so the flow that undoes it is +shift (+ offset)
    mis = Misregistration(affine=np.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]]]),
                          pair_offset=DEMO_PAIR_OFFSET)
    moved = move_sar(sar, mis)
    moved[:, move_sar(np.ones_like(sar[:1]), mis)[0] < 1 - 1e-3] = np.nan
    truth, defined = true_flow(mis, optical.shape[-2:])

    reg = Registrar.load(checkpoint)
    echo(f"pair        {opt_path.name} + {sar_path.name}, window rows 0-511, cols 512-1023")
    echo(f"model       {reg.config.name} ({reg.checkpoint_sha256[:12]}) on {reg.device}")
    start = time.perf_counter()
    result = reg.register(optical, moved)
    seconds = time.perf_counter() - start
    ok = result.valid & defined
    err = np.linalg.norm(result.flow - truth, axis=0)[ok]
    rmse = float(np.sqrt(np.mean(err**2)))
    injected = np.array(shift) + np.array(DEMO_PAIR_OFFSET)
    recovered = np.median(result.flow[:, ok], axis=1)
    echo(f"injected    dx {injected[0]:+.2f} px, dy {injected[1]:+.2f} px (shift {shift} + the pair's own offset)")
    echo(f"recovered   dx {recovered[0]:+.2f} px, dy {recovered[1]:+.2f} px (median flow)")
    echo(f"flow RMSE   {rmse:.2f} px over {ok.mean():.0%} of pixels; median certainty "
         f"{np.median(result.certainty[ok]):.2f}; {seconds:.1f} s")
    return rmse
