"""The driver's CPU per tile and its peak RSS during a real `register_pair` run, per scene size.

The driver only plans and schedules (the actors read, register, blend, warp, measure and write), so its
CPU per tile bounds one pair's throughput however fast the model is (1 / CPU s per tile), and neither
figure should grow with the scene. Each size runs in a fresh driver process: its CPU time (psutil, user +
system) over the `register_pair` call / tiles, the same from the first written tile on (steady state), the
CPU the idle Ray driver burns per second anyway (measured in a sleep before the run), and the process's
peak RSS (Ray's client included), sampled from this parent (`pipeline_throughput.run_measured`).
Not `ru_maxrss`: on Linux a child inherits its parent's high-water mark across fork and exec, so it would
report this process, which made the scene.

Usage: python benchmarks/driver_stages.py [--sizes 1024 2048 10980] [--actors 2] [--tile-size 512]
       [--network-only]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psutil

from pipeline_throughput import make_scene, run_measured

IDLE_S = 10.0
"""Sleep with Ray connected before the run: the driver's background CPU rate (Ray's own threads)."""


def busy(process: psutil.Process) -> float:
    """CPU seconds (user + system) `process` has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def child(opt: str, sar: str, actors: int, tile_size: int, network_only: bool, out: str) -> None:
    """One measured `register_pair` run in this (fresh) process; prints one JSON line."""
    from model.config import RefineConfig
    from pipeline import PipelineConfig, ScenePair, register_pair
    from pipeline.actors import connect

    refinement = RefineConfig(enabled=False) if network_only else RefineConfig()
    config = PipelineConfig(actors=actors, tile_size=tile_size, quicklook=False, refinement=refinement)
    connect()  # Ray is up before the clock, as on a cluster; the actors still start inside the run
    me = psutil.Process()
    idle_before = busy(me)
    time.sleep(IDLE_S)
    idle_rate = (busy(me) - idle_before) / IDLE_S
    first: dict[str, float] = {}

    def progress(done: int, total: int) -> None:
        if done == 1:  # steady state from here: actors started, models loaded
            first["cpu"], first["t"] = busy(me), time.perf_counter()

    cpu_before, start = busy(me), time.perf_counter()
    result = register_pair(ScenePair("stages", (opt,), (sar,)), out, config, progress)
    wall, cpu = time.perf_counter() - start, busy(me) - cpu_before
    steady_cpu, steady_wall = busy(me) - first["cpu"], time.perf_counter() - first["t"]
    print(json.dumps({"tiles": result.tiles, "wall_s": wall, "cpu_s": cpu, "steady_cpu_s": steady_cpu,
                      "steady_wall_s": steady_wall, "idle_cpu_per_s": idle_rate}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 10980])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--network-only", action="store_true", help="the network without the refinement (faster)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        opt, sar, actors, tile_size, network_only, out = args.child
        child(opt, sar, int(actors), int(tile_size), network_only == "1", out)
        return
    print("| scene | tiles | wall s | driver CPU s | ms / tile | steady ms / tile | idle Ray driver ms / s | "
          "steady ms / tile less idle | peak driver RSS MiB |\n|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            opt, sar = make_scene(size, Path(tmp))
            r, peak, _ = run_measured([str(opt), str(sar), str(args.actors), str(args.tile_size),
                                       "1" if args.network_only else "0", str(Path(tmp) / f"out{size}")], __file__)
            steady = r["steady_cpu_s"] / (r["tiles"] - 1)
            background = r["idle_cpu_per_s"] * r["steady_wall_s"] / (r["tiles"] - 1)
            print(f"| {size}² | {r['tiles']} | {r['wall_s']:.0f} | {r['cpu_s']:.2f} | {1000 * r['cpu_s'] / r['tiles']:.1f} "
                  f"| {1000 * steady:.1f} | {1000 * r['idle_cpu_per_s']:.1f} | {1000 * (steady - background):.1f} "
                  f"| {peak:.0f} |", flush=True)
            for path in (opt, sar):
                path.unlink()


if __name__ == "__main__":
    main()
