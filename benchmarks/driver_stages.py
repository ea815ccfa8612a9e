"""Where the driver's time goes per tile (read, reproject, blend, warp, measure, write) during a real
`register_pair` run, and the throughput ceiling it sets for one pair however fast the model is (any
number of GPUs): 1 / (driver CPU seconds per tile).

Usage: python benchmarks/driver_stages.py [--size 2048] [--actors 2]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import tempfile
import time
from pathlib import Path

import psutil

from pipeline_throughput import make_scene

SENTINEL2_TILE_PX = 10980
"""Side of a full Sentinel-2 tile at 10 m, px."""


def stages() -> dict[str, object]:
    """Label -> the driver function whose cumulative time is that stage."""
    from model.registrar import warp_numpy
    from pipeline.blend import blend
    from pipeline.quality import flow_statistics, structural_similarity
    from pipeline.rasters import OpticalReader, SarReader
    from pipeline.store import PairStore

    return {"read optical (windows + cores)": OpticalReader.read, "reproject SAR (windows + cores)": SarReader.read,
            "blend tile flows": blend, "warp SAR": warp_numpy, "similarity before/after": structural_similarity,
            "flow statistics": flow_statistics, "write chunk + row (Zarr)": PairStore.write_tile}


def cumulative(profile: pstats.Stats, function: object) -> float:
    """Cumulative seconds of `function` in `profile` (matched by file and first line)."""
    code = inspect.unwrap(function).__code__
    for (filename, line, _name), (_cc, _nc, _tt, ct, _callers) in profile.stats.items():
        if filename == code.co_filename and line == code.co_firstlineno:
            return ct
    return 0.0


def busy(process: psutil.Process) -> float:
    """CPU seconds (user + system) `process` has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()
    from pipeline import PipelineConfig, ScenePair, register_pair
    from pipeline.tiling import make_tiles

    with tempfile.TemporaryDirectory() as tmp:
        opt, sar = make_scene(args.size, Path(tmp))
        me, profiler, first = psutil.Process(), cProfile.Profile(), {}

        def progress(done: int, total: int) -> None:
            if done == 1:  # steady state from here: Ray started, models loaded
                first["cpu"] = busy(me)

        cpu_before, start = busy(me), time.perf_counter()
        profiler.enable()
        result = register_pair(ScenePair("stages", (str(opt),), (str(sar),)), str(Path(tmp) / "out"),
                               PipelineConfig(actors=args.actors, quicklook=False), progress)
        profiler.disable()
        wall, cpu_after = time.perf_counter() - start, busy(me)
    driver_cpu = cpu_after - cpu_before
    profile, tiles = pstats.Stats(profiler), result.tiles
    print(f"{args.size}² scene, {tiles} tiles, {args.actors} actors: {wall:.0f} s wall, {tiles / wall:.2f} tiles/s; "
          f"driver CPU {driver_cpu:.1f} s (Ray start and model load included)")
    print("| stage | seconds | ms / tile |\n|---|---|---|")
    for label, function in stages().items():
        seconds = cumulative(profile, function)
        print(f"| {label} | {seconds:.2f} | {1000 * seconds / tiles:.0f} |")
    print(f"| driver CPU, all (Ray start and model load included) | {driver_cpu:.2f} | "
          f"{1000 * driver_cpu / tiles:.0f} |")
    steady = cpu_after - first["cpu"]
    per_tile = steady / (tiles - 1)
    print(f"| driver CPU, steady state (after the first tile) | {steady:.2f} | {1000 * per_tile:.0f} |")
    config = PipelineConfig()
    full = len(make_tiles(SENTINEL2_TILE_PX, SENTINEL2_TILE_PX, config.tile_size, config.overlap))
    print(f"ceiling for one pair with an infinitely fast model: {1 / per_tile:.1f} tiles/s "
          f"({full * per_tile / 60:.1f} min of driver CPU for a {SENTINEL2_TILE_PX}² Sentinel-2 tile of {full} tiles)")


if __name__ == "__main__":
    main()
