"""Read an archive of STAC Items (local folder or s3:// prefix) into plain `SceneItem`s.

An archive is either a static catalog (`catalog.json` at its root, followed with pystac) or a prefix whose
Item JSON files are found by listing. A malformed Item never stops the reading: it is reported as an
`ItemProblem` naming the file and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field

import fsspec
import pystac
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from model.errors import SomaError
from pipeline import StorageOptions

OPTICAL_COLLECTIONS = ("sentinel-2-l2a",)
SAR_COLLECTIONS = ("sentinel-1-grd", "sentinel-1-rtc")
OPTICAL_BANDS = ("red", "green", "blue", "nir")
"""Asset keys stacked, in this order, as the optical reference; red, green and blue are required."""
REQUIRED_OPTICAL = ("red", "green", "blue")
SAR_BANDS = ("vv", "vh")
"""Asset keys stacked, in this order, as the SAR; at least one is required."""
DATE_TOKEN = re.compile(r"^\d{8}(T\d{6})?$")
"""An id part that is an acquisition date (20201104, 20201104T183541): left out of a tile key."""
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Item ids become output names: letters, digits, dot, dash and underscore only (no path separators)."""


class ArchiveError(SomaError):
    """The archive itself cannot be read (not one bad Item: those are `ItemProblem`s)."""


@dataclass(frozen=True)
class SceneItem:
    """One Sentinel-1 or Sentinel-2 scene of the archive."""

    id: str
    collection: str
    datetime: dt.datetime
    """Acquisition time, timezone-aware UTC."""
    footprint: BaseGeometry
    """Lon/lat (EPSG:4326) footprint."""
    assets: dict[str, str]
    """Band asset key -> absolute href (local path or s3:// URL), only the bands this product uses."""
    nodata: float | None
    """Nodata of the band assets (`raster:bands`); None when undeclared or NaN (NaN always counts as missing)."""
    href: str
    tile: str = ""
    """The reference grid a Sentinel-2 item is on (`tile_key`): its cube's name."""

    @property
    def is_optical(self) -> bool:
        return self.collection in OPTICAL_COLLECTIONS


@dataclass(frozen=True)
class ItemProblem:
    """An Item that was skipped, and why."""

    href: str
    problem: str


@dataclass
class ArchiveListing:
    """What an archive holds: usable scenes and the Items that were skipped."""

    items: list[SceneItem] = field(default_factory=list)
    problems: list[ItemProblem] = field(default_factory=list)


class FsspecStacIO(pystac.StacIO):
    """pystac reading and writing through fsspec, so s3:// (any endpoint) works like a local folder."""

    def __init__(self, storage: StorageOptions) -> None:
        super().__init__()
        self.storage = storage

    def read_text(self, source: str | pystac.Link, *args, **kwargs) -> str:  # noqa: ANN002, ANN003 - pystac API
        href = source.href if isinstance(source, pystac.Link) else str(source)
        with fsspec.open(href, "rt", **self.storage.for_url(href)) as f:
            return f.read()

    def write_text(self, dest: str | pystac.Link, txt: str, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        href = dest.href if isinstance(dest, pystac.Link) else str(dest)
        fs, path = filesystem(href, self.storage)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "w") as f:
            f.write(txt)


def filesystem(url: str, storage: StorageOptions) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and path of a local path or s3:// URL."""
    return fsspec.core.url_to_fs(url, **storage.for_url(url))


def _url(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    return fs.unstrip_protocol(path) if like.startswith("s3://") else path


def _nodata(asset: pystac.Asset) -> float | None:
    bands = asset.extra_fields.get("raster:bands") or [{}]
    value = bands[0].get("nodata")
    if value is None or isinstance(value, str):  # "nan", "inf", "-inf": NaN is always missing anyway
        return None
    return None if math.isnan(float(value)) else float(value)


def tile_key(item: pystac.Item) -> str:
    """The name of the grid a Sentinel-2 Item is on: its MGRS tile from `grid:code` (`MGRS-33UUP` -> `33UUP`),
    `mgrs:*` or `s2:mgrs_tile`; else its id without its date parts (`S2_20201104_T11SMT_139-140` ->
    `S2_T11SMT_139-140`), so acquisitions of one grid share a key. A cube still refuses a pair on another grid."""
    p = item.properties
    if isinstance(p.get("grid:code"), str) and p["grid:code"].startswith("MGRS-"):
        return p["grid:code"].removeprefix("MGRS-")
    if all(k in p for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")):
        return f"{p['mgrs:utm_zone']:02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    if isinstance(p.get("s2:mgrs_tile"), str):
        return p["s2:mgrs_tile"]
    return "_".join(part for part in item.id.split("_") if not DATE_TOKEN.match(part))


def scene_item(item: pystac.Item) -> SceneItem:
    """The `SceneItem` of a pystac Item; `ValueError` saying what is missing or malformed."""
    if not SAFE_ID.match(item.id or ""):
        raise ValueError(f"item id {item.id!r} is not a safe name (letters, digits, '.', '-', '_'; no '/' or '..')")
    collection = item.collection_id or ""
    if collection not in OPTICAL_COLLECTIONS + SAR_COLLECTIONS:
        raise ValueError(f"collection {collection!r} is neither Sentinel-2 {OPTICAL_COLLECTIONS} nor "
                         f"Sentinel-1 {SAR_COLLECTIONS}")
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise ValueError("no datetime (nor start_datetime)")
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    if item.geometry is None:
        raise ValueError("no geometry")
    footprint = shape(item.geometry)
    if footprint.is_empty or not footprint.is_valid or footprint.area == 0:
        raise ValueError(f"geometry is empty or invalid ({footprint.geom_type})")
    wanted, required = ((OPTICAL_BANDS, REQUIRED_OPTICAL) if collection in OPTICAL_COLLECTIONS
                        else (SAR_BANDS, ()))
    assets = {k: item.assets[k] for k in wanted if k in item.assets}
    missing = [k for k in required if k not in assets]
    if missing or not assets:
        raise ValueError(f"missing band asset(s) {missing or list(wanted)} (has {sorted(item.assets)})")
    hrefs = {k: a.get_absolute_href() or a.href for k, a in assets.items()}
    return SceneItem(item.id, collection, when.astimezone(dt.timezone.utc), footprint, hrefs,
                     _nodata(next(iter(assets.values()))), item.get_self_href() or "",
                     tile_key(item) if collection in OPTICAL_COLLECTIONS else "")


def _check_times(data: dict) -> None:
    """A clear error for an unparseable datetime (pystac would only say "month must be in 1..12")."""
    properties = data.get("properties") or {}
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = properties.get(key)
        if isinstance(value, str):
            try:
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"bad {key} {value!r} ({exc})") from exc


def _read_json(io: FsspecStacIO, href: str) -> dict:
    data = json.loads(io.read_text(href))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _catalog_item_hrefs(io: FsspecStacIO, catalog: str, problems: list[ItemProblem]) -> list[str]:
    """Item hrefs reachable from a static catalog through `child` and `item` links (an unreadable child is a
    problem, not the end of the walk)."""
    hrefs, stack, seen = [], [catalog], set()
    while stack:
        href = stack.pop()
        if href in seen:
            continue
        seen.add(href)
        try:
            data = _read_json(io, href)
        except (OSError, ValueError) as exc:
            if href == catalog:
                raise ArchiveError(f"{href}: not a readable STAC catalog ({type(exc).__name__}: {exc})") from exc
            problems.append(ItemProblem(href, f"not a readable STAC catalog or collection ({exc})"))
            continue
        for link in data.get("links", []):
            target = pystac.utils.make_absolute_href(link.get("href", ""), href)
            if link.get("rel") == "child":
                stack.append(target)
            elif link.get("rel") == "item":
                hrefs.append(target)
    return sorted(hrefs)


def read_archive(archive: str, storage: StorageOptions | None = None) -> ArchiveListing:
    """Every usable Sentinel-1/2 Item of `archive` (its `catalog.json`, else every Item JSON under it)."""
    storage = storage or StorageOptions()
    io = FsspecStacIO(storage)
    try:
        fs, root = filesystem(archive, storage)
        has_catalog = fs.isfile(f"{root.rstrip('/')}/catalog.json")
        if not has_catalog and not fs.isdir(root):
            raise ArchiveError(f"{archive}: no such folder or prefix")
        paths = [] if has_catalog else sorted(p for p in fs.find(root) if p.endswith(".json"))
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{archive}: cannot be listed ({type(exc).__name__}: {exc})") from exc
    listing = ArchiveListing()
    if has_catalog:
        hrefs = _catalog_item_hrefs(io, _url(fs, f"{root.rstrip('/')}/catalog.json", archive), listing.problems)
    else:
        hrefs = [_url(fs, path, archive) for path in paths]
    for href in hrefs:
        try:
            data = _read_json(io, href)
            if data.get("type") != "Feature":
                continue  # a collection, catalog or unrelated JSON found by listing
            _check_times(data)
            item = pystac.Item.from_dict(data, href=href, migrate=True)
        except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
            listing.problems.append(ItemProblem(href, f"not a readable STAC Item ({type(exc).__name__}: {exc})"))
            continue
        try:
            listing.items.append(scene_item(item))
        except (ValueError, TypeError, KeyError) as exc:
            listing.problems.append(ItemProblem(href, str(exc)))
    return listing
