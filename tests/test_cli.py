"""The `soma` command: the demo of `make run`, info, and clear errors."""

import re

import numpy as np
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_demo_reports_injected_and_recovered_shift():
    result = runner.invoke(app, ["demo", "--shift-x", "5", "--shift-y", "-3"])
    assert result.exit_code == 0, result.output
    # injected = requested shift + the quadrant's own offset from offsets.csv (1.99, 2.005)
    assert "injected    dx +6.99 px, dy -1.00 px" in result.output
    rmse = float(re.search(r"flow RMSE\s+([\d.]+) px", result.output).group(1))
    injected = float(np.hypot(6.99, -1.00))  # what leaving the SAR as it is would score
    assert rmse < injected / 2, result.output  # the model registers; the < 1 px bound is below


def test_the_trained_checkpoint_ships_and_loads_by_default():
    from model import Registrar
    from model.registrar import BUNDLED_CHECKPOINT

    assert BUNDLED_CHECKPOINT.is_file() and BUNDLED_CHECKPOINT.stat().st_size < 30 * 2**20
    assert len(Registrar.load().checkpoint_sha256) == 64  # not the untrained fallback


def test_info_names_the_model():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "config      lite" in result.output
    params = float(re.search(r"parameters\s+([\d.]+) M", result.output).group(1))
    assert 0.5 <= params <= 5.0  # lite: about a million parameters, trainable on 2 CPU cores


def test_train_without_data_root_says_how_to_give_it(monkeypatch):
    monkeypatch.delenv("SOMA_DATA_ROOT", raising=False)
    result = runner.invoke(app, ["train", "--steps", "1"])
    assert result.exit_code != 0
    assert "SOMA_DATA_ROOT" in result.output


def test_bundled_checkpoint_recovers_a_known_shift_below_one_pixel():
    from cli.demo import run_demo
    from cli.main import SAMPLE_DIR

    lines = []
    rmse = run_demo(SAMPLE_DIR, (6.5, -4.25), None, lines.append)
    assert rmse < 1.0, "\n".join(lines)
