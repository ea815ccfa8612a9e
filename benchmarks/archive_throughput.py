"""An archive run's wall time with its pairs one after another vs several in flight on one shared actor pool.

Each setting runs `coregister_archive` (a real Prefect flow run, embedded server) over the bundled sample
archive (4 pairs: two one-tile BigEarthNet pairs, two 2 x 2-tile Sentinel scenes) into a fresh output, in a
fresh process, so each pays the same actor start. The flow's own `seconds` (discovery to the table) is
reported, and the tiles written, which must not differ.

Usage: python benchmarks/archive_throughput.py [--actors 2] [--in-flight 1 2] [--repeats 1] [--network-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(actors: int, in_flight: int, network_only: bool, out: str) -> None:
    """One measured archive run in this (fresh) process; prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from cli.main import _prefect_defaults

    _prefect_defaults()
    from flows.coregister import DEFAULT_ARCHIVE, coregister_archive
    from model.config import RefineConfig
    from pipeline import PipelineConfig

    config = PipelineConfig(actors=actors, pairs_in_flight=in_flight, quicklook=False,
                            refinement=RefineConfig(enabled=not network_only))
    summary = coregister_archive(DEFAULT_ARCHIVE, out, config=config)
    print(json.dumps({"pairs": summary["pairs"], "registered": summary["registered"], "seconds": summary["seconds"],
                      "tiles": sum(r["tiles_ok"] + r["tiles_low"] + r["tiles_no_data"] + r["tiles_failed"]
                                   for r in summary["rows"])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--network-only", action="store_true", help="the network without the refinement (faster)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        actors, in_flight, network_only, out = args.child
        child(int(actors), int(in_flight), network_only == "1", out)
        return
    print("| actors | pairs in flight | run | pairs | tiles | flow s |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for in_flight in args.in_flight:
                out = Path(tmp) / f"out{in_flight}_{repeat}"
                done = subprocess.run([sys.executable, __file__, "--child", str(args.actors), str(in_flight),
                                       "1" if args.network_only else "0", str(out)],
                                      capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    raise SystemExit(f"run with {in_flight} pair(s) in flight failed:\n{done.stderr[-3000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {args.actors} | {in_flight} | {repeat + 1} | {r['pairs']} | {r['tiles']} | "
                      f"{r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
