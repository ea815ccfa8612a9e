"""Reading STAC archives and matching Sentinel-2 with Sentinel-1 scenes by footprint and time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from shapely.geometry import box

from flows.archive import ArchiveError, SceneItem, read_archive
from flows.coregister import DEFAULT_ARCHIVE, date_chunks
from flows.discovery import DiscoveryConfig, discover_pairs, match_pairs, utc
from pipeline import StorageOptions
from tests.conftest import MOTO_BUCKET


def scene(item_id: str, optical: bool, day: float, footprint=(0, 0, 1, 1), tile: str = "") -> SceneItem:
    when = dt.datetime(2021, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)
    assets = {"red": "r.tif", "green": "g.tif", "blue": "b.tif"} if optical else {"vv": "vv.tif"}
    return SceneItem(item_id, "sentinel-2-l2a" if optical else "sentinel-1-grd", when, box(*footprint), assets,
                     0.0 if optical else None, f"{item_id}.json", tile if optical else "")


def test_stack_pairing_registers_every_sar_scene_once_against_its_tiles_closest_reference():
    """Two tiles, two references on tile A: each S1 scene over a tile is paired once per tile, with that tile's
    reference closest in time within max_days; best_sar pairing on the same items gives one pair per S2 scene."""
    items = [scene("A1", True, 0, tile="A"), scene("A2", True, 20, tile="A"), scene("B1", True, 1, (5, 5, 6, 6), "B"),
             scene("s0", False, 2), scene("s1", False, 9), scene("s2", False, 13), scene("s3", False, 19),
             scene("s4", False, 40), scene("sB", False, 3, (5, 5, 6, 6)), scene("sAB", False, 5, (0, 0, 6, 6))]
    stack = match_pairs(items, DiscoveryConfig(pairing="stack", min_overlap=0.01))
    got = [(p.optical.id, p.sar.id) for p in stack]
    assert got == [("A1", "s0"), ("A1", "sAB"), ("A1", "s1"), ("A2", "s2"), ("A2", "s3"),
                   ("B1", "sB"), ("B1", "sAB")]  # s4 is 20 days from A2: none within max_days
    assert {p.mode for p in stack} == {"stack"} and [p.tile for p in stack][-1] == "B"
    best = match_pairs(items, DiscoveryConfig(min_overlap=0.01))
    assert [(p.optical.id, p.sar.id, p.mode) for p in best] == [("A1", "s0", "best_sar"), ("B1", "sB", "best_sar"),
                                                                 ("A2", "s3", "best_sar")]


def test_stack_pairing_with_a_fixed_reference_pairs_every_sar_scene_with_it_and_a_window_selects_sar_times():
    items = [scene("A1", True, 0, tile="A"), scene("A2", True, 20, tile="A"), scene("s1", False, 9),
             scene("s3", False, 19), scene("s4", False, 40)]
    fixed = match_pairs(items, DiscoveryConfig(pairing="stack", reference="A1", start="2021-03-05"))
    assert [(p.optical.id, p.sar.id) for p in fixed] == [("A1", "s1"), ("A1", "s3"), ("A1", "s4")]
    assert fixed[0].scene.sar_datetime == "2021-03-10T00:00:00+00:00" and fixed[0].scene.sar_polarisations == ("vv",)
    with pytest.raises(ValueError, match="reference 'nope' is not a Sentinel-2 item"):
        match_pairs(items, DiscoveryConfig(pairing="stack", reference="nope"))
    with pytest.raises(ValueError, match="needs pairing='stack'"):
        DiscoveryConfig(reference="A1")
    with pytest.raises(ValueError, match="pairing 'dense'"):
        DiscoveryConfig(pairing="dense")


def test_a_tile_key_is_the_mgrs_tile_or_the_id_without_its_dates():
    import pystac

    from flows.archive import tile_key

    def item(item_id: str, **props) -> pystac.Item:
        return pystac.Item(item_id, None, None, dt.datetime(2021, 3, 1), props)

    assert tile_key(item("x", **{"grid:code": "MGRS-33UUP"})) == "33UUP"
    assert tile_key(item("x", **{"mgrs:utm_zone": 9, "mgrs:latitude_band": "S", "mgrs:grid_square": "ND"})) == "09SND"
    assert tile_key(item("S2_20201104_T11SMT_139-140")) == tile_key(item("S2_20201116_T11SMT_139-140"))
    assert tile_key(item("S2_20201104T183541_T11SMT_139-140")) == "S2_T11SMT_139-140"


def test_the_bundled_catalog_gives_four_pairs_with_local_band_files():
    listing = read_archive(DEFAULT_ARCHIVE)
    assert listing.problems == []
    assert len(listing.items) == 10  # 4 Sentinel-2 scenes, 6 Sentinel-1 acquisitions (two of them made up)
    pairs = discover_pairs(DEFAULT_ARCHIVE)
    assert len(pairs) == 4
    for p in pairs:
        assert p.optical.id.split("_", 2)[2] == p.sar.id.split("_", 2)[2]  # each S2 scene found its own S1 scene
        assert 1 < p.days_apart < 4 and p.overlap > 0.9
        assert all(Path(h).is_file() for h in p.scene.optical + p.scene.sar)
    ben = next(p for p in pairs if "33UUP" in p.pair_id)
    assert [Path(h).stem for h in ben.scene.optical] == ["red", "green", "blue", "nir"]
    assert [Path(h).stem for h in ben.scene.sar] == ["vv", "vh"]
    assert ben.pair_id == "S2_20170613_33UUP_87_48__S1_20170615_33UUP_87_48"
    stack = discover_pairs(DEFAULT_ARCHIVE, DiscoveryConfig(pairing="stack"))
    per_tile = {t: [p.sar.id for p in stack if p.tile == t] for t in {p.tile for p in stack}}
    assert per_tile == {"S2_33UUP_87_48": ["S1_20170615_33UUP_87_48", "S1_20170621_33UUP_87_48"],
                        "S2_29SND_56_35": ["S1_20170810_29SND_56_35"],
                        "S2_T11SMT_139-140": ["S1_20201107_T11SMT_139-140", "S1_20201113_T11SMT_139-140"],
                        "S2_T11SMT_155-156": ["S1_20201107_T11SMT_155-156"]}


def test_a_catalog_in_s3_gives_the_same_pairs_with_s3_hrefs(moto_s3):
    endpoint, client, _ = moto_s3
    root = Path(DEFAULT_ARCHIVE)
    for path in root.rglob("*.json"):  # the Items and catalogs only: discovery reads no raster
        client.upload_file(str(path), MOTO_BUCKET, f"stac/{path.relative_to(root)}")
    pairs = discover_pairs(f"s3://{MOTO_BUCKET}/stac", storage=StorageOptions(endpoint_url=endpoint))
    local = discover_pairs(DEFAULT_ARCHIVE)
    assert [p.pair_id for p in pairs] == [p.pair_id for p in local]
    ben = next(p for p in pairs if "33UUP" in p.pair_id)
    assert ben.scene.sar == (f"s3://{MOTO_BUCKET}/stac/sentinel-1-grd/S1_20170615_33UUP_87_48/vv.tif",
                             f"s3://{MOTO_BUCKET}/stac/sentinel-1-grd/S1_20170615_33UUP_87_48/vh.tif")


def test_listing_a_prefix_without_catalog_reports_bad_items_and_keeps_the_rest(ben_archive):
    folder = ben_archive / "sentinel-2-l2a" / "S2_20170613_33UUP_87_48"
    good = json.loads((folder / "S2_20170613_33UUP_87_48.json").read_text())
    bad = {
        "no_date": good | {"id": "no_date", "properties": {}},
        "bad_date": good | {"id": "bad_date", "properties": {"datetime": "2021-13-45T99:00:00Z"}},
        "bad_geometry": good | {"id": "bad_geometry", "geometry": {"type": "Polygon", "coordinates": [
            [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},  # a bow tie: self-intersecting
        "no_blue": good | {"id": "no_blue", "assets": {k: v for k, v in good["assets"].items() if k != "blue"}},
        "escape": good | {"id": "../../escape"},
    }
    for name, item in bad.items():
        (ben_archive / f"{name}.json").write_text(json.dumps(item))
    (ben_archive / "broken.json").write_text("{not json")
    listing = read_archive(str(ben_archive))
    assert sorted(i.id for i in listing.items) == sorted(["S2_20170613_33UUP_87_48", "S1_20170615_33UUP_87_48",
                                                          "S2_20170807_29SND_56_35", "S1_20170810_29SND_56_35"])
    problems = {Path(p.href).stem: p.problem for p in listing.problems}
    assert set(problems) == {"no_date", "bad_date", "bad_geometry", "no_blue", "escape", "broken"}
    assert "bad datetime '2021-13-45T99:00:00Z'" in problems["bad_date"]
    assert "datetime" in problems["no_date"]
    assert "invalid" in problems["bad_geometry"]
    assert "blue" in problems["no_blue"]
    assert "safe name" in problems["escape"]
    assert "not a readable STAC Item" in problems["broken"]


def test_a_missing_archive_is_an_error_naming_it(tmp_path):
    with pytest.raises(ArchiveError, match="nowhere"):
        read_archive(str(tmp_path / "nowhere"))


def test_pairs_need_overlapping_footprints_and_close_dates():
    s2 = scene("s2", True, 0)
    far_away = scene("s1_far", False, 1, (5, 5, 6, 6))
    sliver = scene("s1_sliver", False, 1, (0.8, 0, 1.8, 1))  # covers 20 % of the S2 footprint
    too_late = scene("s1_late", False, 13)
    assert match_pairs([s2, far_away, sliver, too_late], DiscoveryConfig(max_days=12, min_overlap=0.3)) == []
    assert [p.sar.id for p in match_pairs([s2, sliver], DiscoveryConfig(min_overlap=0.1))] == ["s1_sliver"]
    assert [p.sar.id for p in match_pairs([s2, too_late], DiscoveryConfig(max_days=14))] == ["s1_late"]


def test_the_largest_overlap_wins_then_the_closest_date():
    s2 = scene("s2", True, 0)
    half = scene("s1_half", False, 1, (0.5, 0, 1.5, 1))
    full_late = scene("s1_full_late", False, -6)
    full_soon = scene("s1_full_soon", False, 2)
    assert match_pairs([s2, half, full_late])[0].sar.id == "s1_full_late"
    best = match_pairs([s2, half, full_late, full_soon])
    assert [(p.sar.id, round(p.overlap, 2), p.days_apart) for p in best] == [("s1_full_soon", 1.0, 2.0)]
    assert best[0].pair_id == "s2__s1_full_soon"
    assert best[0].scene.optical == ("r.tif", "g.tif", "b.tif") and best[0].scene.sar == ("vv.tif",)


def test_time_window_is_half_open_and_bbox_filters_reference_scenes():
    items = [scene("a", True, 0), scene("b", True, 10, (3, 3, 4, 4)), scene("s1a", False, 1),
             scene("s1b", False, 11, (3, 3, 4, 4))]
    assert [p.optical.id for p in match_pairs(items)] == ["a", "b"]
    assert [p.optical.id for p in match_pairs(items, DiscoveryConfig(start="2021-03-01", end="2021-03-11"))] == ["a"]
    assert [p.optical.id for p in match_pairs(items, DiscoveryConfig(start="2021-03-11"))] == ["b"]
    assert [p.optical.id for p in match_pairs(items, DiscoveryConfig(bbox=(2.5, 2.5, 3.5, 3.5)))] == ["b"]
    with pytest.raises(ValueError, match="after start"):
        match_pairs(items, DiscoveryConfig(start="2021-03-05", end="2021-03-01"))


def test_date_chunks_cover_the_range_once():
    chunks = date_chunks(utc("2017-06-01"), utc("2017-09-01"), 45)
    assert chunks[0][0] == utc("2017-06-01") and chunks[-1][1] == utc("2017-09-01")
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert len(chunks) == 3
