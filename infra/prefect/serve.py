"""Serve `coregister_archive` on a cron schedule: `python infra/prefect/serve.py` (needs a Prefect server:
`PREFECT_API_URL`; a temporary in-process server does not run schedules).

Settings come from the environment so the same file serves every site:
  SOMA_ARCHIVE   STAC archive URL (s3://bucket/prefix or a folder)          [required]
  SOMA_OUTPUT    products URL (s3://bucket/prefix or a folder)              [required]
  SOMA_CRON      cron schedule, UTC                                          [default "0 3 * * *": daily 03:00]
  SOMA_ACTORS    Ray actors (PipelineConfig.actors)                          [default: PipelineConfig's]
  SOMA_MAX_DAYS  largest S1/S2 acquisition gap, days (DiscoveryConfig)       [default: DiscoveryConfig's]
  SOMA_LOOKBACK_DAYS  each run covers Sentinel-2 scenes of the last N days   [default: the whole archive]
plus the usual RAY_ADDRESS, AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.coregister import coregister_archive

DEPLOYMENT_NAME = "scheduled-archive"
DEFAULT_CRON = "0 3 * * *"


def deployment(env: dict[str, str] | None = None) -> RunnerDeployment:
    """The scheduled deployment of `coregister_archive` that `env` (default: the process environment) describes."""
    env = dict(os.environ if env is None else env)
    missing = [k for k in ("SOMA_ARCHIVE", "SOMA_OUTPUT") if not env.get(k)]
    if missing:
        raise SystemExit(f"set {' and '.join(missing)} (see {__file__})")
    parameters: dict = {"archive": env["SOMA_ARCHIVE"], "output": env["SOMA_OUTPUT"]}
    if env.get("SOMA_ACTORS"):
        parameters["config"] = {"actors": int(env["SOMA_ACTORS"])}
    if env.get("SOMA_MAX_DAYS"):
        parameters["discovery"] = {"max_days": float(env["SOMA_MAX_DAYS"])}
    if env.get("SOMA_LOOKBACK_DAYS"):
        parameters["lookback_days"] = float(env["SOMA_LOOKBACK_DAYS"])
    return coregister_archive.to_deployment(
        name=DEPLOYMENT_NAME, cron=env.get("SOMA_CRON", DEFAULT_CRON), parameters=parameters,
        description="Co-register new Sentinel-1/2 pairs of the archive; complete pairs are skipped.",
        tags=["soma", "scheduled"])


if __name__ == "__main__":
    serve(deployment())
