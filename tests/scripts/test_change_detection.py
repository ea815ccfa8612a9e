"""The worked example of docs/change_detection.md, run as a script on a cube with a known change."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.config import StorageOptions
from pipeline.cube import append_pair, cube_path, open_cube
from tests.pipeline.cube_pairs import pair_arrays, write_pair

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "change_detection.py"
CHANGED = (slice(20, 40), slice(30, 60))
"""Where the second date is 6 dB brighter."""
UNSURE = (slice(60, 80), slice(0, 80))
"""Where the second date's certainty is below the threshold."""


def _script():
    spec = importlib.util.spec_from_file_location("change_detection", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_change_map_finds_the_change_where_both_dates_are_certain_and_nothing_else(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    before = pair_arrays(1, 2)
    before["certainty"] = np.where(before["valid"], 0.9, np.nan).astype(np.float32)
    after = {k: v.copy() for k, v in before.items()}
    after["sar"][(slice(None), *CHANGED)] += 6.0
    after["certainty"][UNSURE] = 0.05
    out = str(tmp_path / "out")
    for name, when, arrays in (("d1", "2024-01-05T05:10:00Z", before), ("d2", "2024-01-17T05:10:00Z", after)):
        append_pair(cube_path(out, "T1"), write_pair(str(tmp_path / "pairs"), name, when, 1, storage=storage,
                                                     arrays=arrays), storage)
    result = _script().change_map(open_cube(cube_path(out, "T1")), 0, 1, "vh", 0.2)
    mask = before["valid"].copy()
    mask[UNSURE] = False
    np.testing.assert_array_equal(result["mask"].values, mask)
    truth = np.zeros_like(mask)
    truth[CHANGED] = True
    np.testing.assert_array_equal(result["change"].values, truth & mask)
    np.testing.assert_allclose(result["log_ratio_db"].values[truth & mask], 6.0, atol=1e-4)

    png = tmp_path / "change.png"
    run = subprocess.run([sys.executable, str(SCRIPT), out, "T1", "--png", str(png)], cwd=ROOT, capture_output=True,
                         text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    assert stats["changed_fraction_of_kept"] == float((truth & mask).sum() / mask.sum())
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
