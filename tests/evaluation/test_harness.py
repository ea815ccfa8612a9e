"""`soma eval`: seeded saved cases, honest metrics, failures counted, baselines in the project's convention."""

import numpy as np
import pytest

from evaluation.baselines import BASELINES, cfog, phase_correlation
from evaluation.cases import build_cases, load_cases, materialise, save_cases
from evaluation.harness import run_method, summarise
from evaluation.run import evaluate
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def three_cases():
    cases = build_cases(SAMPLE, "residual", ("T11SMT",), cleaning="offset", seed=0)[:3]
    return cases, materialise(cases, SAMPLE)


def test_cases_are_seeded_and_round_trip(tmp_path, three_cases):
    cases, _ = three_cases
    assert build_cases(SAMPLE, "residual", ("T11SMT",), cleaning="offset", seed=0)[:3] == cases
    assert build_cases(SAMPLE, "residual", ("T11SMT",), cleaning="offset", seed=1)[:3] != cases
    save_cases(tmp_path / "c.json", cases)
    assert load_cases(tmp_path / "c.json") == cases
    again = materialise(load_cases(tmp_path / "c.json"), SAMPLE)
    np.testing.assert_array_equal(again[0].flow, three_cases[1][0].flow)


def test_identity_scores_exactly_the_injected_transform(three_cases):
    _, data = three_cases
    results = run_method("identity", BASELINES["identity"], data)
    for r, m in zip(results, data):
        injected = np.sqrt((m.flow**2).sum(axis=0)[m.valid].mean())
        assert r.rmse == pytest.approx(float(injected), rel=1e-6)
        assert r.rmse > 1.0  # a real misregistration, including the quadrant's own offset


def test_failures_are_counted_not_dropped(three_cases):
    _, data = three_cases

    def flaky(optical, sar):
        if flaky.calls == 1:
            flaky.calls += 1
            raise RuntimeError("no estimate")
        flaky.calls += 1
        return np.zeros((2, *optical.shape[-2:]), np.float32)

    flaky.calls = 0
    results = run_method("flaky", flaky, data)
    s = summarise(results)
    assert s.cases == 3 and s.failures == 1
    assert results[1].rmse == float("inf") and "no estimate" in results[1].error
    assert set(s.cmr) == {1, 3, 5}


@pytest.mark.parametrize("method", [phase_correlation, cfog])
def test_translation_baselines_recover_a_same_modality_shift(three_cases, method):
    """Optical against itself shifted: the baselines' flow convention matches the truth."""
    from model.synthetic_warp import Misregistration, move_sar, true_flow

    optical = three_cases[1][0].optical
    mis = Misregistration(np.array([[1.0, 0.0, -7.0], [0.0, 1.0, 4.0]]))
    moved = move_sar(optical.mean(axis=0, keepdims=True).astype(np.float32), mis)
    truth, ok = true_flow(mis, optical.shape[-2:])
    flow = method(optical, moved)
    err = np.linalg.norm(flow - truth, axis=0)[ok & np.isfinite(moved[0])]
    assert np.median(err) < 0.5


def test_evaluate_writes_cases_results_and_table(tmp_path):
    summaries = evaluate(SAMPLE, "residual", "offset", ["identity", "phase_correlation"], tmp_path, limit=2,
                         echo=lambda _: None)
    assert [s.method for s in summaries] == ["identity", "phase_correlation"]
    table = (tmp_path / "results_residual_offset.md").read_text()
    assert "| identity | 2 |" in table and "CMR@1" in table
    assert (tmp_path / "cases_residual_offset.json").is_file()


def test_residual_protocol_field_stays_within_its_stated_amplitude():
    """The `residual` protocol's non-rigid field is at most 1.5 px as a displacement, not per component."""
    from evaluation.cases import PROTOCOLS

    limit = PROTOCOLS["residual"].field_amplitude_px
    for case in build_cases(SAMPLE, "residual", ("T11SMT",), cleaning="offset", seed=0):
        magnitude = np.hypot(*case.misregistration().field)
        assert magnitude.max() == pytest.approx(limit, rel=1e-4)
