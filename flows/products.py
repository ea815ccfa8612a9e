"""What a co-registered pair publishes: a STAC Item beside its Zarr group, and one row of the run's table."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

import numpy as np
import pystac
import xarray as xr
from shapely.geometry import mapping

from pipeline import PairResult, StorageOptions, TileStatus
from pipeline.conventions import pixel_size
from pipeline.export import export_sar
from pipeline.store import open_pair

from .archive import FsspecStacIO, filesystem
from .discovery import DiscoveredPair

ZARR_MEDIA_TYPE = "application/vnd+zarr"
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
COLLECTION_FILE = "collection.json"
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

    pixel_m = float(np.hypot(*pixel_size(ds)) / np.sqrt(2))
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
    """Write the pair's STAC Item next to its group and return its href: assets the Zarr group, one GeoTIFF of
    the co-registered SAR per polarisation (written here) and the quicklook; `proj:*` of the reference grid, so
    odc-stac and stackstac load the SAR; its time is the Sentinel-1 acquisition's; derived from its two sources."""
    href = item_href(output, pair.pair_id)
    opt, sar = pair.optical, pair.sar
    group = open_pair(result.store, storage)
    item = pystac.Item(
        pair.pair_id, mapping(opt.footprint), list(opt.footprint.bounds), sar.datetime,
        {"soma:optical_item": opt.id, "soma:sar_item": sar.id, "soma:optical_datetime": opt.datetime.isoformat(),
         "soma:sar_datetime": sar.datetime.isoformat(), "soma:overlap": round(pair.overlap, 4),
         "soma:pairing": pair.mode, "soma:tile": pair.tile, "soma:tiles": result.tiles,
         "soma:status_counts": result.status_counts, "soma:median_certainty": row.median_certainty,
         "soma:median_flow_m": row.median_flow_m, "soma:similarity_gain": row.similarity_gain,
         **grid_properties(group), "created": dt.datetime.now(dt.timezone.utc).isoformat()},
        stac_extensions=[PROJECTION_EXTENSION, RASTER_EXTENSION], collection=PRODUCT_COLLECTION)
    item.add_asset("zarr", pystac.Asset(f"./{pair.pair_id}.zarr", "flow, certainty, valid, co-registered SAR",
                                        media_type=ZARR_MEDIA_TYPE, roles=["metadata"]))
    units = group.sar_coregistered.attrs.get("units")
    for polarisation, tif in export_sar(result.store, storage).items():
        bands = {"data_type": "float32", "nodata": "nan", **({"unit": units} if units else {})}
        item.add_asset(polarisation, pystac.Asset(
            f"./{tif.rsplit('/', 1)[1]}", f"co-registered SAR, {polarisation.upper()}", media_type=GEOTIFF_MEDIA_TYPE,
            roles=["data"], extra_fields={"raster:bands": [bands]}))
    if result.quicklook:
        folder, name = result.quicklook.rsplit("/", 1)
        beside = folder.rstrip("/") == output.rstrip("/")
        item.add_asset("quicklook", pystac.Asset(f"./{name}" if beside else result.quicklook,
                                                 "optical/SAR checkerboards and flow", media_type=pystac.MediaType.PNG,
                                                 roles=["overview"]))
    for source in (opt, sar):
        if source.href:
            item.add_link(pystac.Link("derived_from", source.href, media_type=pystac.MediaType.JSON))
    item.add_link(pystac.Link("collection", f"./{COLLECTION_FILE}", media_type=pystac.MediaType.JSON))
    item.set_self_href(href)
    FsspecStacIO(storage).write_text(href, json.dumps(item.to_dict(include_self_link=False), indent=1))
    return href


def grid_properties(group: xr.Dataset) -> dict:
    """`proj:code`, `proj:shape` and `proj:transform` of a product's grid (STAC projection extension v2)."""
    crs, t = group.rio.crs, group.rio.transform()
    epsg = crs.to_epsg()
    return {"proj:code": f"EPSG:{epsg}" if epsg else None, **({} if epsg else {"proj:wkt2": crs.to_wkt()}),
            "proj:shape": [group.sizes["y"], group.sizes["x"]], "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]}


def write_product_collection(output: str, storage: StorageOptions) -> str:
    """`{output}/collection.json`: the STAC Collection of every product Item under `output`, its extent theirs."""
    fs, root = filesystem(output, storage)
    io = FsspecStacIO(storage)
    items = []
    for path in sorted(fs.glob(f"{root.rstrip('/')}/*.json")):
        data = json.loads(fs.cat_file(path))
        if data.get("type") == "Feature" and data.get("collection") == PRODUCT_COLLECTION:
            items.append(data)
    times = sorted(i["properties"]["datetime"] for i in items)
    boxes = [i["bbox"] for i in items]
    extent = pystac.Extent(
        pystac.SpatialExtent([[min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                               max(b[3] for b in boxes)]] if boxes else [[-180, -90, 180, 90]]),
        pystac.TemporalExtent([[pystac.utils.str_to_datetime(times[0]), pystac.utils.str_to_datetime(times[-1])]]
                              if times else [[None, None]]))
    collection = pystac.Collection(
        PRODUCT_COLLECTION, "Sentinel-1 SAR co-registered onto Sentinel-2 optical grids by SOMA: per pair, the flow, "
        "its certainty and the co-registered SAR (Zarr), the SAR per polarisation (GeoTIFF), a quicklook",
        extent, license="other", stac_extensions=[PROJECTION_EXTENSION, RASTER_EXTENSION],
        title="SOMA S1-S2 co-registration")
    for i in items:
        collection.add_link(pystac.Link("item", f"./{i['id']}.json", media_type=pystac.MediaType.GEOJSON))
    href = f"{output.rstrip('/')}/{COLLECTION_FILE}"
    io.write_text(href, json.dumps(collection.to_dict(include_self_link=False, transform_hrefs=False), indent=1))
    return href
