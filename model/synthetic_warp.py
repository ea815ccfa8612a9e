"""Known misregistrations of a real, aligned SAR tile: the exact ground-truth flow for training and tests.

Convention: the moved SAR is made by a backward map ``moved(q) = sar(G(q))`` with
``G(q) = B q + m(q)`` (B affine, m a smooth field, both in pixels). With the source pair's own residual
r (``sar(p + r)`` shows ``optical(p)``), the flow that registers the moved SAR satisfies
``G(p + flow(p)) = p + r``, i.e. ``coregistered(p) = moved(p + flow(p)) = sar(p + r)``; its affine part
is B^-1 followed by the shift r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import cell_centres, inside, sample, sample_nan_aware

INVERSION_ITERATIONS = 30
COVERAGE_TOLERANCE = 1e-3
"""A moved pixel is NaN when less than 1 - this of its bilinear support is valid SAR."""


@dataclass(frozen=True)
class Misregistration:
    """How a moved SAR tile was made from the aligned one."""

    affine: np.ndarray
    """`(2, 3)` B: moved-SAR px -> aligned-SAR px."""
    field: np.ndarray | None = None
    """`(2, H, W)` smooth extra displacement m(q) in px, or None."""
    pair_offset: tuple[float, float] = (0.0, 0.0)
    """The source pair's own residual r = (dx, dy): SAR(p + r) shows the ground point of optical(p)."""

    @property
    def true_affine(self) -> np.ndarray:
        """`(2, 3)` reference px -> moved-SAR px: ``q = B^-1 (p + r)``."""
        inv = np.linalg.inv(np.vstack([self.affine, [0.0, 0.0, 1.0]]))[:2]
        return np.hstack([inv[:, :2], (inv[:, :2] @ np.asarray(self.pair_offset) + inv[:, 2])[:, None]])


@dataclass(frozen=True)
class MisregistrationRange:
    """Ranges a random misregistration is drawn from (uniform)."""

    max_rotation_deg: float = 20.0
    max_translation_px: float = 50.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_shear: float = 0.05
    field_amplitude_px: float = 2.0
    field_grid: int = 4
    """The smooth field is bicubic from a `field_grid` x `field_grid` random grid."""


def centred_affine(size: tuple[int, int], rotation_deg: float, scale: float, shear: float,
                   shift: tuple[float, float]) -> np.ndarray:
    """`(2, 3)` rotation, scale and shear about the tile centre, then a shift (px)."""
    height, width = size
    t = math.radians(rotation_deg)
    linear = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = linear @ np.array([[1.0, shear], [0.0, 1.0]])
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return np.hstack([linear, (centre - linear @ centre + np.asarray(shift, dtype=np.float64))[:, None]])


def smooth_field(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`(2, H, W)` float32 field, bicubic from a coarse `(2, g, g)` grid spanning the tile corner to corner."""
    up = F.interpolate(torch.as_tensor(grid, dtype=torch.float64).unsqueeze(0), size=size, mode="bicubic",
                       align_corners=True)
    return up[0].float().numpy()


def random_field_grid(rng: np.random.Generator, amplitude: float, grid: int) -> np.ndarray:
    """`(2, g, g)` random grid whose largest |component| is `amplitude` px (the field's largest
    displacement can reach about sqrt(2) x that: see `bounded_field_grid`)."""
    g = rng.uniform(-1, 1, size=(2, grid, grid))
    return amplitude * g / max(np.abs(g).max(), 1e-6)


def bounded_field_grid(rng: np.random.Generator, amplitude: float, grid: int, size: tuple[int, int]) -> np.ndarray:
    """`(2, g, g)` random grid whose bicubic field over `size` has its largest displacement, as a vector,
    exactly `amplitude` px: a field "of at most `amplitude` px" in the sense a protocol states it."""
    g = random_field_grid(rng, 1.0, grid)
    peak = float(np.hypot(*smooth_field(g, size)).max())
    return amplitude * g / max(peak, 1e-6)


def random_misregistration(rng: np.random.Generator, size: tuple[int, int],
                           ranges: MisregistrationRange = MisregistrationRange()) -> Misregistration:
    """A random affine about the tile centre plus a smooth field, drawn from `ranges`."""
    affine = centred_affine(
        size,
        rng.uniform(-ranges.max_rotation_deg, ranges.max_rotation_deg),
        rng.uniform(*ranges.scale_range),
        rng.uniform(-ranges.max_shear, ranges.max_shear),
        tuple(rng.uniform(-ranges.max_translation_px, ranges.max_translation_px, size=2)),
    )
    field = None
    if ranges.field_amplitude_px > 0:
        field = smooth_field(random_field_grid(rng, ranges.field_amplitude_px, ranges.field_grid), size)
    return Misregistration(affine=affine, field=field)


def _backward_map(mis: Misregistration, size: tuple[int, int]) -> torch.Tensor:
    """`(1, 2, H, W)` G(q) at every pixel q."""
    q = cell_centres(*size, 1).double()
    b = torch.from_numpy(mis.affine)
    g = torch.einsum("ij,jhw->ihw", b[:, :2], q) + b[:, 2, None, None]
    if mis.field is not None:
        g = g + torch.from_numpy(mis.field).double()
    return g.unsqueeze(0).float()


def move_sar(sar: np.ndarray, mis: Misregistration, size: tuple[int, int] | None = None,
             origin: tuple[int, int] = (0, 0), own_residual: np.ndarray | None = None) -> np.ndarray:
    """The misregistered SAR tile `(C, h, w)` float32: ``moved(q) = sar(origin + G(q))``.

    `sar` may be larger than the tile (`size`, default its own): content from around the tile then
    fills what the transform brings in. NaN where ``origin + G(q)`` leaves `sar` or touches a NaN.
    `own_residual` `(2, H, W)` on `sar`'s grid, the pair's own misalignment r(p) (``sar(p + r(p))`` shows
    ``optical(p)``), is removed in the same resampling: ``moved(q) = sar(s + r(s))``, s = origin + G(q); the
    truth is then the injected warp alone (leave `mis.pair_offset` at zero).
    """
    size = size or sar.shape[-2:]
    g = _backward_map(mis, size) + torch.tensor([float(origin[0]), float(origin[1])]).view(1, 2, 1, 1)
    if own_residual is not None:
        r = torch.from_numpy(np.asarray(own_residual, np.float32)).unsqueeze(0)
        g = g + sample(r, g, sar.shape[-2:], padding="border")
    data = torch.from_numpy(np.asarray(sar, np.float32))
    return sample_nan_aware(data, g, sar.shape[-2:], COVERAGE_TOLERANCE).numpy()


def true_flow(mis: Misregistration, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The exact flow `(2, H, W)` that registers the moved SAR, and where it is defined `(H, W)` bool.

    Defined where p + flow(p) falls inside the moved tile. Solved by fixed-point iteration of
    ``q = B^-1 (p + r - m(q))``.
    """
    p = cell_centres(*size, 1).double().unsqueeze(0)  # (1, 2, H, W)
    inv = torch.from_numpy(mis.true_affine)  # includes r
    q = torch.einsum("ij,bjhw->bihw", inv[:, :2], p) + inv[:, 2, None, None]
    if mis.field is not None:
        field = torch.from_numpy(mis.field).unsqueeze(0).double()
        for _ in range(INVERSION_ITERATIONS):
            m = sample(field.float(), q.float(), size).double()
            q = torch.einsum("ij,bjhw->bihw", inv[:, :2], p - m) + inv[:, 2, None, None]
    flow = (q - p)[0].float()
    return flow.numpy(), inside(q.float(), size)[0].numpy()


def shifted_file_flow(shift_px: tuple[float, float], field: np.ndarray) -> np.ndarray:
    """The flow `(2, H, W)` that registers a SAR moved by `field` and then written with its geotransform
    shifted by `shift_px` (reference px, +x east, +y south).

    On the reference grid that file shows ``sar(p - s + w(p - s))`` at p, so the flow solves
    ``f = s - w(p + f - s)`` (fixed-point iteration). `field` `(2, H, W)` px gives the grid (zeros: a pure shift).
    """
    size = field.shape[-2:]
    p = cell_centres(*size, 1).unsqueeze(0).double()
    w = torch.from_numpy(np.asarray(field, np.float32)).unsqueeze(0)
    s = torch.tensor(shift_px, dtype=torch.float64).view(1, 2, 1, 1)
    f = s.expand_as(p).clone()
    for _ in range(INVERSION_ITERATIONS):
        f = s - sample(w, (p + f - s).float(), size).double()
    return f[0].float().numpy()
