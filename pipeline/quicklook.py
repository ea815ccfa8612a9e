"""One PNG per pair: optical/SAR checkerboards before and after, the flow magnitude and the certainty."""

from __future__ import annotations

import io

import fsspec
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend
import numpy as np  # noqa: E402

from model.normalize import prepare_optical, prepare_sar  # noqa: E402

from .config import PipelineConfig  # noqa: E402
from .rasters import OpticalReader, SarReader  # noqa: E402
from .store import open_pair  # noqa: E402

CHECKER_SQUARES = 8
"""Squares along the longest side of the checkerboards."""


def checkerboard(a: np.ndarray, b: np.ndarray, squares: int) -> np.ndarray:
    """`a` on the white squares, `b` on the black ones (both `(h, w)`)."""
    h, w = a.shape
    side = max(max(h, w) // squares, 1)
    rows, cols = np.indices((h, w)) // side
    return np.where((rows + cols) % 2 == 0, a, b)


def write_quicklook(store: str, optical: OpticalReader, sar: SarReader, config: PipelineConfig) -> str:
    """Render the pair's quicklook next to its group (`{store}` minus `.zarr` + `.quicklook.png`)."""
    grid = optical.grid
    scale = config.quicklook_size / max(grid.height, grid.width)
    step = max(int(np.ceil(1 / scale)), 1)
    ds = open_pair(store, config.storage)
    sub = ds.isel(y=slice(None, None, step), x=slice(None, None, step))
    h, w = sub.sizes["y"], sub.sizes["x"]
    grey = prepare_optical(optical.overview(h, w)).image.mean(axis=0)
    before = prepare_sar(sar.overview(grid, h, w)).image[0]
    after = prepare_sar(sub.sar_coregistered.values).image[0]
    magnitude = np.hypot(sub.flow_x.values, sub.flow_y.values)
    certainty = sub.certainty.values

    fig, axes = plt.subplots(2, 2, figsize=(10, 10 * h / w + 0.8), constrained_layout=True)
    axes[0, 0].imshow(checkerboard(grey, before, CHECKER_SQUARES), cmap="gray")
    axes[0, 0].set_title("optical / SAR before")
    axes[0, 1].imshow(checkerboard(grey, after, CHECKER_SQUARES), cmap="gray")
    axes[0, 1].set_title("optical / SAR co-registered")
    im = axes[1, 0].imshow(magnitude, cmap="magma")
    fig.colorbar(im, ax=axes[1, 0], shrink=0.8, label="px")
    axes[1, 0].set_title("flow magnitude")
    im = axes[1, 1].imshow(certainty, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=axes[1, 1], shrink=0.8)
    axes[1, 1].set_title("certainty")
    for ax in axes.flat:
        ax.set_axis_off()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    path = store.removesuffix(".zarr") + ".quicklook.png"
    with fsspec.open(path, "wb", **config.storage.for_url(path)) as f:
        f.write(buffer.getvalue())
    return path
