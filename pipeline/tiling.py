"""The reference grid cut into tiles: a core per tile (its Zarr chunk) inside an overlapping window (what
the model registers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A pixel rectangle of the reference grid."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)

    def intersect(self, other: "Box") -> "Box | None":
        r0, c0 = max(self.row, other.row), max(self.col, other.col)
        r1 = min(self.row + self.height, other.row + other.height)
        c1 = min(self.col + self.width, other.col + other.width)
        return Box(r0, c0, r1 - r0, c1 - c0) if r1 > r0 and c1 > c0 else None

    def relative_to(self, outer: "Box") -> tuple[slice, slice]:
        """Slices of this box inside `outer`'s array."""
        r, c = self.row - outer.row, self.col - outer.col
        return slice(r, r + self.height), slice(c, c + self.width)

    def grown(self, pad: int) -> "Box":
        """This box with `pad` px more on every side."""
        return Box(self.row - pad, self.col - pad, self.height + 2 * pad, self.width + 2 * pad)

    def as_list(self) -> list[int]:
        return [self.row, self.col, self.height, self.width]


@dataclass(frozen=True)
class Tile:
    """Tile `index` of the grid, counted row-major."""

    index: int
    core: Box
    """What this tile writes: exactly one Zarr chunk."""
    window: Box
    """What the model registers: the core plus half the overlap on each side, moved inside the scene at
    its edges so every window of a scene has the same size."""


def _window_start(core_start: int, half_overlap: int, size: int, extent: int) -> int:
    return min(max(core_start - half_overlap, 0), max(extent - size, 0))


def make_tiles(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering a `height` x `width` grid; cores of side tile_size - overlap."""
    chunk = tile_size - overlap
    win_h, win_w = min(tile_size, height), min(tile_size, width)
    tiles = []
    for r in range(0, height, chunk):
        for c in range(0, width, chunk):
            core = Box(r, c, min(chunk, height - r), min(chunk, width - c))
            window = Box(_window_start(r, overlap // 2, win_h, height), _window_start(c, overlap // 2, win_w, width),
                         win_h, win_w)
            tiles.append(Tile(len(tiles), core, window))
    return tiles


def contributors(tiles: list[Tile]) -> dict[int, list[int]]:
    """For each tile, the tiles whose windows cover part of its core (itself included): what blending
    its chunk needs."""
    out = {}
    for t in tiles:
        out[t.index] = [u.index for u in tiles if u.window.intersect(t.core) is not None]
    return out
