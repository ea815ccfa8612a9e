"""The training recipe in one typed place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from model.synthetic_warp import MisregistrationRange
from model.training import RefinementStart

DATA_ROOT_ENV = "SOMA_DATA_ROOT"
"""Environment variable naming the folder that holds `s1s2_volkov/` (e.g. ../shared/data)."""


def default_data_root() -> Path | None:
    """The data root from `SOMA_DATA_ROOT`, if set."""
    value = os.environ.get(DATA_ROOT_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in its state so a resume continues the same recipe."""

    data_root: str
    """Folder holding `s1s2_volkov/` (never hard-coded: a flag or SOMA_DATA_ROOT)."""
    out_dir: str = "runs/lite"
    model: str = "lite"
    train_tiles: tuple[str, ...] = ("T11SLT",)
    val_tiles: tuple[str, ...] = ("T11SMT",)
    max_offset_disagreement_px: float = 1.5
    """Training quadrants whose two residual estimates (offsets.csv) differ by more are left out."""
    steps: int = 2000
    batch_size: int = 2
    crop: int = 256
    large_crop: int = 512
    large_every: int = 8
    """Every n-th step trains on one `large_crop` pair instead of a batch of `crop` pairs."""
    lr: float = 1e-3
    min_lr: float = 2e-5
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 100
    val_cases: int = 16
    checkpoint_every: int = 50
    warp: MisregistrationRange = field(default_factory=lambda: MisregistrationRange(max_translation_px=25.0))
    """Transforms at `crop`; translation scales with the crop size (+-25 px at 256, +-50 px at 512)."""
    refinement: RefinementStart = field(default_factory=RefinementStart)
    init_from: str | None = None
    """A checkpoint whose weights start a new run (a second stage on another recipe); unused on resume."""
    threads: int = 2
    device: str = "auto"
    resnet_weights: str | None = None
    """`paper` only: local torchvision-layout ResNet-50 weights."""
    dinov2_weights: str | None = None
    """`paper` only: local timm-layout DINOv2 ViT-L/14-reg4 weights."""

    curriculum_start: float = 0.15
    """Share of the full rotation/translation/scale/shear range used at step 0."""
    curriculum_steps: int = 800
    """Steps over which the range grows linearly to the full range (local matching is learned first)."""

    def warp_for(self, crop: int, step: int | None = None) -> MisregistrationRange:
        """The misregistration range at a crop size (translation proportional to it) and training step
        (None: the full range)."""
        grow = 1.0 if step is None or not self.curriculum_steps else min(
            1.0, self.curriculum_start + (1 - self.curriculum_start) * step / self.curriculum_steps)
        low, high = self.warp.scale_range
        return replace(
            self.warp,
            max_rotation_deg=self.warp.max_rotation_deg * grow,
            max_translation_px=self.warp.max_translation_px * crop / self.crop * grow,
            scale_range=(1 - (1 - low) * grow, 1 + (high - 1) * grow),
            max_shear=self.warp.max_shear * grow,
        )
