"""Classical SAR-optical registration baselines, each returning a dense flow in the project's convention.

Every method maps (optical `(3, S, S)`, SAR `(1, S, S)` with NaN where missing) to a flow `(2, S, S)`:
``coregistered(p) = sar(p + flow(p))``. A method that cannot produce an estimate raises
`RegistrationFailed`; the harness counts it as a failure, never drops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from model.affine_fit import fit_affine_robust
from model.geometry import affine_to_flow
from model.normalize import prepare_optical, prepare_sar

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


class RegistrationFailed(RuntimeError):
    """A baseline found no usable estimate for a case."""


def _grey(optical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = prepare_optical(optical)
    return t.image.mean(axis=0), t.valid


def _sar(sar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = prepare_sar(sar)
    return t.image[0], t.valid


def affine_flow(affine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`(2, H, W)` flow ``A p - p`` of a reference -> SAR pixel affine `(2, 3)`."""
    return affine_to_flow(torch.from_numpy(np.asarray(affine, np.float32))[None], size)[0].numpy()


def identity(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """No correction."""
    return np.zeros((2, *optical.shape[-2:]), np.float32)


def phase_correlation(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """One translation from phase correlation of gradient magnitudes (more modality-robust than raw values)."""
    o, ov = _grey(optical)
    s, sv = _sar(sar)
    go = ndimage.gaussian_gradient_magnitude(o, 1.5) * ov
    gs = ndimage.gaussian_gradient_magnitude(s, 1.5) * sv
    shift, _, _ = phase_cross_correlation(go, gs, upsample_factor=10, normalization=None)
    # shift registers gs onto go: go(p) ~ gs(p - shift), so sar(p + flow) with flow = -shift
    return np.broadcast_to(np.array([-shift[1], -shift[0]], np.float32)[:, None, None],
                           (2, *o.shape)).copy()


@dataclass(frozen=True)
class SearchGrid:
    """An exhaustive search over transform parameters: `steps[i]` either side of the start, `spacing[i]` apart."""

    shrink: int
    steps: tuple[int, ...]
    spacing: tuple[float, ...]
    sampling: float
    """Share of the level's pixels the metric samples."""


MI_RIGID_SEARCH = SearchGrid(8, (5, 8, 8), (math.radians(4.0), 8.0, 8.0), 1.0)
"""Rigid (angle, tx, ty) pre-search on a 1/8 image: +-20 deg in 4 deg, +-64 px in 8 px."""
MI_STARTS = 3
"""Best distinct rigid candidates refined; the one with the best metric at the rigid search's level wins."""
MI_BASIN_STEPS = 2
"""Rigid candidates within this many grid steps of a better one, in every parameter, share its basin."""
MI_SIMILARITY_SEARCH = SearchGrid(4, (4, 2, 2, 2), (0.025, math.radians(1.0), 4.0, 4.0), 0.25)
"""Similarity (scale, angle, tx, ty) search around a rigid candidate on a 1/4 image: +-10 % scale,
+-2 deg, +-8 px."""
MI_SELECTION = SearchGrid(MI_RIGID_SEARCH.shrink, (0, 0, 0, 0), (1.0, 1.0, 1.0, 1.0), MI_RIGID_SEARCH.sampling)
"""One metric evaluation (a zero-step grid) of each refined start on the rigid search's image, where MI
separates basins far better than on the fine levels."""
MI_SIMILARITY_LEVELS, MI_AFFINE_LEVELS = (4, 2), (2, 1)
MI_SIMILARITY_STEP, MI_AFFINE_STEP = 0.5, 0.25
"""Largest first step of the gradient descent, in px of physical shift."""
MI_DESCENT_SAMPLING = (0.5, 0.25)
MI_ITERATIONS = 100
MI_HISTOGRAM_BINS = 32


def _mi_registration(fixed_mask: sitk.Image, moving_mask: sitk.Image, sampling: float,
                     levels: tuple[int, ...]) -> sitk.ImageRegistrationMethod:
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=MI_HISTOGRAM_BINS)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(sampling, seed=1)
    r.SetMetricFixedMask(fixed_mask)
    r.SetMetricMovingMask(moving_mask)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetShrinkFactorsPerLevel(list(levels))
    r.SetSmoothingSigmasPerLevel([lv / 2.0 for lv in levels])
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return r


def _distinct_best(points: list[tuple[float, tuple[float, ...]]], spacing: tuple[float, ...],
                   count: int) -> list[tuple[float, ...]]:
    """The `count` lowest-metric positions of `points` (metric, position), at most one per basin."""
    kept: list[tuple[float, ...]] = []
    for _, position in sorted(points):
        if all(any(abs(a - b) > MI_BASIN_STEPS * d for a, b, d in zip(position, k, spacing)) for k in kept):
            kept.append(position)
            if len(kept) == count:
                break
    return kept


def mutual_information_affine(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """SimpleITK Mattes mutual information: exhaustive rigid search, then from each of its best few distinct
    candidates a similarity search and multi-resolution gradient descent; the one whose result has the best
    coarse-level metric goes on to a full affine."""
    o, ov = _grey(optical)
    s, sv = _sar(sar)
    fixed, moving = sitk.GetImageFromArray(o.astype(np.float32)), sitk.GetImageFromArray(s.astype(np.float32))
    masks = sitk.GetImageFromArray(ov.astype(np.uint8)), sitk.GetImageFromArray(sv.astype(np.uint8))
    centre = ((o.shape[1] - 1) / 2.0, (o.shape[0] - 1) / 2.0)

    def search(transform: sitk.Transform, grid: SearchGrid) -> list[tuple[float, tuple[float, ...]]]:
        r = _mi_registration(*masks, grid.sampling, (grid.shrink,))
        r.SetOptimizerAsExhaustive(list(grid.steps))
        r.SetOptimizerScales(list(grid.spacing))
        r.SetInitialTransform(transform, inPlace=True)
        points: list[tuple[float, tuple[float, ...]]] = []
        r.AddCommand(sitk.sitkIterationEvent,
                     lambda: points.append((r.GetMetricValue(), tuple(r.GetOptimizerPosition()))))
        r.Execute(fixed, moving)
        return points

    def descend(transform: sitk.Transform, levels: tuple[int, ...], step: float, sampling: float) -> None:
        r = _mi_registration(*masks, sampling, levels)
        r.SetOptimizerAsRegularStepGradientDescent(learningRate=step, minStep=1e-3, numberOfIterations=MI_ITERATIONS,
                                                   relaxationFactor=0.6, gradientMagnitudeTolerance=1e-9)
        r.SetOptimizerScalesFromPhysicalShift()
        r.SetInitialTransform(transform, inPlace=True)
        r.Execute(fixed, moving)

    def refine(angle: float, tx: float, ty: float) -> tuple[float, sitk.Similarity2DTransform]:
        similarity = sitk.Similarity2DTransform()
        similarity.SetCenter(centre)
        similarity.SetAngle(angle)
        similarity.SetTranslation((tx, ty))
        search(similarity, MI_SIMILARITY_SEARCH)
        descend(similarity, MI_SIMILARITY_LEVELS, MI_SIMILARITY_STEP, MI_DESCENT_SAMPLING[0])
        return search(similarity, MI_SELECTION)[0][0], similarity

    try:
        rigid = sitk.Euler2DTransform()
        rigid.SetCenter(centre)
        starts = _distinct_best(search(rigid, MI_RIGID_SEARCH), MI_RIGID_SEARCH.spacing, MI_STARTS)
        if not starts:
            raise RuntimeError("the rigid search evaluated no position")
        _, similarity = min((refine(*start) for start in starts), key=lambda refined: refined[0])
        affine = sitk.AffineTransform(2)
        affine.SetCenter(centre)
        affine.SetMatrix(similarity.GetMatrix())
        affine.SetTranslation(similarity.GetTranslation())
        descend(affine, MI_AFFINE_LEVELS, MI_AFFINE_STEP, MI_DESCENT_SAMPLING[1])
    except RuntimeError as exc:
        raise RegistrationFailed(f"mutual information: {exc}") from exc
    matrix = np.array(affine.GetMatrix()).reshape(2, 2)
    c, tr = np.array(affine.GetCenter()), np.array(affine.GetTranslation())
    return affine_flow(np.hstack([matrix, (tr + c - matrix @ c)[:, None]]), o.shape)  # T(p) = M (p - c) + c + t


SIFT_RATIO = 0.8
SIFT_MIN_INLIERS = 6


def sift_ransac(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """SIFT keypoints on both images, ratio-test matches, RANSAC affine."""
    o, ov = _grey(optical)
    s, sv = _sar(sar)
    sift = cv2.SIFT_create()
    ko, do = sift.detectAndCompute((o * 255).astype(np.uint8), ov.astype(np.uint8))
    ks, ds = sift.detectAndCompute((s * 255).astype(np.uint8), sv.astype(np.uint8))
    if do is None or ds is None or len(ko) < 3 or len(ks) < 3:
        raise RegistrationFailed("SIFT: too few keypoints")
    pairs = cv2.BFMatcher().knnMatch(do, ds, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < SIFT_RATIO * n.distance]
    if len(good) < SIFT_MIN_INLIERS:
        raise RegistrationFailed(f"SIFT: {len(good)} matches pass the ratio test")
    src = np.float32([ko[m.queryIdx].pt for m in good])
    dst = np.float32([ks[m.trainIdx].pt for m in good])
    affine, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if affine is None or inliers is None or int(inliers.sum()) < SIFT_MIN_INLIERS:
        raise RegistrationFailed("SIFT: RANSAC found no affine with enough inliers")
    return affine_flow(affine.astype(np.float64), o.shape)


CFOG_ORIENTATIONS = 9
CFOG_SIGMA = 1.0
CFOG_WINDOW = 96
CFOG_SEARCH = 64
CFOG_GRID_STEP = 64


def cfog_descriptor(image: np.ndarray) -> np.ndarray:
    """Channel features of oriented gradients: `(K, H, W)` oriented-gradient channels, Gaussian-smoothed
    spatially and across orientation, L2-normalised per pixel."""
    gx = ndimage.sobel(image, axis=1)
    gy = ndimage.sobel(image, axis=0)
    channels = []
    for k in range(CFOG_ORIENTATIONS):
        t = math.pi * k / CFOG_ORIENTATIONS
        channels.append(np.abs(gx * math.cos(t) + gy * math.sin(t)))
    d = ndimage.gaussian_filter(np.stack(channels), sigma=(0.7, CFOG_SIGMA, CFOG_SIGMA), mode=("wrap", "reflect",
                                                                                                "reflect"))
    return d / (np.linalg.norm(d, axis=0, keepdims=True) + 1e-6)


def _ssd_match(template: np.ndarray, search: np.ndarray) -> tuple[float, float, float]:
    """Best offset (dx, dy) of `template` `(K, h, w)` inside `search` `(K, H, W)` by FFT sum of squared
    differences (correlation term), with sub-pixel parabola refinement, and a peak ratio as quality."""
    k, h, w = template.shape
    H, W = search.shape[1:]
    score = np.zeros((H - h + 1, W - w + 1))
    for c in range(k):
        f = np.fft.rfft2(search[c]) * np.conj(np.fft.rfft2(template[c], s=(H, W)))
        score += np.fft.irfft2(f, s=(H, W))[: H - h + 1, : W - w + 1]
    iy, ix = np.unravel_index(np.argmax(score), score.shape)

    def parabola(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den == 0 else 0.5 * (a - c) / den

    dy = iy + (parabola(score[iy - 1, ix], score[iy, ix], score[iy + 1, ix]) if 0 < iy < score.shape[0] - 1 else 0)
    dx = ix + (parabola(score[iy, ix - 1], score[iy, ix], score[iy, ix + 1]) if 0 < ix < score.shape[1] - 1 else 0)
    peak = score[iy, ix]
    masked = score.copy()
    masked[max(iy - 3, 0) : iy + 4, max(ix - 3, 0) : ix + 4] = -np.inf
    return float(dx), float(dy), float(peak / max(masked.max(), 1e-9))


def cfog(optical: np.ndarray, sar: np.ndarray) -> np.ndarray:
    """CFOG-style: oriented-gradient channel descriptors, FFT matching of windows on a grid, robust affine."""
    o, ov = _grey(optical)
    s, sv = _sar(sar)
    do, ds = cfog_descriptor(o), cfog_descriptor(s) * sv
    size = o.shape
    half, margin = CFOG_WINDOW // 2, CFOG_SEARCH
    src, dst, quality = [], [], []
    for cy in range(half, size[0] - half + 1, CFOG_GRID_STEP):
        for cx in range(half, size[1] - half + 1, CFOG_GRID_STEP):
            if not ov[cy - half : cy + half, cx - half : cx + half].all():
                continue
            template = do[:, cy - half : cy + half, cx - half : cx + half]
            y0, x0 = max(cy - half - margin, 0), max(cx - half - margin, 0)
            search = ds[:, y0 : min(cy + half + margin, size[0]), x0 : min(cx + half + margin, size[1])]
            if search.shape[1] < CFOG_WINDOW or search.shape[2] < CFOG_WINDOW:
                continue
            dx, dy, q = _ssd_match(template, search)
            src.append((cx, cy))
            dst.append((x0 + dx + half, y0 + dy + half))
            quality.append(q)
    if len(src) < 3:
        raise RegistrationFailed("CFOG: fewer than 3 windows to match")
    t = lambda a: torch.tensor(np.array(a), dtype=torch.float64).unsqueeze(0)  # noqa: E731
    affine = fit_affine_robust(t(src).float(), t(dst).float(), t(quality).float(), threshold=3.0)[0].double()
    return affine_flow(affine.numpy(), size)


BASELINES: dict[str, Method] = {
    "identity": identity,
    "phase_correlation": phase_correlation,
    "mutual_information": mutual_information_affine,
    "sift_ransac": sift_ransac,
    "cfog": cfog,
}
