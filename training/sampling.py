"""Training samples: a random crop of a trusted quadrant, a random misregistration, appearance changes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from model.synthetic_warp import MisregistrationRange, random_misregistration
from model.training import TrainingBatch, make_batch

from .data import QUADRANT, Pair, Quadrant


@dataclass(frozen=True)
class Appearance:
    """Photometric and speckle augmentation ranges."""

    gamma: tuple[float, float] = (0.7, 1.4)
    channel_gain: float = 0.15
    """Optical: each channel scaled by 1 +- this."""
    grey_probability: float = 0.1
    speckle_looks: tuple[float, float] = (3.0, 30.0)
    """SAR: multiplicative Gamma(L, 1/L) noise with L drawn in this range (fewer looks, more speckle)."""
    noise_probability: float = 0.7


def augment_optical(rng: np.random.Generator, optical: np.ndarray, a: Appearance) -> np.ndarray:
    """Random gamma, per-channel gain, sometimes grey; float32 in [0, 1]."""
    x = optical.astype(np.float32) / 255.0
    x = x ** rng.uniform(*a.gamma)
    x = x * (1 + rng.uniform(-a.channel_gain, a.channel_gain, size=(x.shape[0], 1, 1))).astype(np.float32)
    if rng.random() < a.grey_probability:
        x = np.repeat(x.mean(axis=0, keepdims=True), x.shape[0], axis=0)
    return np.clip(x, 0, 1)


def augment_sar(rng: np.random.Generator, sar: np.ndarray, a: Appearance) -> np.ndarray:
    """Random gamma and multiplicative speckle; float32."""
    x = (sar.astype(np.float32) / 255.0) ** rng.uniform(*a.gamma)
    if rng.random() < a.noise_probability:
        looks = rng.uniform(*a.speckle_looks)
        x = x * rng.gamma(looks, 1.0 / looks, size=x.shape).astype(np.float32)
    return x


def sample_batch(rng: np.random.Generator, quadrants: list[Quadrant], pairs: dict[str, Pair], crop: int,
                 batch_size: int, warp: MisregistrationRange, appearance: Appearance | None = Appearance(),
                 ) -> TrainingBatch:
    """`batch_size` random crops, each inside one trusted quadrant, misregistered within `warp`.

    The moved SAR is drawn from the whole pair, so the transform brings in real surrounding content.
    """
    tiles, mis_list, origins = [], [], []
    for _ in range(batch_size):
        q = quadrants[rng.integers(len(quadrants))]
        pair = pairs[q.pair_id]
        x0 = q.x0 + int(rng.integers(QUADRANT - crop + 1))
        y0 = q.y0 + int(rng.integers(QUADRANT - crop + 1))
        optical = pair.optical[:, y0 : y0 + crop, x0 : x0 + crop]
        sar = pair.sar
        if appearance is not None:
            optical, sar = augment_optical(rng, optical, appearance), augment_sar(rng, sar, appearance)
        mis = dataclasses.replace(random_misregistration(rng, (crop, crop), warp), pair_offset=q.offset)
        tiles.append((optical, sar))
        mis_list.append(mis)
        origins.append((x0, y0))
    return make_batch(tiles, mis_list, origins)
