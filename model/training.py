"""One optimisation step and the batch it consumes (the training loop itself lives with `soma train`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .losses import LossWeights, flow_rmse, soma_loss
from .network import SomaNet
from .normalize import prepare_optical, prepare_sar
from .synthetic_warp import Misregistration, move_sar, true_flow


@dataclass
class TrainingBatch:
    """Normalised inputs and exact ground truth, all `(B, ...)` tensors."""

    optical: torch.Tensor
    """`(B, 3, H, W)` float32."""
    sar: torch.Tensor
    """`(B, 1, H, W)` float32, misregistered."""
    optical_valid: torch.Tensor
    sar_valid: torch.Tensor
    flow: torch.Tensor
    """`(B, 2, H, W)` true flow, px."""
    affine: torch.Tensor
    """`(B, 2, 3)` affine part of the truth."""
    valid: torch.Tensor
    """`(B, H, W)` where the truth is known and both images have data."""

    def to(self, device: torch.device) -> "TrainingBatch":
        return TrainingBatch(**{k: v.to(device) for k, v in vars(self).items()})


def make_batch(pairs: list[tuple[np.ndarray, np.ndarray]], misregistrations: list[Misregistration]) -> TrainingBatch:
    """Misregister each aligned `(optical, sar)` pair and normalise it; the truth comes with it."""
    items = []
    for (optical, sar), mis in zip(pairs, misregistrations):
        size = optical.shape[-2:]
        sar_f = np.asarray(sar, np.float32)
        sar_f = sar_f[None] if sar_f.ndim == 2 else sar_f
        moved = move_sar(np.concatenate([sar_f, np.ones_like(sar_f[:1])]), mis)
        moved_sar, moved_cover = moved[:-1], moved[-1] > 1 - 1e-3
        moved_sar = np.where(moved_cover, moved_sar, np.nan)
        opt, mov = prepare_optical(optical), prepare_sar(moved_sar)
        flow, defined = true_flow(mis, size)
        items.append((opt.image, mov.image, opt.valid, mov.valid, flow, mis.true_affine, defined & opt.valid))
    cols = list(zip(*items))
    stack = lambda i, dtype=None: torch.from_numpy(np.stack(cols[i]) if dtype is None else np.stack(cols[i]).astype(dtype))  # noqa: E731
    return TrainingBatch(optical=stack(0), sar=stack(1), optical_valid=stack(2), sar_valid=stack(3),
                         flow=stack(4), affine=stack(5, np.float32), valid=stack(6))


def train_step(net: SomaNet, optimizer: torch.optim.Optimizer, batch: TrainingBatch,
               weights: LossWeights = LossWeights()) -> dict[str, float]:
    """One gradient step on `batch`; returns the loss terms."""
    net.train()
    out = net(batch.optical, batch.sar, batch.optical_valid, batch.sar_valid, robust=False)
    terms = soma_loss(out, batch.flow, batch.affine, batch.valid, batch.sar_valid, weights)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def evaluate_batch(net: SomaNet, batch: TrainingBatch, weights: LossWeights = LossWeights()) -> dict[str, float]:
    """Loss terms (training-mode fit) and per-pair flow RMSE (inference-mode robust fit) on `batch`."""
    net.eval()
    terms = soma_loss(net(batch.optical, batch.sar, batch.optical_valid, batch.sar_valid, robust=False),
                      batch.flow, batch.affine, batch.valid, batch.sar_valid, weights)
    out = net(batch.optical, batch.sar, batch.optical_valid, batch.sar_valid, robust=True)
    result = {k: float(v) for k, v in terms.items()}
    result["rmse"] = float(flow_rmse(out.flow, batch.flow, batch.valid).mean())
    return result
