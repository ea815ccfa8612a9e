"""Pipeline throughput and memory: tiles/s end to end vs the model alone on the same tiles (the overhead
ratio), 1 vs 2 actors, on one Ray node or spread over simulated nodes, and peak RSS (driver, and driver +
actors) vs scene size. Ray is started before the clock (as on a running cluster). Two pipeline figures:
end to end with the pair's own pool (the actors' start and model load inside it), and on a pool already
started (as `coregister_archive` shares one pool between all its pairs), against the model alone on every
window the pipeline registered, in the same batches (the refinement's time depends on the content, so a
subset would not stand for the scene).

Scenes are cut from (1024²) or tiled from (beyond 2048², mirrored copies) the bundled real 2048² scene;
10980 is a full Sentinel-2 tile.
Usage: python benchmarks/pipeline_throughput.py [--sizes 1024 2048 4096 10980] [--actors 1 2] [--nodes 1 2]
"""

from __future__ import annotations

import argparse
import atexit
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "data" / "sample" / "scene" / "T11SMT_175-188"
SAMPLE_EVERY_S = 0.2


def make_scene(size: int, out: Path) -> tuple[Path, Path]:
    """A `size`² optical/SAR pair from the bundled scene: a crop, or mirrored copies beyond 2048."""
    paths = []
    for kind in ("opt", "sar"):
        with rasterio.open(f"{SCENE}_{kind}.tif") as src:
            data, profile = src.read(), src.profile
        reps = -(-size // data.shape[-1])
        tiles = [[data[:, ::(-1 if i % 2 else 1), ::(-1 if j % 2 else 1)] for j in range(reps)] for i in range(reps)]
        big = np.block(tiles) if reps > 1 else data
        big = big[:, :size, :size]
        path = out / f"s{size}_{kind}.tif"
        with rasterio.open(path, "w", **(profile | {"width": size, "height": size})) as dst:
            dst.write(big)
        paths.append(path)
    return paths[0], paths[1]


def run_measured(args: list[str], script: str = __file__) -> tuple[dict, float, float]:
    """Run `script`'s `--child` mode (this one's by default); its JSON line, and the peak RSS, MiB, of it (the
    driver) and of its whole process tree, sampled from here so the sampling costs the driver no CPU."""
    proc = psutil.Popen([sys.executable, script, "--child", *args], stdout=subprocess.PIPE, text=True)
    peak_driver = peak_tree = 0
    while proc.poll() is None:
        try:
            driver = proc.memory_info().rss
            tree = driver + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            continue
        peak_driver, peak_tree = max(peak_driver, driver), max(peak_tree, tree)
        time.sleep(SAMPLE_EVERY_S)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"child failed: {args}\n{out}")
    return json.loads(out.strip().splitlines()[-1]), peak_driver / 2**20, peak_tree / 2**20


def start_nodes(nodes: int) -> None:
    """A simulated cluster of `nodes` Ray nodes on this machine sharing its cores (`ray.cluster_utils`)."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    from pipeline.actors import local_cluster_env

    local_cluster_env()
    cpus = max(1, (os.cpu_count() or nodes) // nodes)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    atexit.register(cluster.shutdown)  # its node processes would outlive this one otherwise


def child(opt: str, sar: str, actors: int, nodes: int, out: str) -> None:
    """One pipeline run, then the model alone on the same windows; prints one JSON line."""
    from model import Registrar
    from pipeline import PipelineConfig, ScenePair, register_pair
    from pipeline.actors import connect
    from pipeline.pool import TilePool
    from pipeline.rasters import OpticalReader, SarReader
    from pipeline.tiling import make_tiles

    config = PipelineConfig(actors=actors, quicklook=False)
    if nodes > 1:
        start_nodes(nodes)
    else:
        connect()  # Ray is up before the clock starts, as on a cluster; actors still start per pair
    start = time.perf_counter()
    result = register_pair(ScenePair("bench", (opt,), (sar,)), out, config)
    end_to_end = time.perf_counter() - start
    with TilePool.start(config) as pool:
        start = time.perf_counter()
        register_pair(ScenePair("bench_warm", (opt,), (sar,)), out, config, pool=pool)
        warm = time.perf_counter() - start
        batch_size = pool.batch_size  # the model alone gets the batches the actors got
    import torch

    torch.set_num_threads(config.threads_per_actor * actors)
    reg = Registrar.load()
    optical = OpticalReader((opt,))
    sar_reader = SarReader((sar,), optical.grid, config.margin)
    windows = [t.window for t in make_tiles(optical.grid.height, optical.grid.width, config.tile_size,
                                            config.overlap)]
    tiles = [(optical.read(w)[0], sar_reader.read(w)) for w in windows]
    start = time.perf_counter()
    for i in range(0, len(tiles), batch_size):
        batch = tiles[i:i + batch_size]
        reg.register_batch([o for o, _ in batch], [s for _, s in batch])
    model_only = time.perf_counter() - start
    print(json.dumps({"tiles": result.tiles, "end_to_end_s": end_to_end, "started_pool_s": warm,
                      "model_only_s": model_only}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1], help="simulated Ray nodes sharing the cores")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        opt, sar, actors, nodes, out = args.child
        child(opt, sar, int(actors), int(nodes), out)
        return
    print("| scene | Ray nodes | actors | tiles | seconds | tiles/s | model alone tiles/s | pipeline / model alone "
          "| on a started pool: seconds | pipeline / model alone | peak driver MiB | all processes MiB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            opt, sar = make_scene(size, Path(tmp))
            for nodes in args.nodes:
                for actors in args.actors:
                    out = Path(tmp) / f"out_{size}_{nodes}_{actors}"
                    r, driver, tree = run_measured([str(opt), str(sar), str(actors), str(nodes), str(out)])
                    print(f"| {size}² | {nodes} | {actors} | {r['tiles']} | {r['end_to_end_s']:.0f} "
                          f"| {r['tiles'] / r['end_to_end_s']:.2f} | {r['tiles'] / r['model_only_s']:.2f} "
                          f"| {r['end_to_end_s'] / r['model_only_s']:.2f} | {r['started_pool_s']:.0f} "
                          f"| {r['started_pool_s'] / r['model_only_s']:.2f} | {driver:.0f} | {tree:.0f} |", flush=True)


if __name__ == "__main__":
    main()
