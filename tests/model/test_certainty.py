"""Certainty: the calibration's fits recover a known probability, the curvature feature sees the aperture
problem, calibration files are checked, and the bundled calibration ranks a real case's pixels by error."""

import dataclasses

import numpy as np
import pytest
import torch

from model import CheckpointError, Registrar
from model.certainty import (CertaintyCalibration, calibration_path, fit_isotonic, fit_logistic, load_calibration,
                             smallest_eigenvalue)
from model.registrar import BUNDLED_CHECKPOINT
from model.synthetic_warp import Misregistration, centred_affine, move_sar, true_flow
from model.training import sample_mask
from tests.conftest import VOLKOV_187_Q1, VOLKOV_187_Q1_OFFSET


def test_logistic_then_isotonic_recover_a_known_probability():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40000, 2))
    truth = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    y = (rng.uniform(size=len(x)) < truth).astype(float)
    weights, bias = fit_logistic(x, y)
    np.testing.assert_allclose(weights, [2.0, -1.0], atol=0.1)
    assert abs(bias - 0.5) < 0.1
    knots, probs = fit_isotonic(x @ weights + bias, y)
    assert np.all(np.diff(probs) >= 0) and np.all(np.diff(knots) > 0)
    np.testing.assert_allclose(np.interp(x @ weights + bias, knots, probs), truth, atol=0.08)


def test_curvature_is_low_along_an_edge_and_high_on_texture():
    rng = np.random.default_rng(1)
    stripes = torch.tensor(np.sin(np.arange(64) / 3.0), dtype=torch.float32).view(1, 1, 1, 64).expand(1, 2, 64, 64)
    texture = torch.tensor(rng.normal(size=(1, 2, 64, 64)), dtype=torch.float32)
    weight = torch.ones(1, 64, 64)
    along_edge = smallest_eigenvalue(stripes, weight)[0, 0, 16:48, 16:48]
    textured = smallest_eigenvalue(texture, weight)[0, 0, 16:48, 16:48]
    assert along_edge.max() < 1e-6 < textured.min()


def bundled() -> CertaintyCalibration:
    return load_calibration(calibration_path(BUNDLED_CHECKPOINT))


def test_a_calibration_round_trips_and_a_bad_file_is_named(tmp_path):
    calibration = bundled()
    path = calibration.save(tmp_path / "x.calibration.json")
    assert load_calibration(path) == calibration
    garbage = tmp_path / "bad.calibration.json"
    garbage.write_text("{not json")
    with pytest.raises(CheckpointError, match="bad.calibration.json"):
        load_calibration(garbage)


def test_a_calibration_for_another_checkpoint_is_refused():
    reg = Registrar.load(device="cpu")
    assert reg.calibration is not None and reg.calibration.checkpoint_sha256 == reg.checkpoint_sha256
    other = dataclasses.replace(bundled(), checkpoint_sha256="0" * 64)
    with pytest.warns(RuntimeWarning, match="another checkpoint"):
        refused = Registrar(reg.net, reg.device, reg.checkpoint_sha256, reg.refinement, other)
    assert refused.calibration is None


CALIBRATION_TOLERANCE = 0.2
"""How far one case's observed share within 1 px may be from its mean certainty (pixels of one case are not
independent, so a single case is a coarse check; the held-out tables in docs/model_card.md are the fine one)."""


@pytest.mark.xfail(strict=True, reason="since the calibration was refitted for the rotation sweep (2026-12-04), "
                   "one side of this held-out case reads 0.21 off its observed share (tolerance 0.2): the "
                   "training-tile calibration does not transfer to this tile (issue 14, docs/model_card.md)")
def test_the_bundled_certainty_ranks_a_real_case_by_its_error(volkov_pair):
    """Pair 187's agreed quadrant (offset removed), moved by a known shift and rotation: pixels the
    certainty marks confident are closer to the truth than the rest, and on each side the observed share
    within 1 px is what the certainty says it is (calibrated: P(EPE < 1 px))."""
    optical, sar = volkov_pair
    ys, xs = VOLKOV_187_Q1
    size = ys.stop - ys.start
    mis = Misregistration(centred_affine((size, size), 0.7, 1.01, 0.0, (3.0, -2.0)), None, VOLKOV_187_Q1_OFFSET)
    moved = move_sar(sar.astype(np.float32), mis, (size, size), (xs.start, ys.start))
    truth, defined = true_flow(mis, (size, size))
    r = Registrar.load(device="cpu").register(optical[:, ys, xs], moved)
    valid = defined & sample_mask(np.isfinite(moved[0]), truth) & r.valid
    epe = np.hypot(*(r.flow - truth))[valid]
    certainty = r.certainty[valid]
    low, high = certainty < np.median(certainty), certainty >= np.median(certainty)
    assert r.chosen == "refined"
    assert epe[high].mean() < epe[low].mean()
    for side in (high, low):
        assert abs((epe[side] < 1).mean() - certainty[side].mean()) < CALIBRATION_TOLERANCE
