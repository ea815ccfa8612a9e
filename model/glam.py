"""GLAM, the Global-Local Affine-Flow Matcher: global correlation -> robust affine -> affine refinement
at finer strides -> dense residual flow refinement with a certainty head.

Convention (see `geometry`): all flows in full-resolution reference pixels at every stride; affines map
reference pixels to SAR pixels; every stage starts from the previous estimate (the first from identity)
and its learned update is zero at initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .affine_fit import fit_affine_robust, fit_affine_wls, plausible
from .config import GLAMConfig
from .correlation import global_correlation, local_correlation, soft_argmax
from .geometry import (affine_to_flow, apply_affine, cell_centres, identity_affine, inside, pool_valid, sample,
                       upsample_flow, warp)

MASKED_LOGIT = -1e4


@dataclass
class GLAMOutput:
    """What GLAM estimates for a batch; intermediate stages are kept for the losses."""

    affine: torch.Tensor
    """`(B, 2, 3)` final affine, reference px -> SAR px."""
    flow: torch.Tensor
    """`(B, 2, H, W)` final flow, full-resolution px."""
    certainty_logit: torch.Tensor
    """`(B, H, W)` logit of P(end-point error < 1 px)."""
    coarse_log_probs: torch.Tensor
    """`(B, N, N)` log-probability that reference coarse cell i matches SAR coarse cell j."""
    affines: dict[int, torch.Tensor] = field(default_factory=dict)
    """Affine after each affine stage, keyed by stride (coarse stride first)."""
    flows: dict[int, torch.Tensor] = field(default_factory=dict)
    """Flow after each dense stage `(B, 2, H/s, W/s)`, keyed by stride."""
    certainty_logits: dict[int, torch.Tensor] = field(default_factory=dict)
    """Certainty logit after each dense stage `(B, H/s, W/s)`, keyed by stride."""
    local_matches: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Per refinement stride: local-correlation logits `(B, (2r+1)^2, h, w)` and the flow `(B, 2, h, w)`
    they were computed around."""


def refinement_head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """Three 3x3 conv layers; the last is zero-initialised so the stage starts as a no-op."""
    head = nn.Sequential(
        nn.Conv2d(cin, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 3, padding=1),
    )
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


def fit_affine(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, prior: torch.Tensor, stride: int,
               config: GLAMConfig, robust: bool) -> torch.Tensor:
    """Update of `prior`: weighted least squares while training, RANSAC + IRLS at inference.

    An implausible fit (reflection, or scale beyond `config.max_scale_change`) keeps `prior`.
    """
    if robust:
        affine = fit_affine_robust(src, dst, weights, threshold=config.ransac_threshold_cells * stride,
                                   hypotheses=config.ransac_hypotheses, irls_iterations=config.irls_iterations,
                                   ridge=config.ridge, seed=config.seed, prior=prior)
    else:
        affine = fit_affine_wls(src, dst, weights, config.ridge, prior)
    return torch.where(plausible(affine, config.max_scale_change)[:, None, None], affine, prior)


def _points(centres: torch.Tensor, batch: int) -> torch.Tensor:
    """`(2, h, w)` -> `(B, h*w, 2)`."""
    return centres.flatten(1).t().unsqueeze(0).expand(batch, -1, -1)


class GlobalMatcher(nn.Module):
    """All-pairs correlation of the coarsest features -> windowed soft-argmax matches -> affine."""

    def __init__(self, config: GLAMConfig) -> None:
        super().__init__()
        self.config = config
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.match_temperature)))

    def forward(self, ref: torch.Tensor, sar: torch.Tensor, ref_valid: torch.Tensor, sar_valid: torch.Tensor,
                full_size: tuple[int, int], robust: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Features `(B, C, h, w)`, valid `(B, h, w)` -> affine `(B, 2, 3)`, log-probs `(B, h*w, h*w)`."""
        stride, batch = self.config.coarse_stride, ref.shape[0]
        logits = global_correlation(ref, sar) / self.log_temperature.exp()
        logits = logits.masked_fill(~sar_valid.flatten(1).unsqueeze(1), MASKED_LOGIT)
        log_probs = torch.log_softmax(logits, dim=-1)
        probs = log_probs.exp()
        pos = _points(cell_centres(*full_size, stride, ref.device), batch)  # (B, N, 2)
        peak = torch.gather(pos, 1, probs.argmax(dim=-1, keepdim=True).expand(-1, -1, 2))  # (B, N, 2)
        near = torch.cdist(peak, pos) <= self.config.match_window_cells * stride  # (B, N, N)
        windowed = probs * near
        mass = windowed.sum(dim=-1)
        matches = (windowed @ pos) / mass.clamp_min(1e-6).unsqueeze(-1)
        weights = mass * ref_valid.flatten(1)
        prior = identity_affine(batch, ref.device)
        return fit_affine(pos, matches, weights, prior, stride, self.config, robust), log_probs


class LocalMatcher(nn.Module):
    """What both refiners share: warp the SAR features by the current flow, correlate locally, and turn the
    correlation into logits over the window (learned temperature)."""

    def __init__(self, stride: int, config: GLAMConfig) -> None:
        super().__init__()
        self.stride, self.radius = stride, config.radius_at(stride)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.local_temperature)))

    def match(self, ref: torch.Tensor, sar: torch.Tensor, flow: torch.Tensor, sar_valid: torch.Tensor,
              full_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Warped SAR features, their valid fraction `(B, 1, h, w)`, masked correlation and its logits
        `(B, (2r+1)^2, h, w)`."""
        warped = warp(sar, flow, full_size)
        warped_valid = warp(sar_valid.unsqueeze(1).float(), flow, full_size)
        corr = local_correlation(ref, warped, self.radius) * (warped_valid > 0.5)
        return warped, warped_valid, corr, corr / self.log_temperature.exp()


class AffineRefiner(LocalMatcher):
    """Local correlation around the current affine -> per-cell displacement (soft-argmax + learned
    correction) and weight -> refitted affine."""

    def __init__(self, stride: int, channels: int, config: GLAMConfig) -> None:
        super().__init__(stride, config)
        self.config = config
        hidden = config.head_channels
        self.project = nn.Conv2d(channels, hidden // 2, 1)
        self.head = refinement_head((2 * self.radius + 1) ** 2 + hidden // 2, hidden, 3)

    def forward(self, ref: torch.Tensor, sar: torch.Tensor, affine: torch.Tensor, ref_valid: torch.Tensor,
                sar_valid: torch.Tensor, full_size: tuple[int, int],
                robust: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features `(B, C, h, w)`, valid `(B, h, w)`, affine `(B, 2, 3)` -> refined affine `(B, 2, 3)`,
        local-correlation logits and the flow they were computed around."""
        s, batch = self.stride, ref.shape[0]
        flow = affine_to_flow(affine, full_size, s)
        _, warped_valid, corr, logits = self.match(ref, sar, flow, sar_valid, full_size)
        out = self.head(torch.cat([corr, self.project(ref)], dim=1))
        shift = soft_argmax(logits, self.radius) + out[:, :2]  # cells
        centres = _points(cell_centres(*full_size, s, ref.device), batch)
        moved = centres + s * shift.flatten(2).transpose(1, 2)  # p + s * d, still in the warped frame
        dst = apply_affine(affine, moved)
        weights = torch.sigmoid(out[:, 2]) * ref_valid * (warped_valid[:, 0] > 0.5)
        return fit_affine(centres, dst, weights.flatten(1), affine, s, self.config, robust), logits, flow


class FlowRefiner(LocalMatcher):
    """Local correlation around the current flow -> residual flow update (soft-argmax + learned correction)
    and a certainty logit."""

    def __init__(self, stride: int, channels: int, config: GLAMConfig) -> None:
        super().__init__(stride, config)
        hidden = config.head_channels if stride > 1 else config.head_channels // 2
        self.project_ref = nn.Conv2d(channels, hidden // 2, 1)
        self.project_sar = nn.Conv2d(channels, hidden // 2, 1)
        self.head = refinement_head((2 * self.radius + 1) ** 2 + hidden + 1, hidden, 3)

    def forward(self, ref: torch.Tensor, sar: torch.Tensor, flow: torch.Tensor, sar_valid: torch.Tensor,
                full_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features `(B, C, h, w)`, flow `(B, 2, h, w)` -> refined flow `(B, 2, h, w)`, certainty logit
        `(B, h, w)`, local-correlation logits."""
        warped, warped_valid, corr, logits = self.match(ref, sar, flow, sar_valid, full_size)
        out = self.head(torch.cat([corr, self.project_ref(ref), self.project_sar(warped), warped_valid], dim=1))
        shift = soft_argmax(logits, self.radius) + out[:, :2]  # cells
        return flow + self.stride * shift, out[:, 2], logits


class GLAM(nn.Module):
    """The matcher over two feature pyramids `{stride: (B, C_s, H/s, W/s)}`."""

    def __init__(self, channels: dict[int, int], config: GLAMConfig) -> None:
        super().__init__()
        if config.flow_strides[-1] != 1:
            raise ValueError("GLAM's last flow stride must be 1 (full resolution)")
        self.config = config
        self.global_matcher = GlobalMatcher(config)
        self.affine_refiners = nn.ModuleDict(
            {str(s): AffineRefiner(s, channels[s], config) for s in config.affine_strides})
        self.flow_refiners = nn.ModuleDict({str(s): FlowRefiner(s, channels[s], config) for s in config.flow_strides})

    def forward(self, ref: dict[int, torch.Tensor], sar: dict[int, torch.Tensor], ref_valid: torch.Tensor,
                sar_valid: torch.Tensor, robust: bool = False,
                refine_from: torch.Tensor | None = None) -> GLAMOutput:
        """Pyramids and full-resolution valid masks `(B, H, W)` -> `GLAMOutput`.

        `refine_from` `(B, 2, 3)` (training only): start the affine refinement from this affine instead of
        the global estimate, so the refiners learn to correct a coarse error even while the global matcher
        is still poor (the global stage still gets its own losses).
        """
        full_size = (ref_valid.shape[-2], ref_valid.shape[-1])
        cs = self.config.coarse_stride
        affine, log_probs = self.global_matcher(
            ref[cs], sar[cs], pool_valid(ref_valid, cs), pool_valid(sar_valid, cs), full_size, robust)
        affines, local = {cs: affine}, {}
        if refine_from is not None:
            affine = refine_from.detach().to(affine.dtype)
        for s in self.config.affine_strides:
            affine, corr_logits, around = self.affine_refiners[str(s)](
                ref[s], sar[s], affine, pool_valid(ref_valid, s), pool_valid(sar_valid, s), full_size, robust)
            affines[s], local[s] = affine, (corr_logits, around)

        flows, logits = {}, {}
        flow, prev = None, None
        for s in self.config.flow_strides:
            base = affine_to_flow(affine, full_size, s)
            init = base if flow is None else base + upsample_flow(flow - affine_to_flow(affine, full_size, prev),
                                                                 prev // s)
            flow, logit, corr_logits = self.flow_refiners[str(s)](
                ref[s], sar[s], init, pool_valid(sar_valid, s), full_size)
            flows[s], logits[s], local[s], prev = flow, logit, (corr_logits, init), s
        return GLAMOutput(affine=affine, flow=flow, certainty_logit=logit, coarse_log_probs=log_probs,
                          affines=affines, flows=flows, certainty_logits=logits, local_matches=local)


def output_valid(flow: torch.Tensor, ref_valid: torch.Tensor, sar_valid: torch.Tensor) -> torch.Tensor:
    """`(B, H, W)` bool: reference valid, and p + flow(p) inside the SAR and on valid SAR pixels."""
    full_size = (ref_valid.shape[-2], ref_valid.shape[-1])
    points = cell_centres(*full_size, 1, flow.device).unsqueeze(0) + flow
    sar_ok = sample(sar_valid.unsqueeze(1).float(), points, full_size)[:, 0] > 0.5
    return ref_valid & sar_ok & inside(points, full_size)
