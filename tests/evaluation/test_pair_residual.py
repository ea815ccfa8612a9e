"""The pair's own residual field: recovers a smooth misalignment injected into a real pair, and `field`
cleaning rebuilds its cases exactly."""

import numpy as np
import pytest
import torch

from evaluation.cases import build_cases, load_cases, materialise, save_cases
from evaluation.pair_residual import estimate_pair_residual
from model.geometry import warp
from model.synthetic_warp import smooth_field
from tests.conftest import SAMPLE

INJECTED_PEAK_PX = 2.0
MARGIN = 96
"""Pixels at the pair's border, outside every window centre, where the field is extrapolated."""


def test_an_injected_smooth_residual_is_recovered(volkov_pair):
    optical, sar = volkov_pair
    before = estimate_pair_residual(optical, sar)
    grid = np.random.default_rng(5).uniform(-1, 1, size=(2, 3, 3))
    injected = smooth_field(grid, sar.shape[-2:])
    injected *= INJECTED_PEAK_PX / np.hypot(*injected).max()
    # moved(q) = sar(q + f(q)): the content moves by -f, so the pair's residual becomes r - f
    moved = warp(torch.from_numpy(sar.astype(np.float32))[None], torch.from_numpy(injected)[None])[0].numpy()
    after = estimate_pair_residual(optical, moved)
    recovered = before.field() - after.field()
    inner = (slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    error = np.sqrt((np.hypot(*(recovered - injected)[inner]) ** 2).mean())
    assert np.hypot(*injected[inner]).mean() > 0.8
    assert error < 0.3, f"recovered the injected residual to {error:.2f} px RMS"


@pytest.mark.parametrize("protocol", ["residual"])
def test_field_cleaned_cases_round_trip_and_carry_no_offset(tmp_path, protocol):
    cases = build_cases(SAMPLE, protocol, ("T11SMT",), "field", seed=0)
    assert cases and all(c.offset == (0.0, 0.0) and c.own_residual_grid is not None for c in cases)
    save_cases(tmp_path / "c.json", cases[:1])
    again = load_cases(tmp_path / "c.json")
    assert again == cases[:1]
    a, b = materialise(cases[:1], SAMPLE)[0], materialise(again, SAMPLE)[0]
    np.testing.assert_array_equal(a.sar, b.sar)
