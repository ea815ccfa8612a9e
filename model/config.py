"""Typed configuration of the SOMA network: every size named once, `lite` and `paper` built here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stride = int


def as_tuples(value: Any) -> Any:
    """Lists (as JSON or a weights-only checkpoint gives them back) as tuples again, nested."""
    return tuple(as_tuples(x) for x in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class FGEConfig:
    """Feature Gradient Enhancer: the oriented gradient filter bank and its attention."""

    orientations: int = 8
    """Distinct filter orientations, evenly spaced over 180 degrees (0, 22.5, ... 157.5 for 8)."""
    sigmas: tuple[float, ...] = (1.0, 2.0)
    """Scales of the derivative-of-Gaussian filters, in feature pixels."""
    kernel_radius_sigmas: float = 2.5
    """Half kernel size in units of the largest sigma (truncation of the Gaussian)."""
    gradient_channels: int = 4
    """Feature channels projected (1x1) before the filter bank is applied depthwise."""
    attention_reduction: int = 4
    """Squeeze ratio of the channel attention over the gradient responses."""
    spatial_attention_kernel: int = 7
    """Kernel of the spatial attention over mean/max of the gradient responses."""
    reconstruction_groups: int = 4
    """GroupNorm groups of the spatial reconstruction unit (SCConv SRU)."""
    reconstruction_split: float = 0.5
    """Share of channels taking the rich (group conv) path of the channel reconstruction unit."""
    reconstruction_squeeze: int = 2
    """Squeeze ratio of the channel reconstruction unit (SCConv CRU)."""


@dataclass(frozen=True)
class EncoderConfig:
    """One encoder per modality; the feature pyramid it hands to GLAM."""

    kind: Literal["lite", "paper"] = "lite"
    channels: tuple[tuple[Stride, int], ...] = ((1, 16), (2, 32), (4, 64), (8, 96), (16, 128))
    """Output channels per stride, finest first."""
    fge_strides: tuple[Stride, ...] = (2, 4, 8)
    """Strides whose features the FGE enhances."""
    norm_groups: int = 8
    """GroupNorm groups in the convolutional blocks (batch-size independent)."""
    structure_orientations: int = 8
    """`lite`: orientations of the fixed structure channels both modalities share."""
    structure_sigmas: tuple[float, ...] = (1.0, 2.0)
    """`lite`: derivative scales of the structure channels, in pixels."""
    structure_pool_sigma: float = 1.5
    """`lite`: Gaussian smoothing of the absolute derivatives (CFOG's aggregation), in pixels."""
    resnet_weights: str | None = None
    """`paper`: local file with torchvision-layout ResNet-50 weights (never downloaded)."""
    dinov2_weights: str | None = None
    """`paper`: local file with timm-layout DINOv2 ViT-L/14 + registers weights (never downloaded)."""
    vit_embed_dim: int = 1024
    vit_depth: int = 24
    vit_heads: int = 16
    vit_patch: int = 14
    vit_registers: int = 4
    vit_pretrain_grid: int = 37
    """Positional-embedding grid the DINOv2 weights were trained with (518 / 14)."""

    def channels_at(self, stride: Stride) -> int:
        """Output channels of the pyramid level at `stride`."""
        return dict(self.channels)[stride]

    @property
    def strides(self) -> tuple[Stride, ...]:
        """Pyramid strides, finest first."""
        return tuple(s for s, _ in self.channels)


@dataclass(frozen=True)
class GLAMConfig:
    """Global-Local Affine-Flow Matcher: global affine, affine refinement, dense flow refinement."""

    coarse_stride: Stride = 16
    """Stride of the all-pairs global correlation."""
    match_temperature: float = 0.05
    """Initial softmax temperature of the global correlation (learnable, on cosine similarity)."""
    match_window_cells: float = 1.5
    """Radius around the correlation peak, in coarse cells, used by the windowed soft-argmax."""
    affine_strides: tuple[Stride, ...] = (8, 4)
    """Strides at which the affine is refined from a local correlation."""
    flow_strides: tuple[Stride, ...] = (2, 1)
    """Strides at which the dense residual flow is refined."""
    local_radius: tuple[tuple[Stride, int], ...] = ((8, 3), (4, 3), (2, 2), (1, 1))
    """Search radius of the local correlation per stride, in feature pixels."""
    local_temperature: float = 0.1
    """Initial softmax temperature of the local soft-argmax (learnable, on cosine similarity)."""
    head_channels: int = 48
    """Width of the local matching and flow refinement heads."""
    ridge: float = 1e-6
    """Ridge towards the identity affine, relative to the total match weight."""
    max_scale_change: float = 1.5
    """An affine fit whose linear part scales by more than this (or reflects) is rejected."""
    ransac_hypotheses: int = 256
    ransac_threshold_cells: float = 2.0
    """Inlier threshold of the inference-time robust fit, in cells of the stage's stride."""
    irls_iterations: int = 3
    seed: int = 0
    """Seed of the robust fit's sampling: inference is deterministic."""

    def radius_at(self, stride: Stride) -> int:
        """Local correlation radius at `stride`."""
        return dict(self.local_radius)[stride]


@dataclass(frozen=True)
class SomaConfig:
    """The whole network."""

    name: str = "lite"
    optical_channels: int = 3
    """Model input: optical as red, green, blue."""
    sar_channels: int = 1
    """Model input: one SAR polarisation (VH when two are given)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fge: FGEConfig = field(default_factory=FGEConfig)
    glam: GLAMConfig = field(default_factory=GLAMConfig)

    @property
    def size_multiple(self) -> int:
        """Inputs are padded to a multiple of this (the coarsest stride)."""
        return self.glam.coarse_stride

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for checkpoints loaded with `weights_only=True`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SomaConfig":
        """Inverse of `to_dict`; lists become tuples again."""
        tup = as_tuples
        return cls(
            name=d["name"],
            optical_channels=d["optical_channels"],
            sar_channels=d["sar_channels"],
            encoder=EncoderConfig(**{k: tup(v) for k, v in d["encoder"].items()}),
            fge=FGEConfig(**{k: tup(v) for k, v in d["fge"].items()}),
            glam=GLAMConfig(**{k: tup(v) for k, v in d["glam"].items()}),
        )


@dataclass(frozen=True)
class RefineConfig:
    """Test-time instance optimisation of each tile's deformation after GLAM.

    The deformation is the network's flow composed with a residual: an affine plus a smooth field on a
    bicubic control grid, fitted by Levenberg-Marquardt coarse to fine to a modality-independent
    similarity. On by default: `Registrar.load()` and the pipeline run the network, then this.
    """

    enabled: bool = True
    objective: Literal["structure_ssd", "ngf"] = "structure_ssd"
    """Similarity: SSD of the oriented structure channels (CFOG-like), or of normalised gradient fields
    in their sign-invariant tensor form (``|n n^T - m m^T|^2``)."""
    levels: tuple[int, ...] = (2, 1)
    """Downsampling factors, coarse to fine; the last must be 1."""
    iterations: tuple[int, ...] = (15, 5)
    """Levenberg-Marquardt iteration budget per level, one per entry of `levels` (the early stop may end a
    level sooner)."""
    damping: float = 1e-2
    """Levenberg-Marquardt damping, relative to the diagonal of the normal equations; grows on a rejected step."""
    early_stop_px: float = 0.01
    """A tile stops when its largest accepted update moves no pixel by more than this, px."""
    field_spacing_px: int = 128
    """Control-point spacing of the residual field (a 512^2 tile: 5 x 5 points); 0 fits an affine only."""
    field_smoothness: float = 1.0
    """Weight of the diffusion regulariser on the control grid, relative to the data term's mean curvature."""
    field_ridge: float = 0.1
    """Ridge on the control points' displacement (the affine takes the global motion), same scale."""
    linear: Literal["affine", "similarity", "translation"] = "similarity"
    """The residual's linear part: a free affine, a similarity (rotation and uniform scale, no shear) or
    none (translation plus the field)."""
    start: Literal["affine", "similarity", "identity"] = "similarity"
    """Where the refinement starts: the network's global affine as it is, its nearest similarity, or identity
    (the network unused but for the certainty; an ablation, and for pairs known to be aligned within the
    search radius). The network's shear and anisotropic scale are mostly its own error (geocoded S1/S2 differ
    by a shift, a small rotation and scale, and terrain's local field) and a similarity residual cannot undo
    them."""
    search_radius_px: int = 16
    """Largest shift, px, of the exhaustive search that moves the start into the refinement's basin (0: none)."""
    sweep: bool = True
    """Rank the network's start against a sweep of rotations and scales, each with its best shift
    (`model.rotation_search`): the robust start for large transforms."""
    sweep_max_rotation_deg: float = 20.0
    """The sweep covers rotations of -this .. this, deg."""
    sweep_step_deg: float = 4.0
    """Step of the sweep's rotations, deg."""
    sweep_scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    """Scales the sweep tries at every rotation."""
    sweep_level: int = 4
    """Downsampling factor at which the sweep's candidates are scored and shifted."""
    sweep_radius_px: int = 64
    """Largest shift, px, of each sweep candidate's exhaustive search."""
    sweep_keep: int = 3
    """How many of the sweep's best candidates are fitted and ranked against the network's start."""
    sweep_iterations: int = 10
    """Levenberg-Marquardt budget of each candidate's similarity fit at the sweep's level."""
    linear_ridge: float = 1e-3
    """Ridge on the residual affine's linear part (px of motion at half the tile size), same scale."""
    structure_orientations: int = 8
    structure_sigmas: tuple[float, ...] = (1.0, 2.0)
    structure_pool_sigma: float = 1.5
    ngf_epsilon: float = 0.1
    """NGF edge parameter, relative to the image's mean gradient magnitude."""
    guard_min_coverage: float = 0.3
    """A candidate (refined, network, identity) that leaves less than this share of the reference's valid
    pixels overlapped is refused by the guard."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (recorded with evaluation results)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RefineConfig":
        """Inverse of `to_dict`; lists become tuples again."""
        return cls(**{k: as_tuples(v) for k, v in d.items()})


LITE = SomaConfig()

PAPER = SomaConfig(
    name="paper",
    encoder=EncoderConfig(
        kind="paper",
        channels=((1, 32), (2, 64), (4, 128), (8, 256), (16, 256)),
    ),
    fge=FGEConfig(gradient_channels=8),
    glam=GLAMConfig(head_channels=96),
)

CONFIGS: dict[str, SomaConfig] = {"lite": LITE, "paper": PAPER}


def get_config(name: str) -> SomaConfig:
    """The named configuration (`lite` or `paper`)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown SOMA config {name!r}; expected one of {sorted(CONFIGS)}") from None
