"""Per-pixel certainty from what the refinement sees, calibrated so that it reads as P(EPE < 1 px).

Convention:
    - features are `(B, F, H, W)` float32 in `FEATURES` order, computed after the guard's choice;
    - a calibration standardises them, takes a linear score (a logistic fit) and maps the score through a
      monotone table (isotonic regression of the outcome EPE < 1 px on the score), both fitted on
      training-tile cases (`training/calibrate_certainty.py`);
    - it belongs to one checkpoint and one refinement config, and is stored beside the checkpoint as
      ``<checkpoint stem>.calibration.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CheckpointError
from .refine import norm_floor, unit, warped_sar
from .similarity import Descriptor, erode, masked_mean
from .structure import gaussian_kernel

FEATURES = ("network_logit", "local_cost", "log_curvature", "stage_disagreement_px", "tile_cost",
            "log_posterior_variance")
"""What each pixel's certainty is computed from: the network's own certainty logit; the descriptor cost
after alignment, averaged over a window; the log of the smallest eigenvalue of the reference descriptor's
structure tensor over that window (the curvature of the cost against a local shift: low along an edge or
on flat ground); how far the final flow is from the network's dense flow; the tile's mean cost; the log of
the refinement's posterior variance of the pixel's displacement (how well the fitted deformation is pinned
down there, `model.refine.Refined.variance`)."""
WINDOW_SIGMA_PX = 8.0
"""Gaussian window of the local features, px."""
CURVATURE_FLOOR = 1e-6
"""Added before the log of the structure tensor's smallest eigenvalue."""
VARIANCE_FLOOR = 1e-12
"""Added before the log of the posterior variance."""
LOGIT_LIMIT = 20.0
"""The network's logit is clipped to +-this (masked pixels carry a huge negative logit)."""
CALIBRATION_SUFFIX = ".calibration.json"
FORMAT = "soma-certainty-calibration/1"


def window_mean(values: torch.Tensor, weight: torch.Tensor, sigma: float = WINDOW_SIGMA_PX) -> torch.Tensor:
    """Gaussian-weighted local mean of `values` `(B, C, H, W)` over pixels of `weight` `(B, H, W)` (separable
    normalised convolution; the value itself where a window holds no weight)."""
    radius = math.ceil(2.5 * sigma)
    g = gaussian_kernel(sigma, radius)[radius].to(values)
    w = weight.unsqueeze(1).to(values)

    def blur(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                     groups=c)
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                        groups=c)

    total = blur(w)
    return torch.where(total > 1e-6, blur(values * w) / total.clamp_min(1e-6), values)


def smallest_eigenvalue(descriptor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`(B, 1, H, W)` smallest eigenvalue of the windowed structure tensor ``sum_k grad d_k grad d_k^T`` of a
    descriptor `(B, K, H, W)`: the Gauss-Newton curvature of its SSD against the worst-constrained shift."""
    padded = F.pad(descriptor, (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2.0
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2.0
    tensor = torch.stack([(dx * dx).sum(1), (dx * dy).sum(1), (dy * dy).sum(1)], dim=1)
    a, b, c = window_mean(tensor, weight).unbind(1)
    return ((a + c) / 2 - (((a - c) / 2) ** 2 + b**2).sqrt()).clamp_min(0.0).unsqueeze(1)


def certainty_features(descriptor: Descriptor, optical: torch.Tensor, optical_valid: torch.Tensor,
                       sar: torch.Tensor, sar_valid: torch.Tensor, flow: torch.Tensor, network_flow: torch.Tensor,
                       network_logit: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """`(B, F, H, W)` features (`FEATURES`) of the final `flow` `(B, 2, H, W)` for normalised tiles and masks
    `(B, H, W)`, given the network's dense flow, its certainty logit and the refinement's posterior
    variance `(B, H, W)`."""
    ref = descriptor(optical)
    floor = norm_floor(ref)
    ref = unit(ref, floor)
    moved, moved_valid = warped_sar(sar, sar_valid, flow)
    weight = (erode(optical_valid, descriptor.radius) & erode(moved_valid, descriptor.radius)).float()
    cost = descriptor.pixel_cost(ref, unit(descriptor(moved), floor)).unsqueeze(1)
    local_cost = window_mean(cost, weight)
    curvature = smallest_eigenvalue(ref, erode(optical_valid, descriptor.radius).float())
    disagreement = window_mean((flow - network_flow).norm(dim=1, keepdim=True), weight)
    tile_cost = masked_mean(cost[:, 0], weight).nan_to_num(posinf=float(cost.max())).view(-1, 1, 1, 1)
    logit = network_logit.clamp(-LOGIT_LIMIT, LOGIT_LIMIT).unsqueeze(1)
    return torch.cat([logit, local_cost, (curvature + CURVATURE_FLOOR).log(), disagreement,
                      tile_cost.expand_as(local_cost), (variance.unsqueeze(1) + VARIANCE_FLOOR).log()], dim=1)


@dataclass(frozen=True)
class CertaintyCalibration:
    """A fitted map from `FEATURES` to P(EPE < 1 px), for one checkpoint and refinement config."""

    mean: tuple[float, ...]
    """Per feature, the training pixels' mean (standardisation)."""
    scale: tuple[float, ...]
    """Per feature, the training pixels' standard deviation."""
    weights: tuple[float, ...]
    """Per standardised feature, the logistic score's weight."""
    bias: float
    score_knots: tuple[float, ...]
    """Increasing scores of the isotonic table..."""
    probability_knots: tuple[float, ...]
    """...and the non-decreasing P(EPE < 1 px) at each (linear in between, constant beyond)."""
    checkpoint_sha256: str
    refinement: dict[str, Any]
    """`RefineConfig.to_dict()` of the refinement the features came from."""
    fitted_on: str = ""
    """What it was fitted on (tiles, protocols, cases, pixels)."""
    features: tuple[str, ...] = FEATURES

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """`(B, H, W)` linear score of `(B, F, H, W)` features."""
        mean = torch.tensor(self.mean, dtype=features.dtype, device=features.device).view(1, -1, 1, 1)
        scale = torch.tensor(self.scale, dtype=features.dtype, device=features.device).view(1, -1, 1, 1)
        w = torch.tensor(self.weights, dtype=features.dtype, device=features.device).view(1, -1, 1, 1)
        return ((features - mean) / scale * w).sum(dim=1) + self.bias

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """`(B, H, W)` calibrated P(EPE < 1 px)."""
        s = self.score(features)
        xs = torch.tensor(self.score_knots, dtype=s.dtype, device=s.device)
        ps = torch.tensor(self.probability_knots, dtype=s.dtype, device=s.device)
        return interpolate(s, xs, ps)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CertaintyCalibration":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "format"}
        return cls(**fields)

    def save(self, path: str | Path) -> Path:
        """Write as JSON, atomically."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path


def interpolate(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear `ys(xs)` at `x` (any shape), constant beyond the ends (as `numpy.interp`)."""
    i = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


def calibration_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's calibration lives: beside it, ``<stem>.calibration.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + CALIBRATION_SUFFIX)


def load_calibration(path: str | Path) -> CertaintyCalibration:
    """A calibration file; `CheckpointError` naming it when it is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
        calibration = CertaintyCalibration.from_dict(d)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a certainty calibration ({exc})") from exc
    if calibration.features != FEATURES:
        raise CheckpointError(f"{path}: calibrated on features {calibration.features}, this model computes {FEATURES}")
    return calibration


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iterations: int = 25) -> tuple[np.ndarray, float]:
    """Weights `(F,)` and bias of a ridge-regularised logistic regression of `y` `(N,)` in {0, 1} on
    standardised `x` `(N, F)` (Newton's method)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(a.shape[1])
    penalty = ridge * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a @ theta)))
        grad = a.T @ (p - y) / len(y) + penalty @ theta
        hessian = (a * (p * (1 - p))[:, None]).T @ a / len(y) + penalty
        step = np.linalg.solve(hessian, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def fit_isotonic(score: np.ndarray, y: np.ndarray, bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Knots `(scores, probabilities)` of the isotonic (non-decreasing) regression of `y` on `score`, over
    `bins` equal-count bins of the score (each knot at its bin's mean score)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(score)
    groups = np.array_split(order, bins)
    xs = np.array([score[g].mean() for g in groups])
    ys = np.array([y[g].mean() for g in groups])
    ws = np.array([len(g) for g in groups], dtype=np.float64)
    fitted = isotonic_regression(ys, weights=ws, increasing=True).x
    keep = np.concatenate([[True], np.diff(xs) > 1e-9])
    return xs[keep], fitted[keep]
