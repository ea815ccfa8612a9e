"""The bundled sample archive: real scenes in the public archive layout, each SAR scene carrying exactly the
misregistration its sidecar records, and small enough to ship."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from flows.archive import read_archive
from flows.coregister import DEFAULT_ARCHIVE
from flows.injected import SAMPLE_SIDECAR, injected_flow
from tests.conftest import SAMPLE

REPO_SAMPLE_LIMIT_MB = 30


def test_each_sar_scene_is_shifted_by_what_the_sidecar_records():
    scenes = json.loads(SAMPLE_SIDECAR.read_text())["scenes"]
    items = {i.id: i for i in read_archive(DEFAULT_ARCHIVE).items}
    assert set(scenes) == {i for i, item in items.items() if not item.is_optical}
    for sar_id, entry in scenes.items():
        with rasterio.open(items[entry["optical_item"]].assets["red"]) as opt, \
                rasterio.open(next(iter(items[sar_id].assets.values()))) as sar:
            assert (sar.transform.c - opt.transform.c, sar.transform.f - opt.transform.f) == \
                   tuple(entry["shift_m"]), sar_id
            assert sar.shape == opt.shape and sar.crs == opt.crs
            flow = injected_flow(entry, opt.shape, (opt.res[0], opt.res[1]))
        field = np.array(entry["field_grid_px"])
        assert 0 < np.abs(field).max() <= 1.5 + 1e-9
        shift_px = np.array(entry["shift_m"]) / np.array([opt.res[0], -opt.res[1]])
        assert np.abs(flow.reshape(2, -1).mean(axis=1) - shift_px).max() < 1.5  # the shift dominates the field


def test_the_bundled_sample_stays_small():
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < REPO_SAMPLE_LIMIT_MB * 1e6, f"data/sample is {size / 1e6:.1f} MB"
