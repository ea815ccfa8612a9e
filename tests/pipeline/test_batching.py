"""The GPU batch: as many windows as the memory share holds, within bounds; the probe window is seeded."""

import numpy as np
import pytest

from pipeline.batching import MAX_GPU_BATCH, batch_for_memory, probe_window

GIB = 2**30


def test_the_batch_is_the_windows_that_fit_the_memory_share():
    # an H200-sized device at 1.5 GiB per window: 139 GiB x 0.5 / 1.5 GiB = 46 windows, capped
    assert batch_for_memory(139 * GIB, int(1.5 * GIB)) == MAX_GPU_BATCH
    # a 16 GiB device at 1.5 GiB per window: half of it, 8 GiB, holds 5 whole windows
    assert batch_for_memory(16 * GIB, int(1.5 * GIB)) == 5
    assert batch_for_memory(4 * GIB, 3 * GIB) == 1  # never less than one: the actor then goes tile by tile
    with pytest.raises(ValueError, match="per_window_bytes"):
        batch_for_memory(16 * GIB, 0)


def test_the_probe_window_is_the_same_every_time():
    (o1, s1), (o2, s2) = probe_window(64), probe_window(64)
    assert o1.shape == (3, 64, 64) and s1.shape == (1, 64, 64)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(s1, s2)
