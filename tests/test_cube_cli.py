"""`soma cube list|show` on a real cube of three known pairs."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from pipeline.config import StorageOptions
from pipeline.cube import append_pair, cube_path
from tests.pipeline.cube_pairs import pair_arrays, write_pair

TIMES = {"b": ("2024-02-01T05:00:00Z", 2), "c": ("2024-03-01T05:00:00Z", 3), "a": ("2024-01-01T05:00:00Z", 1)}


def test_cube_list_and_show_give_the_time_steps_in_order_with_their_quality(tmp_path):
    storage = StorageOptions(endpoint_url=None)
    out = str(tmp_path / "out")
    for name, (when, seed) in TIMES.items():  # appended out of time order
        append_pair(cube_path(out, "T33UUP"), write_pair(str(tmp_path / "pairs"), name, when, seed, storage=storage),
                    storage)
    runner = CliRunner()
    listed = runner.invoke(app, ["cube", "list", out])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[1].split() == ["T33UUP", "3", "2024-01-01T05:00:00", "2024-03-01T05:00:00"]

    steps = runner.invoke(app, ["cube", "list", out, "T33UUP"])
    assert steps.exit_code == 0, steps.output
    rows = [line.split() for line in steps.output.splitlines()[1:]]
    assert [r[2] for r in rows] == ["a", "b", "c"]
    for row, (_, seed) in zip(rows, sorted(TIMES.values())):
        truth = pair_arrays(seed, 2)
        assert float(row[3]) == round(float(np.median(truth["certainty"][truth["valid"]])), 3)

    shown = runner.invoke(app, ["cube", "show", out, "T33UUP"])
    assert shown.exit_code == 0, shown.output
    assert "EPSG:32633" in shown.output and "bands: vv, vh" in shown.output
    assert "sar_coregistered  ('time', 'band', 'y', 'x')" in shown.output and "chunks (1, 1, 96, 80)" in shown.output
    assert shown.output.count("append ") == 3

    missing = runner.invoke(app, ["cube", "list", out, "nope"])
    assert missing.exit_code == 1 and "no cube here" in missing.output
