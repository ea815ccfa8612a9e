"""The scheduled deployment in infra/prefect/ loads and names what the flow expects."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from flows.coregister import coregister_archive

SERVE = Path(__file__).resolve().parents[2] / "infra" / "prefect" / "serve.py"


def load_serve():
    spec = importlib.util.spec_from_file_location("soma_serve", SERVE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deployment_serves_coregister_archive_on_its_cron_with_valid_parameters():
    serve = load_serve()
    d = serve.deployment({"SOMA_ARCHIVE": "s3://archive/stac", "SOMA_OUTPUT": "s3://products/soma",
                          "SOMA_CRON": "15 2 * * *", "SOMA_ACTORS": "4", "SOMA_LOOKBACK_DAYS": "30"})
    assert d.name == "scheduled-archive" and d.flow_name == "coregister-archive"
    assert [s.schedule.cron for s in d.schedules] == ["15 2 * * *"]
    assert d.parameters == {"archive": "s3://archive/stac", "output": "s3://products/soma", "config": {"actors": 4},
                            "lookback_days": 30.0}
    accepted = set(inspect.signature(coregister_archive.fn).parameters)
    assert set(d.parameters) <= accepted
    default = serve.deployment({"SOMA_ARCHIVE": "a", "SOMA_OUTPUT": "b"})
    assert [s.schedule.cron for s in default.schedules] == [serve.DEFAULT_CRON]


def test_deployment_without_archive_or_output_says_what_to_set():
    with pytest.raises(SystemExit, match="SOMA_ARCHIVE and SOMA_OUTPUT"):
        load_serve().deployment({})
