"""How many windows one forward pass takes: the configured CPU batch, or on a GPU as many as its memory holds.

Convention: a GPU actor measures the peak memory of one window at the pipeline's tile size once, at start, and
takes `GPU_MEMORY_SHARE` of the device's total memory (not its free memory, which varies from run to run) over
that, at most `MAX_GPU_BATCH`. The total, unlike what is free, is the same on every run on that kind of GPU,
so a resumed run batches its windows as the first did.
"""

from __future__ import annotations

import numpy as np

GPU_MEMORY_SHARE = 0.5
"""Share of a GPU's total memory the batch may take (the rest: the model, the allocator's slack, fragmentation)."""
MAX_GPU_BATCH = 32
"""No more windows per pass than this: beyond it the launch overhead per window no longer falls."""
PROBE_SEED = 0
"""Seed of the probe window (its content does not change the memory much; its size does)."""


def batch_for_memory(total_bytes: int, per_window_bytes: int, share: float = GPU_MEMORY_SHARE,
                     cap: int = MAX_GPU_BATCH) -> int:
    """Windows per pass that fit `share` of `total_bytes` at `per_window_bytes` each, in [1, cap]."""
    if per_window_bytes <= 0:
        raise ValueError(f"per_window_bytes must be positive, got {per_window_bytes}")
    return max(1, min(cap, int(share * total_bytes) // per_window_bytes))


def probe_window(tile_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A `tile_size`² optical (3 bands, uint8) and SAR (1 band, float32 dB) window of seeded noise."""
    rng = np.random.default_rng(PROBE_SEED)
    optical = rng.integers(0, 256, (3, tile_size, tile_size), dtype=np.uint8)
    sar = rng.normal(-15.0, 3.0, (1, tile_size, tile_size)).astype(np.float32)
    return optical, sar


def gpu_batch_size(registrar, tile_size: int) -> int:  # noqa: ANN001 - a model.Registrar on a CUDA device
    """The batch of `registrar`'s GPU at `tile_size`: one probe window's peak memory against the total."""
    import torch

    device = registrar.device
    optical, sar = probe_window(tile_size)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    registrar.register_batch([optical], [sar])
    torch.cuda.synchronize(device)
    per_window = torch.cuda.max_memory_allocated(device) - before
    return batch_for_memory(torch.cuda.get_device_properties(device).total_memory, per_window)
