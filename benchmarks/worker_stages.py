"""What one tile costs on a worker, by step: read its window, register it, write its chunk.

Since the driver only plans (`benchmarks/driver_stages.py`), these are the per-tile costs that bound the
pipeline on N workers: a CPU actor does all three; on a GPU actor the reads and writes stay on its CPU
while the GPU registers. Runs the actor's own code in this process (one torch thread, the bundled real
2048² scene, tile 512): the windows of the first `--rows` rows of tiles are read and registered in the
pipeline's fixed batches, then every chunk whose windows are all registered is written to a real Zarr
group. Median per tile.

Usage: python benchmarks/worker_stages.py [--rows 3] [--network-only] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "data" / "sample" / "scene" / "T11SMT_175-188"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3, help="rows of tiles registered (the middle ones are written)")
    parser.add_argument("--network-only", action="store_true", help="the network without the refinement")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from model.config import RefineConfig
    from pipeline import PipelineConfig, ScenePair
    from pipeline.actors import RegistrarActor
    from pipeline.rasters import OpticalReader, SarReader, raster_env
    from pipeline.schedule import RunPlan
    from pipeline.sources import PairSource
    from pipeline.store import Layout, PairStore
    from pipeline.tiling import contributors, make_tiles
    from pipeline.windows import window_input

    config = PipelineConfig(refinement=RefineConfig(enabled=not args.network_only), quicklook=False,
                            device=args.device)
    pair = ScenePair("stages", (f"{SCENE}_opt.tif",), (f"{SCENE}_sar.tif",))
    actor = RegistrarActor(config)
    with tempfile.TemporaryDirectory() as tmp, raster_env(config.storage, config.gdal_cache_mib):
        optical = OpticalReader(pair.optical)
        sar = SarReader(pair.sar, optical.grid, config.margin)
        grid, bands = optical.grid, sar.bands
        sar.close()
        optical.close()
        tiles = make_tiles(grid.height, grid.width, config.tile_size, config.overlap)
        per_row = sum(t.core.row == 0 for t in tiles)
        chosen = list(range(min(len(tiles), args.rows * per_row)))
        store_path = str(Path(tmp) / "stages.zarr")
        PairStore(store_path, config.storage).create(Layout(grid, config.tile_size, config.overlap, bands, len(tiles)),
                                                     {"pair_id": "stages"})
        needs = contributors(tiles)
        source = PairSource.of(pair, grid, config)
        plan = RunPlan(store_path, source, config, tiles, needs, [], [])
        readers = actor.readers.get(source)
        reads, registers, writes, registrations = [], [], [], {}
        for start in range(0, len(chosen), actor.batch_size):
            batch = [tiles[i] for i in chosen[start:start + actor.batch_size]]
            t0 = time.perf_counter()
            inputs = [window_input(readers, tile, config.min_valid_fraction) for tile in batch]
            t1 = time.perf_counter()
            outputs = actor.register([i for i in inputs if i is not None])  # what register_windows does next
            t2 = time.perf_counter()
            registrations.update({o.index: o for o in outputs})
            reads.append((t1 - t0) / len(batch))
            registers.append((t2 - t1) / len(batch))
        for index in chosen:
            if all(i in registrations for i in needs[index]):
                t0 = time.perf_counter()
                actor.write_chunk(plan.job(index), *(registrations[i] for i in needs[index]))
                writes.append(time.perf_counter() - t0)
    model = "network only" if args.network_only else "network + refinement"
    print(f"| step ({model}, {args.device}, 1 thread) | ms / tile (median) | tiles |\n|---|---|---|")
    for name, values in (("read window (optical + SAR reprojected)", reads), ("register", registers),
                         ("write chunk (read core, blend, warp, measure, write)", writes)):
        print(f"| {name} | {1000 * statistics.median(values):.0f} | {len(values) * (1 if name.startswith('write') else actor.batch_size)} |")


if __name__ == "__main__":
    main()
