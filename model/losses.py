"""Training losses: Charbonnier flow at every stage, affine corner error, coarse and local matching, certainty."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .geometry import affine_to_flow, cell_centres, corner_error, downsample_flow, pool_valid
from .glam import GLAMOutput

CERTAINTY_EPE_PX = 1.0
"""Certainty target: the flow at a pixel is within this many pixels of the truth."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms and the Charbonnier smoothing."""

    flow: float = 1.0
    affine: float = 0.05
    coarse: float = 1.0
    local: float = 1.0
    certainty: float = 0.5
    charbonnier_eps: float = 0.1


def charbonnier(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Robust penalty ``sqrt(x^2 + eps^2) - eps``: quadratic near 0, linear far away."""
    return (x * x + eps * eps).sqrt() - eps


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def coarse_match_loss(log_probs: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor, sar_valid: torch.Tensor,
                      stride: int) -> torch.Tensor:
    """NLL of the true SAR cell of each reference coarse cell, bilinearly spread over its 4 neighbours.

    `log_probs` `(B, N, N)`, `gt_flow` `(B, 2, H, W)`, `valid` and `sar_valid` `(B, H, W)`; reference
    cells whose true match touches a SAR cell without data are left out.
    """
    full_size = (gt_flow.shape[-2], gt_flow.shape[-1])
    flow_c, valid_c = downsample_flow(gt_flow, valid, stride)
    h, w = flow_c.shape[-2:]
    target = cell_centres(*full_size, stride, gt_flow.device).unsqueeze(0) + flow_c  # SAR px
    g = (target - (stride - 1) / 2.0) / stride  # SAR cell coordinates
    x0, y0 = g[:, 0].floor(), g[:, 1].floor()
    sar_ok = pool_valid(sar_valid, stride).flatten(1)
    loss = torch.zeros_like(x0)
    mass = torch.zeros_like(x0)
    for ox in (0, 1):
        for oy in (0, 1):
            cx, cy = x0 + ox, y0 + oy
            wgt = (1 - (g[:, 0] - cx).abs()) * (1 - (g[:, 1] - cy).abs())
            index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().flatten(1)  # (B, N)
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h) & torch.gather(sar_ok, 1, index).view_as(x0)
            lp = torch.gather(log_probs, 2, index.unsqueeze(-1))[..., 0].view_as(x0)
            loss = loss - wgt * inside * lp
            mass = mass + wgt * inside
    usable = valid_c & (mass > 0.99)
    return _masked_mean(loss, usable)


def local_match_loss(logits: torch.Tensor, around: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor,
                     stride: int) -> torch.Tensor:
    """NLL of the true displacement within a refinement stage's local window, bilinear over 4 offsets.

    `logits` `(B, (2r+1)^2, h, w)` computed around flow `around` `(B, 2, h, w)`; cells whose true
    displacement leaves the window are left out.
    """
    size = int(round(logits.shape[1] ** 0.5))
    radius = size // 2
    gt_s, valid_s = downsample_flow(gt_flow, valid, stride)
    d = (gt_s - around.detach()) / stride  # true displacement in cells, (B, 2, h, w)
    log_probs = torch.log_softmax(logits, dim=1)
    x0, y0 = d[:, 0].floor(), d[:, 1].floor()
    loss = torch.zeros_like(x0)
    mass = torch.zeros_like(x0)
    for ox in (0, 1):
        for oy in (0, 1):
            cx, cy = x0 + ox, y0 + oy
            wgt = (1 - (d[:, 0] - cx).abs()) * (1 - (d[:, 1] - cy).abs())
            inside = (cx.abs() <= radius) & (cy.abs() <= radius)
            index = ((cy.clamp(-radius, radius) + radius) * size + cx.clamp(-radius, radius) + radius).long()
            loss = loss - wgt * inside * torch.gather(log_probs, 1, index.unsqueeze(1))[:, 0]
            mass = mass + wgt * inside
    return _masked_mean(loss, valid_s & (mass > 0.99))


def soma_loss(out: GLAMOutput, gt_flow: torch.Tensor, gt_affine: torch.Tensor, valid: torch.Tensor,
              sar_valid: torch.Tensor, weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """All terms and their weighted `total`.

    `gt_flow` `(B, 2, H, W)` full-resolution px, `gt_affine` `(B, 2, 3)` (the affine part of the truth),
    `valid` `(B, H, W)`: pixels whose truth is known (reference valid, SAR sample inside and valid);
    `sar_valid` `(B, H, W)`: the moved SAR's own data mask.
    """
    full_size = (gt_flow.shape[-2], gt_flow.shape[-1])
    flow_terms, cert_terms, affine_terms = [], [], []
    for s, affine in out.affines.items():
        gt_s, valid_s = downsample_flow(gt_flow, valid, s)
        epe = (affine_to_flow(affine, full_size, s) - gt_s).norm(dim=1)
        flow_terms.append(_masked_mean(charbonnier(epe, weights.charbonnier_eps), valid_s))
        affine_terms.append(corner_error(affine, gt_affine, full_size).mean())
    for s, flow in out.flows.items():
        gt_s, valid_s = downsample_flow(gt_flow, valid, s)
        epe = (flow - gt_s).norm(dim=1)
        flow_terms.append(_masked_mean(charbonnier(epe, weights.charbonnier_eps), valid_s))
        target = (epe.detach() < CERTAINTY_EPE_PX).float()
        bce = F.binary_cross_entropy_with_logits(out.certainty_logits[s], target, reduction="none")
        cert_terms.append(_masked_mean(bce, valid_s))
    terms = {
        "flow": torch.stack(flow_terms).mean(),
        "affine": torch.stack(affine_terms).mean(),
        "coarse": coarse_match_loss(out.coarse_log_probs, gt_flow, valid, sar_valid, next(iter(out.affines))),
        "certainty": torch.stack(cert_terms).mean(),
        "local": torch.stack([local_match_loss(logits, around, gt_flow, valid, s)
                              for s, (logits, around) in out.local_matches.items()]).mean(),
    }
    terms["total"] = (weights.flow * terms["flow"] + weights.affine * terms["affine"]
                      + weights.coarse * terms["coarse"] + weights.certainty * terms["certainty"]
                      + weights.local * terms["local"])
    return terms


def flow_rmse(flow: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`(B,)` RMSE of the end-point error over valid pixels (the CMR@k statistic)."""
    sq = ((flow - gt_flow) ** 2).sum(dim=1) * valid
    return (sq.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)).sqrt()
