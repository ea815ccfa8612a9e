"""What a co-registered pair publishes: a STAC Item beside its Zarr group, and one row of the run's table."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

import numpy as np
import pystac
from shapely.geometry import mapping

from pipeline import PairResult, StorageOptions, TileStatus
from pipeline.store import open_pair

from .archive import FsspecStacIO
from .discovery import DiscoveredPair

ZARR_MEDIA_TYPE = "application/vnd+zarr"
PRODUCT_COLLECTION = "soma-s1-s2-coregistration"
REGISTERED = (TileStatus.OK, TileStatus.LOW_CONFIDENCE)
"""Tiles whose flow is used for the pair's figures."""


@dataclass(frozen=True)
class PairRow:
    """One line of the run's quality table (the Prefect artifact and the CLI summary)."""

    pair_id: str
    outcome: str
    """`registered`, `skipped` (already complete) or `failed`."""
    tiles_ok: int = 0
    tiles_low: int = 0
    tiles_no_data: int = 0
    tiles_failed: int = 0
    median_certainty: float = float("nan")
    median_flow_m: float = float("nan")
    """Median over registered tiles of each tile's median |flow|, metres."""
    similarity_gain: float = float("nan")
    """Median over registered tiles of structural similarity after minus before."""
    seconds: float = 0.0
    error: str = ""
    cube: str = ""
    """The tile's change-detection cube the pair was appended to; empty when not (yet) appended."""
    time_step: int = -1
    """The pair's time step in that cube when it was appended (later, earlier acquisitions may move it up)."""

    def as_dict(self) -> dict:
        return asdict(self)


def pair_row(result: PairResult, storage: StorageOptions) -> PairRow:
    """The table row of a finished pair, from its tile table (cheap: no pixel array is read)."""
    ds = open_pair(result.store, storage)
    status = ds.tile_status.values
    counts = {s: int((status == s).sum()) for s in TileStatus}
    used = np.isin(status, [int(s) for s in REGISTERED])

    def median(values: np.ndarray) -> float:
        return float(np.nanmedian(values[used])) if used.any() else float("nan")

    pixel_m = float(np.hypot(ds.flow_x.attrs["pixel_size_m"], ds.flow_y.attrs["pixel_size_m"]) / np.sqrt(2))
    return PairRow(
        result.pair_id, "skipped" if result.already_complete else "registered",
        counts[TileStatus.OK], counts[TileStatus.LOW_CONFIDENCE], counts[TileStatus.NO_DATA],
        counts[TileStatus.FAILED], median(ds.tile_mean_certainty.values),
        median(ds.tile_flow_median_px.values) * pixel_m,
        median(ds.tile_similarity_after.values - ds.tile_similarity_before.values), round(result.seconds, 1))


def item_href(output: str, pair_id: str) -> str:
    """`{output}/{pair_id}.json`, beside the pair's `{pair_id}.zarr`."""
    return f"{output.rstrip('/')}/{pair_id}.json"


def write_product_item(pair: DiscoveredPair, result: PairResult, row: PairRow, output: str,
                       storage: StorageOptions) -> str:
    """Write the pair's STAC Item (assets: the Zarr group and the quicklook; derived from its two source
    Items) next to the group; returns its href."""
    href = item_href(output, pair.pair_id)
    opt = pair.optical
    item = pystac.Item(
        pair.pair_id, mapping(opt.footprint), list(opt.footprint.bounds), opt.datetime,
        {"soma:optical_item": opt.id, "soma:sar_item": pair.sar.id, "soma:sar_datetime": pair.sar.datetime.isoformat(),
         "soma:overlap": round(pair.overlap, 4), "soma:pairing": pair.mode, "soma:tiles": result.tiles, "soma:status_counts": result.status_counts,
         "soma:median_certainty": row.median_certainty, "soma:median_flow_m": row.median_flow_m,
         "soma:similarity_gain": row.similarity_gain,
         "created": dt.datetime.now(dt.timezone.utc).isoformat()},
        collection=PRODUCT_COLLECTION)
    item.add_asset("zarr", pystac.Asset(f"./{pair.pair_id}.zarr", "flow, certainty, valid, co-registered SAR",
                                        media_type=ZARR_MEDIA_TYPE, roles=["data"]))
    if result.quicklook:
        folder, name = result.quicklook.rsplit("/", 1)
        beside = folder.rstrip("/") == output.rstrip("/")
        item.add_asset("quicklook", pystac.Asset(f"./{name}" if beside else result.quicklook,
                                                 "optical/SAR checkerboards and flow", media_type=pystac.MediaType.PNG,
                                                 roles=["overview"]))
    for source in (opt, pair.sar):
        if source.href:
            item.add_link(pystac.Link("derived_from", source.href, media_type=pystac.MediaType.JSON))
    item.set_self_href(href)
    FsspecStacIO(storage).write_text(href, json.dumps(item.to_dict(include_self_link=False), indent=1))
    return href
