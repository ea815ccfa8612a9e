"""Seeded evaluation cases from held-out real pairs, saved as small JSON recipes and rebuilt exactly.

A case is a quadrant crop of a real pair, how the pair's own misalignment is handled (`CLEANINGS`) and a
recorded misregistration (affine B and a smooth-field grid). The JSON holds only these numbers; the images
are rebuilt from the real data, so a saved case list is tiny and exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.synthetic_warp import Misregistration, bounded_field_grid, centred_affine, move_sar, smooth_field, true_flow
from model.training import sample_mask
from training.data import QUADRANT, Quadrant, load_pairs, read_quadrants, select_quadrants

from .pair_residual import PairResidual, estimate_pair_residual


@dataclass(frozen=True)
class Protocol:
    """How cases of one protocol are drawn."""

    name: str
    size: int
    max_rotation_deg: float
    max_translation_px: float
    max_scale_change: float
    field_amplitude_px: float
    """Largest displacement of the smooth non-rigid field, px (its magnitude, not a component)."""
    max_shear: float = 0.0


PROTOCOLS = {
    "soma": Protocol("soma", 512, 20.0, 50.0, 0.1, 0.0),
    "residual": Protocol("residual", 512, 1.0, 8.0, 0.02, 1.5),
}
"""`soma`: the paper's protocol. `residual`: what archive scenes look like after geocoding."""
FIELD_GRID = 4
CLEANINGS = ("raw", "offset", "field")
"""How a case's truth treats the pair's own misalignment: `raw` takes the pair as aligned (every quadrant);
`offset` adds the quadrant's offsets.csv translation (only quadrants where CFOG and MI agree); `field`
removes the pair's own smooth residual field (`evaluation.pair_residual`, classical CFOG windows) from the
SAR, so the truth is the injected warp alone (quadrants whose windows the field explains)."""
FIELD_MIN_WINDOWS = 12
"""`field` cleaning: a quadrant needs at least this many matched CFOG windows ..."""
FIELD_MAX_MISFIT_PX = 0.75
"""... whose median distance from the fitted field is at most this."""


@dataclass(frozen=True)
class Case:
    """One saved evaluation case."""

    case_id: str
    protocol: str
    pair_id: str
    x0: int
    y0: int
    size: int
    offset: tuple[float, float]
    """The quadrant's own residual added to the truth (0, 0 for `raw` cases)."""
    affine: tuple[tuple[float, ...], ...]
    field_grid: tuple[tuple[tuple[float, ...], ...], ...] | None
    own_residual_grid: tuple[tuple[tuple[float, ...], ...], ...] | None = None
    """`field` cleaning: the whole pair's own residual as a bicubic control grid `(2, gy, gx)`, removed from
    the SAR when the case is rebuilt."""

    def misregistration(self) -> Misregistration:
        field = None if self.field_grid is None else smooth_field(np.array(self.field_grid), (self.size, self.size))
        return Misregistration(np.array(self.affine, dtype=np.float64), field, self.offset)


@dataclass
class Materialised:
    """A case's arrays: optical (3, S, S) uint8, moved SAR (1, S, S) float32 (NaN outside), truth."""

    case: Case
    optical: np.ndarray
    sar: np.ndarray
    flow: np.ndarray
    valid: np.ndarray


def draw_case(rng: np.random.Generator, protocol: Protocol, quadrant: Quadrant, index: int,
              offset: tuple[float, float], own_residual: PairResidual | None = None) -> Case:
    """One random misregistration of `quadrant` under `protocol`."""
    p, s = protocol, protocol.size
    affine = centred_affine(
        (s, s),
        rng.uniform(-p.max_rotation_deg, p.max_rotation_deg),
        1 + rng.uniform(-p.max_scale_change, p.max_scale_change),
        rng.uniform(-p.max_shear, p.max_shear),
        tuple(rng.uniform(-p.max_translation_px, p.max_translation_px, size=2)),
    )
    grid = bounded_field_grid(rng, p.field_amplitude_px, FIELD_GRID, (s, s)) if p.field_amplitude_px > 0 else None
    return Case(case_id=f"{p.name}-{index:03d}-{quadrant.pair_id}-{quadrant.x0}-{quadrant.y0}",
                protocol=p.name, pair_id=quadrant.pair_id, x0=quadrant.x0, y0=quadrant.y0, size=s,
                offset=offset, affine=tuple(map(tuple, affine.tolist())),
                field_grid=None if grid is None else _nested(grid),
                own_residual_grid=None if own_residual is None else _nested(own_residual.grid))


def _nested(grid: np.ndarray) -> tuple[tuple[tuple[float, ...], ...], ...]:
    return tuple(tuple(map(tuple, c)) for c in np.asarray(grid).tolist())


def build_cases(data_root: str | Path, protocol: str, tiles: tuple[str, ...], cleaning: str, seed: int,
                repeats: int = 1) -> list[Case]:
    """Cases over the quadrants of `tiles`, with the pair's own misalignment handled by `cleaning` (one of
    `CLEANINGS`)."""
    if cleaning not in CLEANINGS:
        raise ValueError(f"unknown cleaning {cleaning!r}; expected one of {CLEANINGS}")
    p = PROTOCOLS[protocol]
    quadrants = select_quadrants(read_quadrants(data_root), tiles, agree_only=cleaning == "offset")
    residuals: dict[str, PairResidual] = {}
    if cleaning == "field":
        pairs = load_pairs(data_root, {q.pair_id for q in quadrants})
        residuals = {pid: estimate_pair_residual(pair.optical, pair.sar) for pid, pair in pairs.items()}
        quadrants = [q for q in quadrants if _explained(residuals[q.pair_id], q)]
    rng = np.random.default_rng([seed, list(PROTOCOLS).index(protocol), CLEANINGS.index(cleaning)])
    cases = []
    for r in range(repeats):
        for q in quadrants:
            offset = q.offset if cleaning == "offset" else (0.0, 0.0)
            cases.append(draw_case(rng, p, q, len(cases), offset, residuals.get(q.pair_id)))
    return cases


def _explained(residual: PairResidual, quadrant: Quadrant) -> bool:
    windows, misfit = residual.explained(quadrant.x0, quadrant.y0, QUADRANT)
    return windows >= FIELD_MIN_WINDOWS and misfit <= FIELD_MAX_MISFIT_PX


def save_cases(path: str | Path, cases: list[Case]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps([asdict(c) for c in cases], indent=1))


def load_cases(path: str | Path) -> list[Case]:
    def tup(v):
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return [Case(**{k: tup(v) for k, v in d.items()}) for d in json.loads(Path(path).read_text())]


def materialise(cases: list[Case], data_root: str | Path) -> list[Materialised]:
    """Rebuild each case's images and exact truth from the real pairs."""
    pairs = load_pairs(data_root, {c.pair_id for c in cases})
    out = []
    for c in cases:
        pair = pairs[c.pair_id]
        s = c.size
        if s > QUADRANT:
            raise ValueError(f"{c.case_id}: size {s} exceeds a quadrant")
        optical = pair.optical[:, c.y0 : c.y0 + s, c.x0 : c.x0 + s]
        mis = c.misregistration()
        own = None if c.own_residual_grid is None else smooth_field(np.array(c.own_residual_grid), pair.sar.shape[-2:])
        sar = move_sar(pair.sar.astype(np.float32), mis, (s, s), (c.x0, c.y0), own)
        flow, defined = true_flow(mis, (s, s))
        valid = defined & sample_mask(np.isfinite(sar[0]), flow)
        out.append(Materialised(c, optical, sar, flow, valid))
    return out
