"""Score a run on the bundled sample archive against the misregistration injected into its SAR scenes.

The sidecar (`data/sample/archive-injected.json`, written by scripts/build_sample.py) is read only here,
by the tests and by the demo's final report: the flows themselves never see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.synthetic_warp import shifted_file_flow, smooth_field
from pipeline import StorageOptions
from pipeline.conventions import pixel_size
from pipeline.store import open_pair

SAMPLE_SIDECAR = Path(__file__).resolve().parents[1] / "data" / "sample" / "archive-injected.json"


@dataclass(frozen=True)
class Recovery:
    """Recovered vs injected misregistration of one pair, over its valid pixels."""

    pair_id: str
    injected_rmse_px: float
    """How far off the SAR was: RMSE of the injected flow."""
    error_median_px: float
    """Median |recovered flow - injected flow|."""
    error_rmse_px: float
    confident_share: float
    """Share of valid pixels whose certainty is at least the run's confident threshold."""
    error_median_confident_px: float


def injected_flow(entry: dict, shape: tuple[int, int], pixel_size_m: tuple[float, float]) -> np.ndarray:
    """The flow `(2, H, W)` that undoes one sidecar entry on its reference grid."""
    field = smooth_field(np.array(entry["field_grid_px"], dtype=np.float64), shape)
    east, north = entry["shift_m"]
    return shifted_file_flow((east / pixel_size_m[0], -north / pixel_size_m[1]), field)


def recovery(store: str, sar_item: str, sidecar: str | Path = SAMPLE_SIDECAR,
             storage: StorageOptions | None = None) -> Recovery | None:
    """Compare a pair's Zarr flow with what the sidecar says was injected into `sar_item`; None if not listed."""
    entry = json.loads(Path(sidecar).read_text())["scenes"].get(sar_item)
    if entry is None:
        return None
    ds = open_pair(store, storage or StorageOptions())
    flow = np.stack([ds.flow_x.values, ds.flow_y.values])
    valid = ds.valid.values & np.isfinite(flow).all(axis=0)
    confident = valid & (ds.certainty.values >= ds.attrs["pipeline_config"]["confident_certainty"])
    truth = injected_flow(entry, valid.shape, pixel_size(ds))
    error = np.hypot(*(flow - truth))

    def median(mask: np.ndarray) -> float:
        return float(np.median(error[mask])) if mask.any() else float("nan")

    return Recovery(ds.attrs["pair_id"], float(np.sqrt((truth[:, valid] ** 2).sum(axis=0).mean())), median(valid),
                    float(np.sqrt((error[valid] ** 2).mean())), float(confident.sum() / max(valid.sum(), 1)),
                    median(confident))
