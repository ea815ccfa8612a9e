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


def _bilinear_nll(log_probs: torch.Tensor, target: torch.Tensor, grid: tuple[int, int],
                  allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL of a continuous target position spread bilinearly over its 4 neighbouring grid cells.

    `log_probs` `(B, N, K)` over a `grid = (h, w)` of K = h*w cells; `target` `(B, 2, N)` (x, y) in
    grid cells; `allowed` `(B, K)` cells that may be targets. Returns the loss and the target mass
    that fell on allowed cells, both `(B, N)`.
    """
    h, w = grid
    x0, y0 = target[:, 0].floor(), target[:, 1].floor()
    loss, mass = torch.zeros_like(x0), torch.zeros_like(x0)
    for ox in (0, 1):
        for oy in (0, 1):
            cx, cy = x0 + ox, y0 + oy
            weight = (1 - (target[:, 0] - cx).abs()) * (1 - (target[:, 1] - cy).abs())
            index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
            ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            if allowed is not None:
                ok = ok & torch.gather(allowed, 1, index)
            loss = loss - weight * ok * torch.gather(log_probs, 2, index.unsqueeze(-1))[..., 0]
            mass = mass + weight * ok
    return loss, mass


def coarse_match_loss(log_probs: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor, sar_valid: torch.Tensor,
                      stride: int) -> torch.Tensor:
    """NLL of the true SAR cell of each reference coarse cell, bilinearly spread over its 4 neighbours.

    `log_probs` `(B, N, N)`, `gt_flow` `(B, 2, H, W)`, `valid` and `sar_valid` `(B, H, W)`; reference
    cells whose true match touches a SAR cell without data are left out.
    """
    full_size = (gt_flow.shape[-2], gt_flow.shape[-1])
    flow_c, valid_c = downsample_flow(gt_flow, valid, stride)
    target = cell_centres(*full_size, stride, gt_flow.device).unsqueeze(0) + flow_c  # SAR px
    cells = ((target - (stride - 1) / 2.0) / stride).flatten(2)
    loss, mass = _bilinear_nll(log_probs, cells, flow_c.shape[-2:], pool_valid(sar_valid, stride).flatten(1))
    return _masked_mean(loss, valid_c.flatten(1) & (mass > 0.99))


def local_match_loss(logits: torch.Tensor, around: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor,
                     stride: int) -> torch.Tensor:
    """NLL of the true displacement within a refinement stage's local window, bilinear over 4 offsets.

    `logits` `(B, (2r+1)^2, h, w)` computed around flow `around` `(B, 2, h, w)`; cells whose true
    displacement leaves the window are left out.
    """
    size = int(round(logits.shape[1] ** 0.5))
    gt_s, valid_s = downsample_flow(gt_flow, valid, stride)
    offset = (gt_s - around.detach()) / stride + size // 2  # window coordinates of the truth
    log_probs = torch.log_softmax(logits, dim=1).flatten(2).transpose(1, 2)  # (B, h*w, K)
    loss, mass = _bilinear_nll(log_probs, offset.flatten(2), (size, size))
    return _masked_mean(loss, valid_s.flatten(1) & (mass > 0.99))


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
