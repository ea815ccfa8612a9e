"""Match each Sentinel-2 scene of an archive with the Sentinel-1 scene that covers it best, closest in time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shapely.geometry import box

from pipeline import ScenePair, StorageOptions

from .archive import SceneItem, read_archive

OVERLAP_TIE = 0.01
"""Overlaps within this of the best are equally good; the closest in time among them wins."""
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

    @property
    def pair_id(self) -> str:
        return self.scene.pair_id


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

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """[start, end) as aware UTC datetimes; refused when end is not after start."""
        start, end = utc(self.start), utc(self.end)
        if start and end and end <= start:
            raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
        return start, end


def match_pairs(items: list[SceneItem], config: DiscoveryConfig = DiscoveryConfig()) -> list[DiscoveredPair]:
    """For each Sentinel-2 item acquired in [start, end) and intersecting `bbox`, the Sentinel-1 item within
    `max_days` whose footprint covers at least `min_overlap` of it: the largest overlap, then the closest time."""
    start_t, end_t = config.window()
    max_days, min_overlap = config.max_days, config.min_overlap
    area = box(*config.bbox) if config.bbox else None
    sars = [i for i in items if not i.is_optical]
    pairs = []
    for opt in sorted((i for i in items if i.is_optical), key=lambda i: (i.datetime, i.id)):
        if (start_t and opt.datetime < start_t) or (end_t and opt.datetime >= end_t):
            continue
        if area is not None and not opt.footprint.intersects(area):
            continue
        candidates = []
        for sar in sars:
            days = abs((sar.datetime - opt.datetime).total_seconds()) / 86400
            if days > max_days:
                continue
            overlap = opt.footprint.intersection(sar.footprint).area / opt.footprint.area
            if overlap >= min_overlap:
                candidates.append((overlap, days, sar))
        if not candidates:
            continue
        best = max(c[0] for c in candidates)
        overlap, days, sar = min((c for c in candidates if c[0] >= best - OVERLAP_TIE), key=lambda c: (c[1], c[2].id))
        scene = ScenePair(pair_id(opt, sar), tuple(opt.assets.values()), tuple(sar.assets.values()),
                          optical_item=opt.id, sar_item=sar.id, optical_nodata=opt.nodata, sar_nodata=sar.nodata)
        pairs.append(DiscoveredPair(scene, opt, sar, overlap, days))
    return pairs


def discover_pairs(archive: str, config: DiscoveryConfig = DiscoveryConfig(),
                   storage: StorageOptions | None = None) -> list[DiscoveredPair]:
    """The scene pairs of `archive` (see `match_pairs`); Items that cannot be used are skipped."""
    return match_pairs(read_archive(archive, storage).items, config)

