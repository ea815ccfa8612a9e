"""One optimisation step and the batch it consumes (the training loop itself lives with `soma train`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .geometry import warp
from .losses import LossWeights, flow_rmse, soma_loss
from .network import SomaNet
from .normalize import prepare_optical, prepare_sar
from .synthetic_warp import Misregistration, move_sar, true_flow


def sample_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: `mask` holds at p + flow(p) (bilinear support fully inside the mask)."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return warp(m, torch.from_numpy(flow)[None])[0, 0].numpy() > 1 - 1e-3


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


def make_batch(pairs: list[tuple[np.ndarray, np.ndarray]], misregistrations: list[Misregistration],
               origins: list[tuple[int, int]] | None = None) -> TrainingBatch:
    """Misregister each aligned `(optical, sar)` pair and normalise it; the truth comes with it.

    With `origins`, each SAR is a larger image and the tile starts at that (x, y) in it (see `move_sar`).
    """
    items = []
    for i, ((optical, sar), mis) in enumerate(zip(pairs, misregistrations)):
        size = optical.shape[-2:]
        sar_f = np.asarray(sar, np.float32)
        moved = move_sar(sar_f[None] if sar_f.ndim == 2 else sar_f, mis, size, origins[i] if origins else (0, 0))
        opt, mov = prepare_optical(optical), prepare_sar(moved)
        flow, defined = true_flow(mis, size)
        known = defined & opt.valid & sample_mask(mov.valid, flow)
        items.append((opt.image, mov.image, opt.valid, mov.valid, flow, mis.true_affine, known))
    optical, sar, optical_valid, sar_valid, flow, affine, valid = (np.stack(col) for col in zip(*items))
    return TrainingBatch(optical=torch.from_numpy(optical), sar=torch.from_numpy(sar),
                         optical_valid=torch.from_numpy(optical_valid), sar_valid=torch.from_numpy(sar_valid),
                         flow=torch.from_numpy(flow), affine=torch.from_numpy(affine.astype(np.float32)),
                         valid=torch.from_numpy(valid))


def perturbed_affine(affine: torch.Tensor, size: tuple[int, int], generator: torch.Generator,
                     max_shift_px: float, max_rotation_deg: float) -> torch.Tensor:
    """`affine` `(B, 2, 3)` followed by a random rotation about the tile centre and shift: a coarse-stage-
    sized error for the refiners to learn to correct."""
    batch = affine.shape[0]
    theta = torch.deg2rad((torch.rand(batch, generator=generator) * 2 - 1) * max_rotation_deg)
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * max_shift_px
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], 1)  # (B, 2, 2)
    centre = torch.tensor([(size[1] - 1) / 2.0, (size[0] - 1) / 2.0])
    noise = torch.cat([rot, (centre - (rot @ centre.unsqueeze(-1))[..., 0] + shift).unsqueeze(-1)], dim=2)
    bottom = torch.tensor([[[0.0, 0.0, 1.0]]]).expand(batch, 1, 3)
    composed = torch.cat([affine.float().cpu(), bottom], dim=1) @ torch.cat([noise, bottom], dim=1)
    return composed[:, :2].to(affine.device)


@dataclass(frozen=True)
class RefinementStart:
    """Training-time start of the affine refinement: the true affine with a coarse-sized error, so the
    refiners learn while the global matcher is still poor."""

    probability: float = 0.5
    """Share of steps that start from the perturbed truth instead of the global estimate."""
    max_shift_px: float = 12.0
    max_rotation_deg: float = 3.0


def train_step(net: SomaNet, optimizer: torch.optim.Optimizer, batch: TrainingBatch,
               weights: LossWeights = LossWeights(), grad_clip: float | None = None,
               refinement: RefinementStart | None = None, generator: torch.Generator | None = None,
               ) -> dict[str, float]:
    """One gradient step on `batch` (gradient norm clipped to `grad_clip` if given); returns the loss terms."""
    net.train()
    refine_from = None
    if refinement is not None and generator is not None and torch.rand(1, generator=generator) < refinement.probability:
        refine_from = perturbed_affine(batch.affine, tuple(batch.flow.shape[-2:]), generator,
                                       refinement.max_shift_px, refinement.max_rotation_deg)
    out = net(batch.optical, batch.sar, batch.optical_valid, batch.sar_valid, robust=False, refine_from=refine_from)
    terms = soma_loss(out, batch.flow, batch.affine, batch.valid, batch.sar_valid, weights)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
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
