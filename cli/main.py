"""The `soma` command line: one entry point whose subcommands the project's parts extend."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="SOMA: Sentinel-1 SAR to Sentinel-2 optical co-registration.")

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


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


if __name__ == "__main__":  # pragma: no cover
    app()
