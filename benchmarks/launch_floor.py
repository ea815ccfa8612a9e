"""The launch-bound floor of the model's GPU time per tile, from a CPU run: the aten operators one
`Registrar.register_batch` call dispatches (each one or more kernel launches on CUDA) and its host syncs
(`.item()`, `.tolist()`, a bool of a tensor: each one drains the GPU queue).

An iterative refinement on small tensors is bound by these counts on a GPU, not by its FLOPs, so
ops x LAUNCH_US + syncs x SYNC_US is what the model can cost per batch at best, however fast the chip.

Usage: python benchmarks/launch_floor.py [--batch 2] [--size 512] [--network-only]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import rasterio
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from model import Registrar
from model.config import RefineConfig

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "data" / "sample" / "s1s2_volkov" / "142"
LAUNCH_US = 5.0
"""Host cost of one CUDA kernel launch through PyTorch's eager dispatcher, µs (5-10 µs is typical)."""
SYNC_US = 20.0
"""A host-device sync beyond the launch: the queue drains and the copy returns, µs."""
SYNC_OPS = ("aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero", "aten::equal")
"""Operators that wait for the device to return a value to the host."""


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched (views and metadata-only ops are free on a GPU: not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if not func.is_view:
            self.ops[func._schema.name] += 1
        return func(*args, **(kwargs or {}))


def tiles(size: int, batch: int) -> tuple[list, list]:
    """`batch` size² windows of the bundled pair 142 (optical bands first, SAR VH)."""
    with rasterio.open(f"{PAIR}_opt.tif") as o, rasterio.open(f"{PAIR}_sar.tif") as s:
        opt, sar = o.read(), s.read()
    step = (opt.shape[-1] - size) // max(1, batch - 1)
    cols = [min(i * step, opt.shape[-1] - size) for i in range(batch)]
    return ([opt[:, :size, c:c + size] for c in cols], [sar[:, :size, c:c + size] for c in cols])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--network-only", action="store_true")
    args = parser.parse_args()
    refinement = RefineConfig(enabled=not args.network_only)
    registrar = Registrar.load(refinement=refinement)
    opticals, sars = tiles(args.size, args.batch)
    registrar.register_batch(opticals, sars)  # warm-up
    counter = OpCounter()
    with counter:
        registrar.register_batch(opticals, sars)
    ops, syncs = sum(counter.ops.values()), sum(counter.ops[o] for o in SYNC_OPS)
    floor_ms = (ops * LAUNCH_US + syncs * SYNC_US) / 1000
    print(f"{'refinement on' if refinement.enabled else 'network only'}, batch {args.batch} x {args.size}²: "
          f"{ops} operators, {syncs} host syncs per batch")
    print(f"launch-bound floor: {floor_ms:.1f} ms per batch, {floor_ms / args.batch:.1f} ms per tile "
          f"({LAUNCH_US:g} µs per launch, {SYNC_US:g} µs per sync)")
    print("most dispatched:", ", ".join(f"{k.removeprefix('aten::')} {v}" for k, v in counter.ops.most_common(8)))


if __name__ == "__main__":
    main()
