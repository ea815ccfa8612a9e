"""Pair the scenes of an archive: each Sentinel-2 scene with the Sentinel-1 scene that covers it best, closest in
time (`best_sar`), or every Sentinel-1 scene over a Sentinel-2 tile once, against that tile's reference
(`stack`, for change-detection cubes)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shapely.geometry import box

from pipeline import ScenePair, StorageOptions

from .archive import SceneItem, read_archive

OVERLAP_TIE = 0.01
"""Overlaps within this of the best are equally good; the closest in time among them wins."""
BEST_SAR, STACK = "best_sar", "stack"
PAIRING_MODES = (BEST_SAR, STACK)
Bbox = tuple[float, float, float, float]
"""(west, south, east, north) in degrees."""


@dataclass(frozen=True)
class DiscoveredPair:
    """A Sentinel-2 reference and the Sentinel-1 scene chosen for it."""

    scene: ScenePair
    optical: SceneItem
    sar: SceneItem
    overlap: float
    """Share of the Sentinel-2 footprint the Sentinel-1 footprint covers."""
    days_apart: float
    mode: str = BEST_SAR
    """The pairing that produced the pair: `best_sar` or `stack` (`DiscoveryConfig.pairing`)."""

    @property
    def pair_id(self) -> str:
        return self.scene.pair_id

    @property
    def tile(self) -> str:
        """The reference grid's name (`archive.tile_key`): the pair's cube."""
        return self.optical.tile or self.optical.id


def pair_id(optical: SceneItem, sar: SceneItem) -> str:
    """Stable name of a pair from its two Item ids (ids are checked safe when the archive is read)."""
    return f"{optical.id}__{sar.id}"


def utc(value: str | dt.datetime | dt.date | None) -> dt.datetime | None:
    """An ISO date/time (or date, or datetime) as an aware UTC datetime; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class DiscoveryConfig:
    """Which scenes of an archive are paired: the one typed place for discovery's settings (flows, CLI and
    deployment pass it whole)."""

    start: str | None = None
    """First Sentinel-2 acquisition time, ISO (inclusive); None: the archive's first."""
    end: str | None = None
    """End of the range, ISO (exclusive); None: open."""
    bbox: Bbox | None = None
    """Only Sentinel-2 scenes intersecting this (west, south, east, north) in degrees; None: anywhere."""
    max_days: float = 12
    """Largest gap between the Sentinel-1 and the Sentinel-2 acquisition, days."""
    min_overlap: float = 0.3
    """Smallest share of the Sentinel-2 footprint the Sentinel-1 footprint must cover."""
    pairing: str = BEST_SAR
    """`best_sar`: each Sentinel-2 scene in [start, end) with its best Sentinel-1 scene. `stack`: every
    Sentinel-1 scene acquired in [start, end) over a Sentinel-2 tile, once per tile, against the tile's
    reference: its scene closest in time within `max_days`, or `reference`."""
    reference: str | None = None
    """`stack` only: the Sentinel-2 item id every Sentinel-1 scene over its tile is registered against (no
    `max_days` limit); None: each Sentinel-1 scene's closest Sentinel-2 scene of the tile."""

    def __post_init__(self) -> None:
        if self.pairing not in PAIRING_MODES:
            raise ValueError(f"pairing {self.pairing!r} is not one of {PAIRING_MODES}")
        if self.reference is not None and self.pairing != STACK:
            raise ValueError(f"a fixed reference ({self.reference}) needs pairing={STACK!r}")

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """[start, end) as aware UTC datetimes; refused when end is not after start."""
        start, end = utc(self.start), utc(self.end)
        if start and end and end <= start:
            raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
        return start, end


def match_pairs(items: list[SceneItem], config: DiscoveryConfig = DiscoveryConfig()) -> list[DiscoveredPair]:
    """The archive's pairs under `config.pairing` (`best_sar`, the default, or `stack`)."""
    return (_stack_pairs if config.pairing == STACK else _best_sar_pairs)(items, config)


def _best_sar_pairs(items: list[SceneItem], config: DiscoveryConfig) -> list[DiscoveredPair]:
    """For each Sentinel-2 item acquired in [start, end) and intersecting `bbox`, the Sentinel-1 item within
    `max_days` whose footprint covers at least `min_overlap` of it: the largest overlap, then the closest time."""
    start_t, end_t = config.window()
    sars = [i for i in items if not i.is_optical]
    pairs = []
    for opt in _references(items, config):
        if not _in_window(opt, start_t, end_t):
            continue
        candidates = [(*fit, sar) for sar in sars if (fit := _fit(opt, sar, config)) is not None]
        if not candidates:
            continue
        best = max(c[0] for c in candidates)
        overlap, days, sar = min((c for c in candidates if c[0] >= best - OVERLAP_TIE), key=lambda c: (c[1], c[2].id))
        pairs.append(_pair(opt, sar, overlap, days, BEST_SAR))
    return pairs


def _stack_pairs(items: list[SceneItem], config: DiscoveryConfig) -> list[DiscoveredPair]:
    """For each Sentinel-2 tile (its items intersecting `bbox`), every Sentinel-1 item acquired in [start, end)
    covering at least `min_overlap` of a reference, paired once with the tile's reference: `config.reference`,
    else the tile's item closest in time within `max_days` (then the larger overlap, then the id)."""
    start_t, end_t = config.window()
    references = _references(items, config)
    if config.reference is not None:
        references = [o for o in references if o.id == config.reference]
        if not references:
            raise ValueError(f"reference {config.reference!r} is not a Sentinel-2 item of the archive "
                             "(inside the bbox)")
    tiles: dict[str, list[SceneItem]] = {}
    for opt in references:
        tiles.setdefault(opt.tile or opt.id, []).append(opt)
    sars = sorted((i for i in items if not i.is_optical and _in_window(i, start_t, end_t)),
                  key=lambda i: (i.datetime, i.id))
    pairs, fixed = [], config.reference is not None
    for tile in sorted(tiles):
        for sar in sars:
            candidates = [(*fit, opt) for opt in tiles[tile] if (fit := _fit(opt, sar, config, fixed)) is not None]
            if candidates:
                overlap, days, opt = min(candidates, key=lambda c: (c[1], -c[0], c[2].id))
                pairs.append(_pair(opt, sar, overlap, days, STACK))
    return pairs


def _references(items: list[SceneItem], config: DiscoveryConfig) -> list[SceneItem]:
    """The Sentinel-2 items intersecting `bbox`, by time."""
    area = box(*config.bbox) if config.bbox else None
    return sorted((i for i in items if i.is_optical and (area is None or i.footprint.intersects(area))),
                  key=lambda i: (i.datetime, i.id))


def _in_window(item: SceneItem, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    return not ((start and item.datetime < start) or (end and item.datetime >= end))


def _fit(opt: SceneItem, sar: SceneItem, config: DiscoveryConfig, fixed: bool = False) -> tuple[float, float] | None:
    """(overlap, days apart) when `sar` may be paired with `opt`, else None; `fixed`: no `max_days` limit."""
    days = abs((sar.datetime - opt.datetime).total_seconds()) / 86400
    if days > config.max_days and not fixed:
        return None
    overlap = opt.footprint.intersection(sar.footprint).area / opt.footprint.area
    return (overlap, days) if overlap >= config.min_overlap else None


def _pair(opt: SceneItem, sar: SceneItem, overlap: float, days: float, mode: str) -> DiscoveredPair:
    scene = ScenePair(pair_id(opt, sar), tuple(opt.assets.values()), tuple(sar.assets.values()),
                      optical_item=opt.id, sar_item=sar.id, optical_nodata=opt.nodata, sar_nodata=sar.nodata,
                      optical_datetime=opt.datetime.isoformat(), sar_datetime=sar.datetime.isoformat(),
                      sar_polarisations=tuple(sar.assets))
    return DiscoveredPair(scene, opt, sar, overlap, days, mode)


def discover_pairs(archive: str, config: DiscoveryConfig = DiscoveryConfig(),
                   storage: StorageOptions | None = None) -> list[DiscoveredPair]:
    """The scene pairs of `archive` (see `match_pairs`); Items that cannot be used are skipped."""
    return match_pairs(read_archive(archive, storage).items, config)

