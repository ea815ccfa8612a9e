"""Model speed: parameters, GFLOPs per pair, and pairs/s at 256^2 and 512^2 (CPU, and GPU when present).

Usage: python benchmarks/model_speed.py [--configs lite paper] [--sizes 256 512] [--repeats 3]
       python benchmarks/model_speed.py --processes 1 2   # the machine's own 1 -> N scaling ceiling
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from model import get_config
from model.network import build_network


def forward(net: torch.nn.Module, size: int, batch: int, device: torch.device) -> None:
    opt = torch.rand(batch, 3, size, size, device=device)
    sar = torch.rand(batch, 1, size, size, device=device)
    valid = torch.ones(batch, size, size, dtype=torch.bool, device=device)
    net(opt, sar, valid, valid, robust=True)
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(name: str, size: int, device: torch.device, repeats: int, batch: int) -> dict[str, float]:
    net = build_network(get_config(name)).to(device).eval()
    params = sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter:
        forward(net, size, 1, device)
    forward(net, size, batch, device)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        forward(net, size, batch, device)
    seconds = (time.perf_counter() - start) / repeats
    return {"params_m": params / 1e6, "gflops": counter.get_total_flops() / 1e9, "pairs_s": batch / seconds}


def _one_thread(name: str, size: int, repeats: int) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same random network in every process, so they do the same work
    return measure(name, size, torch.device("cpu"), repeats, 1)["pairs_s"]


def process_scaling(counts: list[int], name: str, size: int, repeats: int) -> None:
    """Aggregate pairs/s of N independent 1-thread model processes: what N actors could reach at best on
    this machine, with no pipeline, Ray or I/O in the way."""
    print(f"{'processes':>9} {'pairs/s (all)':>14} {'vs 1':>6}   ({name}, {size}², 1 thread each)")
    base = None
    with multiprocessing.get_context("spawn").Pool(max(counts)) as pool:
        for n in counts:
            rate = sum(pool.starmap(_one_thread, [(name, size, repeats)] * n))
            base = base or rate
            print(f"{n:>9} {rate:>14.3f} {rate / base:>6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["lite", "paper"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--processes", nargs="+", type=int, help="measure 1 -> N process scaling instead")
    args = parser.parse_args()
    if args.processes:
        process_scaling(args.processes, args.configs[0], args.sizes[-1], args.repeats)
        return
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'config':<7} {'device':<6} {'size':>5} {'params (M)':>11} {'GFLOPs/pair':>12} {'pairs/s':>9}")
    for device in devices:
        for name in args.configs:
            for size in args.sizes:
                try:
                    m = measure(name, size, device, args.repeats, args.batch)
                except (RuntimeError, MemoryError) as exc:  # out of memory on a small machine
                    print(f"{name:<7} {device.type:<6} {size:>5}   skipped: {str(exc).splitlines()[0][:60]}")
                    continue
                print(f"{name:<7} {device.type:<6} {size:>5} {m['params_m']:>11.2f} {m['gflops']:>12.1f} "
                      f"{m['pairs_s']:>9.2f}")


if __name__ == "__main__":
    main()
