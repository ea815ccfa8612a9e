"""The `soma` command line: one entry point whose subcommands the project's parts extend."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

DEBUG_ENV = "SOMA_DEBUG"
ENDPOINT_HELP = "S3 endpoint (MinIO, Ceph, SeaweedFS)"
PAIRS_IN_FLIGHT_HELP = "pairs registered at once on the shared actor pool (default: one per actor)"
CONFIG_DEFAULT = "[default: PipelineConfig's]"
DISCOVERY_DEFAULT = "[default: DiscoveryConfig's]"
"""Help text of an option left unset: the one typed config holds the default (never re-stated here)."""


def _reported_by_typer(exc: Exception) -> bool:
    """Usage errors, exit codes and Ctrl-C: click's and typer's own exceptions (typer >= 0.2x vendors click as
    `typer._click`), which they report themselves."""
    return type(exc).__module__.split(".")[0] in {"click", "typer"}


def _error_line(exc: Exception) -> str:
    """One line for `exc`: a project error's own message (it names the file and the problem); for anything else
    its type too, and how to see the traceback."""
    from model.errors import SomaError

    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if isinstance(exc, SomaError):
        return text
    return f"{type(exc).__name__}: {text} (rerun with --debug for the traceback)"


class SomaCommands(TyperGroup):
    """The `soma` commands: an error ends the command with one line on stderr and exit 1, or, under `--debug`,
    with its full traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _reported_by_typer(exc) or ctx.params.get("debug"):
                raise
            typer.echo(f"error: {_error_line(exc)}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=SomaCommands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="SOMA: Sentinel-1 SAR to Sentinel-2 optical co-registration.")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                                    help=f"on an error, show its full traceback (also: {DEBUG_ENV}=1)")) -> None:
    """Options for every command; `debug` is read by `SomaCommands.invoke`."""


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001 - warnings API
    """Warnings as one plain line on a terminal, not a source excerpt."""
    return f"warning: {message}\n"


warnings.formatwarning = _one_line_warning

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


def _data_root(given: Path | None) -> Path:
    """`--data-root`, else $SOMA_DATA_ROOT; a usage error naming both when neither is set."""
    from training.config import DATA_ROOT_ENV, default_data_root

    root = given or default_data_root()
    if root is None:
        raise typer.BadParameter(f"give --data-root or set {DATA_ROOT_ENV}", param_hint="--data-root")
    return root


@app.command()
def info(checkpoint: Path = typer.Option(None, help="SOMA checkpoint (default: the bundled one)")) -> None:
    """Show which model `Registrar.load()` gives and its size."""
    from model import Registrar

    reg = Registrar.load(checkpoint)
    params = sum(p.numel() for p in reg.net.parameters())
    typer.echo(f"config      {reg.config.name}")
    typer.echo(f"parameters  {params / 1e6:.2f} M")
    typer.echo(f"checkpoint  {reg.checkpoint_sha256}")
    typer.echo(f"device      {reg.device}")


@app.command()
def demo(
    sample: Path = typer.Option(SAMPLE_DIR, help="folder of the bundled sample pairs"),
    shift_x: float = typer.Option(6.5, help="injected shift along x, px"),
    shift_y: float = typer.Option(-4.25, help="injected shift along y, px"),
    checkpoint: Path = typer.Option(None, help="SOMA checkpoint (default: the bundled one)"),
) -> None:
    """Register one bundled real pair after injecting a known shift, and print recovered vs injected."""
    from cli.demo import run_demo

    run_demo(sample, (shift_x, shift_y), checkpoint, typer.echo)


@app.command()
def train(
    data_root: Path = typer.Option(None, help="folder holding s1s2_volkov/ (default: $SOMA_DATA_ROOT)"),
    out: Path = typer.Option(Path("runs/lite"), help="run folder: state, checkpoint, log (resumes if present)"),
    model: str = typer.Option("lite", help="lite or paper"),
    steps: int = typer.Option(2000, help="total optimisation steps"),
    batch_size: int = typer.Option(2),
    train_tiles: str = typer.Option("T11SLT", help="comma-separated Sentinel-2 tiles to train on"),
    val_tiles: str = typer.Option("T11SMT", help="comma-separated Sentinel-2 tiles to validate on"),
    val_every: int = typer.Option(100),
    lr: float = typer.Option(1e-3, help="peak learning rate (warm-up, then cosine decay)"),
    max_rotation: float = typer.Option(20.0, help="training rotation range, +- degrees"),
    max_translation: float = typer.Option(25.0, help="training translation range at 256², +- px (x2 at 512²)"),
    max_scale: float = typer.Option(0.1, help="training scale range, 1 +- this"),
    curriculum_steps: int = typer.Option(800, help="steps over which the range grows to the full range (0: none)"),
    init_from: Path = typer.Option(None, help="start a new run from this checkpoint's weights (a second stage)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto (cuda when present), cpu or cuda"),
    resnet_weights: Path = typer.Option(None, help="paper: local ResNet-50 weights (torchvision layout)"),
    dinov2_weights: Path = typer.Option(None, help="paper: local DINOv2 ViT-L/14-reg4 weights (timm layout)"),
) -> None:
    """Train SOMA on the real Volkov pairs; resumable, with progress and periodic validation."""
    from model.synthetic_warp import MisregistrationRange
    from training.config import TrainConfig
    from training.loop import train as run

    root = _data_root(data_root)
    config = TrainConfig(
        data_root=str(root), out_dir=str(out), model=model, steps=steps, batch_size=batch_size,
        train_tiles=tuple(train_tiles.split(",")), val_tiles=tuple(val_tiles.split(",")), val_every=val_every,
        seed=seed, device=device, resnet_weights=str(resnet_weights) if resnet_weights else None,
        dinov2_weights=str(dinov2_weights) if dinov2_weights else None, lr=lr,
        warp=MisregistrationRange(max_rotation_deg=max_rotation, max_translation_px=max_translation,
                                  scale_range=(1 - max_scale, 1 + max_scale)),
        curriculum_steps=curriculum_steps, init_from=str(init_from) if init_from else None)
    path = run(config, typer.echo)
    typer.echo(f"checkpoint: {path}")


@app.command("eval")
def evaluate(
    data_root: Path = typer.Option(None, help="folder holding s1s2_volkov/ (default: $SOMA_DATA_ROOT)"),
    protocol: str = typer.Option("soma", help="soma (rotation +-20 deg, translation +-50 px) or residual"),
    truth: str = typer.Option("offset", help="how the pair's own misalignment enters the truth: field (its smooth "
                              "residual field removed), offset (its quadrant translation added) or raw (none)"),
    methods: str = typer.Option("soma,identity,phase_correlation,mutual_information,sift_ransac,cfog"),
    checkpoint: Path = typer.Option(None, help="SOMA checkpoint (default: the bundled one)"),
    out: Path = typer.Option(Path("runs/eval"), help="cases, per-case results and the table go here"),
    limit: int = typer.Option(None, help="only the first N cases"),
) -> None:
    """Evaluate SOMA and the classical baselines on seeded held-out cases (CMR@1/3/5, median, failures, s)."""
    from evaluation.run import evaluate as run

    root = _data_root(data_root)
    run(root, protocol, truth, methods.split(","), out, checkpoint, limit=limit, echo=typer.echo)
    typer.echo(f"tables: {out}")


@app.command()
def register(
    optical: list[str] = typer.Option(..., help="optical raster(s), local or s3://; repeat for one file per band"),
    sar: list[str] = typer.Option(..., help="SAR raster(s), local or s3://; repeat for one file per band"),
    output: str = typer.Option(..., help="folder or s3:// prefix; the pair is written to OUTPUT/PAIR_ID.zarr"),
    pair_id: str = typer.Option(None, help="name of the pair's group (default: the optical file's stem)"),
    tile_size: int = typer.Option(None, help=f"registration window, px {CONFIG_DEFAULT}"),
    overlap: int = typer.Option(None, help=f"overlap of neighbouring windows, px {CONFIG_DEFAULT}"),
    actors: int = typer.Option(None, help=f"Ray actors, each holding one model {CONFIG_DEFAULT}"),
    batch_size: int = typer.Option(None, help=f"windows per forward pass {CONFIG_DEFAULT}"),
    checkpoint: str = typer.Option(None, help="SOMA checkpoint (default: the bundled one)"),
    sar_nodata: float = typer.Option(None, help="SAR nodata value when the file declares none"),
    endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP),
    refinement: bool = typer.Option(None, help="test-time refinement after the network (off: the network alone, "
                                               "about 3x faster, its uncalibrated certainty) [default: on]"),
) -> None:
    """Register one Sentinel-1 scene onto one Sentinel-2 scene: flow, certainty and co-registered SAR to Zarr."""
    from pipeline import ScenePair, register_pair

    config = _pipeline_config(endpoint_url, refinement, tile_size=tile_size, overlap=overlap, actors=actors,
                              batch_size=batch_size, checkpoint=checkpoint)
    name = pair_id or Path(optical[0].rstrip("/").split("/")[-1]).stem
    pair = ScenePair(name, tuple(optical), tuple(sar), sar_nodata=sar_nodata)
    with typer.progressbar(length=1, label=f"{name}: tiles") as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        result = register_pair(pair, output, config, progress)
    if result.already_complete:
        typer.echo(f"{result.store} was already complete: nothing to do")
    typer.echo(_summary(result, config.storage))


@app.command()
def check(
    store: str = typer.Argument(..., help="a pair's Zarr group, local or s3://"),
    endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP),
) -> None:
    """Check a pair's group against its invariants (complete only when every tile has a status, tile data and
    table rows agree, failed and no-data tiles hold no valid data); exit 1 if any is broken."""
    from pipeline import StorageOptions
    from pipeline.invariants import violations
    from pipeline.store import open_pair

    ds = open_pair(store, StorageOptions(endpoint_url=endpoint_url))
    found = violations(ds)
    state = "complete" if ds.attrs.get("complete") else "incomplete"
    for line in found:
        typer.echo(f"violation: {line}")
    typer.echo(f"{store}: {state}, {ds.sizes['tile']} tiles, {len(found)} violation(s)")
    raise typer.Exit(1 if found else 0)


def _summary(result, storage) -> str:  # noqa: ANN001 - pipeline.PairResult and StorageOptions, imported lazily
    """The per-tile table of a finished pair (read through the run's `storage`), then one line of totals."""
    from pipeline.store import open_pair, tile_table

    rows = tile_table(open_pair(result.store, storage))
    lines = [f"{'tile':>4} {'status':<15} {'certainty':>9} {'confident':>9} {'|flow| p50':>10} {'p95':>6} "
             f"{'sim before':>10} {'after':>6}  error"]
    for r in rows:
        lines.append(f"{r['tile']:>4} {r['status']:<15} {r['mean_certainty']:>9.2f} {r['confident_fraction']:>9.0%} "
                     f"{r['flow_median_px']:>10.2f} {r['flow_p95_px']:>6.2f} {r['similarity_before']:>10.3f} "
                     f"{r['similarity_after']:>6.3f}  {r['error']}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.status_counts.items()))
    lines.append(f"{result.pair_id}: {result.tiles} tiles ({counts}), {result.written_tiles} written in "
                 f"{result.seconds:.1f} s -> {result.store}")
    if result.quicklook:
        lines.append(f"quicklook: {result.quicklook}")
    return "\n".join(lines)


def _prefect_defaults() -> None:
    """Embedded Prefect (no server configured): a patient temporary server, no analytics, and its own database
    per Prefect version (a database another Prefect version migrated makes the temporary server fail)."""
    import os
    from importlib.metadata import version

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL"):
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "soma"
        cache.mkdir(parents=True, exist_ok=True)
        database = cache / f"prefect-{version('prefect')}.db"
        os.environ.setdefault("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{database}")


def _pipeline_config(endpoint_url: str | None, refinement: bool | None = None, **options: object):  # noqa: ANN202
    """A `PipelineConfig` of the options given on the command line; the others keep its defaults."""
    from model.config import RefineConfig
    from pipeline import PipelineConfig, StorageOptions

    given = {k: v for k, v in options.items() if v is not None}
    if refinement is not None:
        given["refinement"] = RefineConfig(enabled=refinement)
    if endpoint_url:
        given["storage"] = StorageOptions(endpoint_url=endpoint_url)
    return PipelineConfig(**given)


def _discovery_config(**options: object):  # noqa: ANN202 - flows.discovery.DiscoveryConfig, imported lazily
    """A `DiscoveryConfig` of the options given on the command line; the others keep its defaults."""
    from flows.discovery import DiscoveryConfig

    return DiscoveryConfig(**{k: v for k, v in options.items() if v is not None})


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    values = [float(v) for v in text.split(",")]
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise typer.BadParameter(f"{text!r}: expected west,south,east,north in degrees", param_hint="--bbox")
    return tuple(values)


def _archive_table(rows: list[dict]) -> str:
    """The per-pair quality table of a run."""
    w = max([len(r["pair_id"]) for r in rows] + [4])
    lines = [f"{'pair':<{w}} {'outcome':<10} {'ok':>3} {'low':>3} {'nodata':>6} {'fail':>4} {'certainty':>9} "
             f"{'|flow| m':>8} {'sim gain':>8} {'s':>6}"]
    for r in rows:
        lines.append(f"{r['pair_id']:<{w}} {r['outcome']:<10} {r['tiles_ok']:>3} {r['tiles_low']:>3} "
                     f"{r['tiles_no_data']:>6} {r['tiles_failed']:>4} {r['median_certainty']:>9.3f} "
                     f"{r['median_flow_m']:>8.1f} {r['similarity_gain']:>+8.3f} {r['seconds']:>6.1f}"
                     + (f"  {r['error']}" if r["error"] else ""))
    return "\n".join(lines)


def _recovery_report(output: str, rows: list[dict], truth: Path, endpoint_url: str | None) -> str:
    """Recovered vs injected misregistration per pair (the bundled sample's sidecar)."""
    from flows.injected import recovery
    from pipeline import StorageOptions, store_path

    w = max([len(r["pair_id"]) for r in rows] + [4])
    lines = [f"{'pair':<{w}} {'injected':>8} {'error median':>12} {'rmse':>6} {'confident':>9}   (px, valid pixels)"]
    for r in rows:
        if r["outcome"] == "failed":
            continue
        sar_item = r["pair_id"].split("__", 1)[-1]
        rec = recovery(store_path(output, r["pair_id"]), sar_item, truth, StorageOptions(endpoint_url=endpoint_url))
        if rec is not None:
            lines.append(f"{rec.pair_id:<{w}} {rec.injected_rmse_px:>8.2f} {rec.error_median_px:>12.2f} "
                         f"{rec.error_rmse_px:>6.2f} {rec.confident_share:>9.0%}")
    return "\n".join(lines)


ARCHIVE_HELP = "STAC archive: local folder or s3:// prefix (default: the bundled sample archive)"
PAIRING_HELP = ("best_sar: each S2 scene with its best S1 scene; stack: every S1 acquisition over an S2 tile once, "
                f"against the tile's reference (for cubes) {DISCOVERY_DEFAULT}")
REFERENCE_HELP = "stack pairing: the S2 item id every S1 scene over its tile is registered against"


@app.command("run")
def run_archive(
    archive: str = typer.Option(None, help=ARCHIVE_HELP),
    output: str = typer.Option("runs/archive", help="folder or s3:// prefix for PAIR_ID.zarr groups and Items"),
    start: str = typer.Option(None, help="first Sentinel-2 acquisition time, ISO (inclusive)"),
    end: str = typer.Option(None, help="last Sentinel-2 acquisition time, ISO (exclusive)"),
    bbox: str = typer.Option(None, help="west,south,east,north in degrees"),
    max_days: float = typer.Option(None, help=f"largest S1/S2 acquisition gap, days {DISCOVERY_DEFAULT}"),
    min_overlap: float = typer.Option(None, help="smallest share of the S2 footprint the S1 scene must cover "
                                                 f"{DISCOVERY_DEFAULT}"),
    pairing: str = typer.Option(None, help=PAIRING_HELP),
    reference: str = typer.Option(None, help=REFERENCE_HELP),
    cubes: bool = typer.Option(True, "--cubes/--no-cubes", help="append each complete pair to its tile's cube "
                                                                "(OUTPUT/cubes/TILE.zarr)"),
    actors: int = typer.Option(None, help=f"Ray actors, each holding one model {CONFIG_DEFAULT}"),
    pairs_in_flight: int = typer.Option(None, help=PAIRS_IN_FLIGHT_HELP),
    checkpoint: str = typer.Option(None, help="SOMA checkpoint (default: the bundled one)"),
    endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP),
    truth: Path = typer.Option(None, help="sidecar of injected misregistrations: print recovered vs injected "
                                          "(default with the bundled archive: its sidecar)"),
) -> None:
    """Co-register every S1/S2 pair of an archive (a Prefect flow run); complete pairs are skipped."""
    _prefect_defaults()
    from flows.coregister import DEFAULT_ARCHIVE, coregister_archive
    from flows.injected import SAMPLE_SIDECAR

    discovery = _discovery_config(start=start, end=end, bbox=_bbox(bbox), max_days=max_days, min_overlap=min_overlap,
                                  pairing=pairing, reference=reference)
    config = _pipeline_config(endpoint_url, actors=actors, pairs_in_flight=pairs_in_flight, checkpoint=checkpoint)
    summary = coregister_archive(archive or DEFAULT_ARCHIVE, output, discovery, config, cubes=cubes)
    _echo_summary(summary)
    truth = truth or (SAMPLE_SIDECAR if archive is None else None)
    if truth is not None and summary["rows"]:
        typer.echo("\nrecovered vs injected misregistration:")
        typer.echo(_recovery_report(output, summary["rows"], truth, endpoint_url))


@app.command()
def backfill(
    start: str = typer.Option(..., help="first Sentinel-2 acquisition time, ISO (inclusive)"),
    end: str = typer.Option(..., help="end of the range, ISO (exclusive)"),
    archive: str = typer.Option(None, help=ARCHIVE_HELP),
    output: str = typer.Option("runs/archive", help="folder or s3:// prefix for PAIR_ID.zarr groups and Items"),
    chunk_days: float = typer.Option(30, help="days per chunk; each finished chunk is remembered"),
    bbox: str = typer.Option(None, help="west,south,east,north in degrees"),
    max_days: float = typer.Option(None, help=f"largest S1/S2 acquisition gap, days {DISCOVERY_DEFAULT}"),
    pairing: str = typer.Option(None, help=PAIRING_HELP),
    reference: str = typer.Option(None, help=REFERENCE_HELP),
    actors: int = typer.Option(None, help=f"Ray actors, each holding one model {CONFIG_DEFAULT}"),
    pairs_in_flight: int = typer.Option(None, help=PAIRS_IN_FLIGHT_HELP),
    endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP),
) -> None:
    """Co-register an archive over a date range in chunks; a rerun skips finished chunks and pairs."""
    _prefect_defaults()
    from flows.coregister import DEFAULT_ARCHIVE
    from flows.coregister import backfill as run

    summary = run(archive or DEFAULT_ARCHIVE, output, start, end, chunk_days,
                  _discovery_config(bbox=_bbox(bbox), max_days=max_days, pairing=pairing, reference=reference),
                  _pipeline_config(endpoint_url, actors=actors, pairs_in_flight=pairs_in_flight))
    typer.echo(f"{summary['chunks']} chunk(s), {summary['chunks_skipped']} finished before")
    _echo_summary(summary)


def _echo_summary(summary: dict) -> None:
    typer.echo(_archive_table(summary["rows"]))
    typer.echo(f"{summary['pairs']} pair(s): {summary['registered']} registered, {summary['skipped']} already "
               f"complete, {summary['failed']} failed")
    typer.echo(f"outputs: {summary['output']} (per pair: PAIR.zarr, PAIR.quicklook.png, PAIR.json STAC Item; "
               "per tile: cubes/TILE.zarr, see `soma cube list`)")
    for p in summary.get("problems", []):
        typer.echo(f"skipped item {p['href']}: {p['problem']}")


cube_app = typer.Typer(cls=SomaCommands, no_args_is_help=True, help="Change-detection cubes: one per tile, "
                       "every co-registered S1 acquisition of it as a time step (OUTPUT/cubes/TILE.zarr).")
app.add_typer(cube_app, name="cube")


@cube_app.command("list")
def cube_list(output: str = typer.Argument(..., help="a run's output folder or s3:// prefix"),
              tile: str = typer.Argument(None, help="one tile: list its time steps with their quality"),
              endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP)) -> None:
    """The cubes of OUTPUT (tile, time steps, first and last time), or one TILE's time steps and quality."""
    from pipeline import StorageOptions
    from pipeline.cube import cube_path, cube_steps, list_cubes, open_cube

    storage = StorageOptions(endpoint_url=endpoint_url)
    if tile is not None:
        typer.echo(_steps_table(cube_steps(open_cube(cube_path(output, tile), storage))))
        return
    tiles = list_cubes(output, storage)
    if not tiles:
        typer.echo(f"no cubes under {output.rstrip('/')}/cubes")
        return
    w = max(len(t) for t in tiles)
    typer.echo(f"{'tile':<{w}} {'steps':>5}  first                last")
    for t in tiles:
        steps = cube_steps(open_cube(cube_path(output, t), storage))
        typer.echo(f"{t:<{w}} {len(steps):>5}  {steps[0]['time']:<20} {steps[-1]['time']}" if steps else f"{t:<{w}} 0")


@cube_app.command("show")
def cube_show(output: str = typer.Argument(..., help="a run's output folder or s3:// prefix"),
              tile: str = typer.Argument(..., help="the tile whose cube to describe"),
              endpoint_url: str = typer.Option(None, envvar="AWS_ENDPOINT_URL_S3", help=ENDPOINT_HELP)) -> None:
    """One cube: its grid, variables and chunks, time steps with quality, and its commits."""
    from pipeline import StorageOptions
    from pipeline.cube import cube_history, cube_path, cube_steps, open_cube

    storage = StorageOptions(endpoint_url=endpoint_url)
    url = cube_path(output, tile)
    ds = open_cube(url, storage)
    typer.echo(f"cube {url}")
    typer.echo(f"grid: {ds.sizes['y']} x {ds.sizes['x']} px, {ds.rio.crs}, transform {tuple(ds.rio.transform())[:6]}")
    typer.echo(f"bands: {', '.join(map(str, ds.band.values))}")
    for name, var in ds.data_vars.items():
        typer.echo(f"  {name:<17} {str(var.dims):<30} {str(var.dtype):<8} chunks {var.encoding.get('chunks')}")
    typer.echo(_steps_table(cube_steps(ds)))
    typer.echo("commits (newest first):")
    for commit in cube_history(url, storage):
        typer.echo(f"  {commit['snapshot']}  {commit['written']}  {commit['message']}")


def _steps_table(steps: list[dict]) -> str:
    w = max([len(s["pair_id"]) for s in steps] + [4])
    lines = [f"{'step':>4}  {'time':<19}  {'pair':<{w}}  {'median certainty':>16}  {'confident':>9}"]
    lines += [f"{s['index']:>4}  {s['time']:<19}  {s['pair_id']:<{w}}  {s['median_certainty']:>16.3f}  "
              f"{s['confident_fraction']:>9.3f}" for s in steps]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    app()
