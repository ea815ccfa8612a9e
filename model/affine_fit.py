"""Affine estimation from weighted correspondences: a differentiable weighted least squares for training,
RANSAC + re-weighted least squares for inference.

Convention:
    - ``src`` are reference pixels, ``dst`` the SAR pixels they match: ``dst = A @ [src, 1]``.
    - the fit solves for the displacement's affine part ``D = A - I`` with a small ridge towards
      ``D = 0``, so an uninformative match set gives the identity (updates are residual).
"""

from __future__ import annotations

import torch

MIN_TOTAL_WEIGHT = 1e-6
MINIMAL_SAMPLE = 3
DEGENERATE_DETERMINANT = 1e-3
MAD_TO_SIGMA = 1.4826
"""Median absolute residual -> Gaussian sigma."""
INLIER_SCALES = 2.0
"""Final inliers lie within this many noise scales of the fit."""


def _normaliser(points: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted centroid `(B, 1, 2)` and isotropic scale `(B, 1, 1)` of `points` `(B, N, 2)`."""
    w = weights.unsqueeze(-1)
    total = w.sum(dim=1, keepdim=True).clamp_min(MIN_TOTAL_WEIGHT)
    centre = (points * w).sum(dim=1, keepdim=True) / total
    spread = (((points - centre) ** 2).sum(-1, keepdim=True) * w).sum(dim=1, keepdim=True) / total
    return centre, spread.sqrt().clamp_min(1.0)


def fit_affine_wls(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, ridge: float = 1e-6,
                   prior: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted least-squares affine `(B, 2, 3)` from `src`, `dst` `(B, N, 2)` and `weights` `(B, N)`.

    Solved as an update of `prior` `(B, 2, 3)` (default identity), with a ridge towards no update.
    Differentiable in all inputs. Exact for noise-free correspondences.
    """
    dtype = src.dtype
    src, dst, weights = src.double(), dst.double(), weights.double().clamp_min(0)
    if prior is None:
        prior = torch.eye(2, 3, dtype=src.dtype, device=src.device).expand(src.shape[0], 2, 3)
    prior = prior.double()
    dst = dst - (src @ prior[:, :, :2].transpose(1, 2) + prior[:, :, 2].unsqueeze(1)) + src
    centre, scale = _normaliser(src, weights)
    x = (src - centre) / scale
    design = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # (B, N, 3)
    target = dst - src  # displacement, (B, N, 2)
    w = weights.unsqueeze(-1)
    total = weights.sum(dim=1).clamp_min(MIN_TOTAL_WEIGHT)
    eye = torch.eye(3, dtype=design.dtype, device=design.device)
    normal = design.transpose(1, 2) @ (design * w) + (ridge * total)[:, None, None] * eye
    rhs = design.transpose(1, 2) @ (target * w)
    d_norm = torch.linalg.solve(normal, rhs).transpose(1, 2)  # (B, 2, 3) in normalised src coordinates
    # Undo the normalisation: D [x; 1] = Dn [(x - c) / s; 1].
    linear = d_norm[:, :, :2] / scale
    translation = d_norm[:, :, 2] - (linear @ centre.transpose(1, 2))[..., 0]
    update = torch.cat([linear, translation.unsqueeze(-1)], dim=-1)
    return (prior + update).to(dtype)


def plausible(affine: torch.Tensor, max_scale_change: float) -> torch.Tensor:
    """`(B,)` bool: orientation-preserving, singular values within [1/max, max] of the linear part."""
    linear = affine[:, :, :2].double()
    sv = torch.linalg.svdvals(linear)
    return (torch.linalg.det(linear) > 0) & (sv.max(dim=-1).values <= max_scale_change) & (
        sv.min(dim=-1).values >= 1.0 / max_scale_change)


def _residuals(affine: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """`(B, N)` distance between `A src` and `dst`."""
    moved = src @ affine[:, :, :2].transpose(1, 2) + affine[:, :, 2].unsqueeze(1)
    return (moved - dst).norm(dim=-1)


def _minimal_affines(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact affines `(B, K, 2, 3)` through point triplets `(B, K, 3, 2)`, and which are well conditioned."""
    design = torch.cat([src, torch.ones_like(src[..., :1])], dim=-1)  # (B, K, 3, 3)
    det = torch.linalg.det(design)
    ok = det.abs() > DEGENERATE_DETERMINANT
    safe = torch.where(ok[..., None, None], design, torch.eye(3, dtype=design.dtype, device=design.device))
    solution = torch.linalg.solve(safe, dst)  # (B, K, 3, 2)
    return solution.transpose(-1, -2), ok


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`(B,)` weighted median of `values` `(B, N)`."""
    order = values.argsort(dim=1)
    v, w = values.gather(1, order), weights.gather(1, order)
    cum = w.cumsum(dim=1)
    index = (cum < 0.5 * cum[:, -1:]).sum(dim=1, keepdim=True).clamp_max(values.shape[1] - 1)
    return v.gather(1, index)[:, 0]


@torch.no_grad()
def fit_affine_robust(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: torch.Tensor,
    threshold: float,
    hypotheses: int = 256,
    irls_iterations: int = 3,
    ridge: float = 1e-6,
    seed: int = 0,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Robust affine `(B, 2, 3)`: weighted RANSAC, then Cauchy re-weighted least squares whose scale
    adapts to the matches' noise (at least `threshold / 2`), then a hard-inlier refit.

    `threshold` is RANSAC's inlier distance in pixels. Deterministic for a given `seed`.
    """
    batch, count, _ = src.shape
    src64, dst64, w64 = src.double(), dst.double(), weights.double().clamp_min(0)
    probs = w64.cpu() + 1e-12
    picks = torch.stack([  # seeded per item, so an item's result does not depend on its batch
        torch.multinomial(p.expand(hypotheses, count), MINIMAL_SAMPLE, replacement=False,
                          generator=torch.Generator(device="cpu").manual_seed(seed))
        for p in probs
    ]).to(src.device)  # (B, K, 3)
    gather = lambda pts: torch.gather(  # noqa: E731 - (B, N, 2) -> (B, K, 3, 2)
        pts.unsqueeze(1).expand(batch, hypotheses, count, 2), 2, picks.unsqueeze(-1).expand(-1, -1, -1, 2)
    )
    candidates, ok = _minimal_affines(gather(src64), gather(dst64))  # (B, K, 2, 3)
    moved = torch.einsum("bkij,bnj->bkni", candidates[..., :2], src64) + candidates[..., 2].unsqueeze(2)
    residual = (moved - dst64.unsqueeze(1)).norm(dim=-1)  # (B, K, N)
    score = ((residual < threshold).double() * w64.unsqueeze(1)).sum(-1)
    score = torch.where(ok, score, torch.full_like(score, -1.0))
    best = candidates[torch.arange(batch, device=src.device), score.argmax(dim=1)]  # (B, 2, 3)

    inliers = (_residuals(best, src64, dst64) < threshold).double()
    affine = fit_affine_wls(src64, dst64, w64 * inliers, ridge, prior)
    # The noise scale adapts to the matches: precise matches keep the threshold's scale, noisy but
    # unbiased ones widen it so that IRLS averages them rather than keeping a lucky few.
    scale = torch.maximum(torch.full((batch,), 0.5 * threshold, dtype=torch.float64, device=src.device),
                          MAD_TO_SIGMA * _weighted_median(_residuals(affine, src64, dst64), w64))
    for _ in range(irls_iterations):
        r = _residuals(affine, src64, dst64)
        cauchy = 1.0 / (1.0 + (r / scale[:, None]) ** 2)
        affine = fit_affine_wls(src64, dst64, w64 * cauchy, ridge, prior)
    # Final hard-inlier refit: bias-free for clean inliers.
    inliers = (_residuals(affine, src64, dst64) < INLIER_SCALES * scale[:, None]).double()
    has_support = (w64 * inliers).sum(dim=1) > MIN_TOTAL_WEIGHT
    refined = fit_affine_wls(src64, dst64, w64 * inliers, ridge, prior)
    affine = torch.where(has_support[:, None, None], refined, affine)
    return affine.to(src.dtype)
