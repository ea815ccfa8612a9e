"""The `soma` command: the demo of `make run`, info, and clear errors."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cli.main import DEBUG_ENV, app
from tests.pipeline.conftest import BEN_OPT, BEN_SAR

runner = CliRunner()
SOMA = shutil.which("soma", path=str(Path(sys.executable).parent)) or shutil.which("soma")
"""The installed console script, as a user runs it (this interpreter's own first)."""


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


def soma(cwd: Path, *args: str, debug_env: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `soma` console script in `cwd`; $SOMA_DEBUG set to `debug_env`, or unset."""
    assert SOMA, "the soma console script is not installed (make install)"
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV} | ({DEBUG_ENV: debug_env} if debug_env else {})
    return subprocess.run([SOMA, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def bad_register_args(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """`soma register` arguments for one bad-input case (refused before Ray starts) and the file it must name."""
    optical, output = str(BEN_OPT), "out"
    if case == "not_a_raster":
        optical = "notes.txt"
        (tmp_path / optical).write_text("station,value\n1,2\n")
    elif case == "truncated":
        optical = "truncated.tif"
        data = BEN_OPT.read_bytes()
        (tmp_path / optical).write_bytes(data[: len(data) // 2])
    elif case == "missing":
        optical = "missing.tif"
    elif case == "output_is_zarr":
        output = "store.zarr"
        zarr.open_group(str(tmp_path / output), mode="w", zarr_format=3)
    named = output if case == "output_is_zarr" else optical
    return ["register", "--optical", optical, "--sar", str(BEN_SAR), "--output", output], named


@pytest.mark.parametrize("case, problem", [
    ("not_a_raster", "cannot open as a raster"),
    ("truncated", "cannot open as a raster|truncated or corrupt"),
    ("missing", "cannot open as a raster"),
    ("output_is_zarr", "is itself a Zarr store"),
])
def test_bad_input_is_one_line_naming_the_file_without_a_traceback(tmp_path, case, problem):
    args, named = bad_register_args(tmp_path, case)
    run = soma(tmp_path, *args)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "Traceback" not in output and "╭" not in output, output  # neither Python's nor typer's boxed one
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: "), output
    assert re.search(problem, lines[0]), output


def test_an_unexpected_error_is_one_line_with_the_way_to_its_traceback(tmp_path):
    run = soma(tmp_path, "check", "missing.zarr")
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "missing.zarr" in lines[0] and "--debug" in lines[0], run.stderr


@pytest.mark.parametrize("flag, env", [(["--debug"], None), ([], "1")], ids=["--debug", DEBUG_ENV])
def test_debug_shows_the_full_traceback(tmp_path, flag, env):
    args, named = bad_register_args(tmp_path, "not_a_raster")
    run = soma(tmp_path, *flag, *args, debug_env=env)
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr, run.stderr
    assert f"RasterError: {named}: cannot open as a raster" in run.stderr.splitlines()[-1]
