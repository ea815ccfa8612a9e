"""The public API: numpy tiles in, a dense SAR -> optical registration out.

Example:
    >>> from model import Registrar
    >>> reg = Registrar.load()                        # bundled checkpoint, device="auto"
    >>> r = reg.register(optical, sar)               # optical (C, H, W), sar (C, H, W)
    >>> coregistered = warp_numpy(sar, r.flow)       # coregistered(p) = sar(p + flow(p))

Convention: see `model.geometry`; flow `(2, H, W)` = (dx, dy) reference px, backward map.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .certainty import CertaintyCalibration, calibration_path, certainty_features, load_calibration
from .checkpoint import file_sha256, load_network
from .config import LITE, RefineConfig, SomaConfig
from .errors import InvalidInputError
from .geometry import (IDENTITY_AFFINE, affine_to_flow, cell_centres, identity_affine, nearest_similarity,
                       sample_nan_aware)
from .glam import output_valid
from .network import SomaNet, build_network
from .normalize import PreparedTile, prepare_optical, prepare_sar
from .refine import refine_guarded
from .rotation_search import sweep_start
from .similarity import Descriptor
from .translation_search import search_translation

BUNDLED_CHECKPOINT = Path(__file__).parent / "weights" / "soma_lite.pt"
UNTRAINED = "untrained"
WARP_COVERAGE_TOLERANCE = 1e-4
"""`warp_numpy` gives NaN where less than 1 - this of a sample's bilinear support is valid."""


@dataclass(frozen=True)
class Registration:
    """Dense registration of one SAR tile onto its optical reference tile."""

    flow: np.ndarray
    """`(2, H, W)` float32 (dx, dy) in reference pixels: ``coregistered(p) = sar(p + flow(p))``."""
    certainty: np.ndarray
    """`(H, W)` float32 in [0, 1]: probability that the flow is within 1 px of the truth (calibrated when the
    Registrar has a calibration for its checkpoint and refinement; otherwise the network's own)."""
    affine: np.ndarray
    """`(2, 3)` float64 global affine, reference px -> SAR px (identity = aligned): the network's, or its
    nearest similarity when the refinement starts from one (`RefineConfig.start`); the network's estimate even
    where the rotation sweep's start won (`chosen` and `flow` say what was kept)."""
    valid: np.ndarray
    """`(H, W)` bool: both images have data there (and p + flow(p) falls inside the SAR)."""
    chosen: str = "network"
    """Which flow this is: "network" (refinement off), or the guard's pick "refined", "start" (the
    network's global affine or the rotation sweep's start, refinement gained nothing) or "identity"
    (nothing gained over no correction: certainty 0)."""
    features: np.ndarray | None = None
    """`(F, H, W)` float32 certainty features (`model.certainty.FEATURES`) when asked for, else None."""


def resolve_device(device: str | torch.device) -> torch.device:
    """`"auto"` -> cuda when available, else cpu; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Registrar:
    """Holds one SOMA network on one device and registers numpy tiles with it."""

    def __init__(self, net: SomaNet, device: torch.device, checkpoint_sha256: str,
                 refinement: RefineConfig = RefineConfig(), calibration: CertaintyCalibration | None = None) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.checkpoint_sha256 = checkpoint_sha256
        """SHA-256 of the checkpoint file, or "untrained"."""
        self.refinement = refinement
        """Test-time refinement after the network (`RefineConfig.enabled`; on by default)."""
        self.descriptor = Descriptor(refinement).to(device)
        if calibration is not None and (calibration.checkpoint_sha256 != checkpoint_sha256
                                        or RefineConfig.from_dict(calibration.refinement) != refinement):
            warnings.warn("certainty calibration was fitted for another checkpoint or refinement config: "
                          "using the network's own certainty", RuntimeWarning, stacklevel=2)
            calibration = None
        self.calibration = calibration if refinement.enabled else None
        """Maps the refinement's certainty features to P(EPE < 1 px); None: the network's own certainty."""

    @property
    def config(self) -> SomaConfig:
        return self.net.config

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "auto",
             refinement: RefineConfig = RefineConfig()) -> "Registrar":
        """The network in `path` (default: the bundled checkpoint), on `device` ("auto": cuda if present),
        followed by `refinement` when it is enabled, with the certainty calibration stored beside the
        checkpoint (`model.certainty.calibration_path`) when there is one for this refinement.

        Without a bundled checkpoint, an untrained `lite` network is used and a warning says so.
        """
        device = resolve_device(device)
        if path is None and not BUNDLED_CHECKPOINT.is_file():
            warnings.warn("no bundled SOMA checkpoint: Registrar.load() uses an UNTRAINED lite network",
                          RuntimeWarning, stacklevel=2)
            return cls(build_network(LITE), device, UNTRAINED, refinement)
        path = Path(path) if path is not None else BUNDLED_CHECKPOINT
        net, _ = load_network(path)
        calibration_file = calibration_path(path)
        calibration = load_calibration(calibration_file) if calibration_file.is_file() else None
        return cls(net, device, file_sha256(path), refinement, calibration)

    def register(self, optical: np.ndarray, sar: np.ndarray, *, optical_nodata: float | None = None,
                 sar_nodata: float | None = None) -> Registration:
        """Register one SAR tile onto its optical tile of the same H, W (>= 64)."""
        return self.register_batch([optical], [sar], optical_nodata=optical_nodata, sar_nodata=sar_nodata)[0]

    def register_batch(self, opticals: list[np.ndarray], sars: list[np.ndarray], *,
                       optical_nodata: float | None = None, sar_nodata: float | None = None,
                       keep_features: bool = False) -> list[Registration]:
        """Register same-size tile pairs in one forward pass (`keep_features`: return the certainty features
        too, as the calibration is fitted from them; needs refinement)."""
        if len(opticals) != len(sars) or not opticals:
            raise InvalidInputError(f"register_batch: {len(opticals)} optical and {len(sars)} SAR tiles; "
                                    "expected the same, non-zero number")
        opt = [prepare_optical(o, optical_nodata) for o in opticals]
        sar = [prepare_sar(s, sar_nodata) for s in sars]
        size = opt[0].valid.shape
        for i, (o, s) in enumerate(zip(opt, sar)):
            if o.valid.shape != size or s.valid.shape != size:
                raise InvalidInputError(
                    f"tile {i}: optical {o.valid.shape} and SAR {s.valid.shape} must both be {size} "
                    "(same H, W for every tile of a batch)")
        if keep_features and not self.refinement.enabled:
            raise InvalidInputError("keep_features: certainty features come from the refinement, which is off")
        return self._forward(opt, sar, keep_features)

    @torch.inference_mode()
    def _forward(self, opt: list[PreparedTile], sar: list[PreparedTile], keep_features: bool) -> list[Registration]:
        height, width = opt[0].valid.shape
        m = self.config.size_multiple
        pad = (0, -width % m, 0, -height % m)

        def batch(tiles: list[PreparedTile]) -> tuple[torch.Tensor, torch.Tensor]:
            image = torch.from_numpy(np.stack([t.image for t in tiles])).to(self.device)
            valid = torch.from_numpy(np.stack([t.valid for t in tiles])).to(self.device)
            return F.pad(image, pad), F.pad(valid, pad)

        (o_img, o_val), (s_img, s_val) = batch(opt), batch(sar)
        out = self.net(o_img, s_img, o_val, s_val, robust=True)
        flow, certainty = out.flow, torch.sigmoid(out.certainty_logit)
        chosen, features, affine = ("network",) * len(opt), None, out.affine
        if self.refinement.enabled:
            # The start is the network's global affine (or its nearest similarity): on real pairs its dense stage
            # adds ~0.8 px of rough error that a smooth residual cannot remove, and that the similarity wrongly
            # rewards (docs/model.md).
            size = (flow.shape[-2], flow.shape[-1])
            if self.refinement.start == "similarity":
                affine = nearest_similarity(affine, size)
            elif self.refinement.start == "identity":
                affine = identity_affine(len(opt), affine.device, affine.dtype)
            start = affine_to_flow(affine.float(), size)
            alternative = None
            if self.refinement.sweep:
                swept = sweep_start(self.descriptor, o_img, o_val, s_img, s_val, start, self.refinement)
                if "sweep" in swept.chosen:  # both starts are refined; the guard keeps the better
                    alternative = search_translation(self.descriptor, o_img, o_val, s_img, s_val, swept.flow,
                                                     self.refinement)
            start = search_translation(self.descriptor, o_img, o_val, s_img, s_val, start, self.refinement)
            guarded = refine_guarded(self.descriptor, o_img, o_val, s_img, s_val, start, self.refinement, alternative)
            features = certainty_features(self.descriptor, o_img, o_val, s_img, s_val, guarded.flow, flow,
                                          out.certainty_logit, guarded.variance)
            flow, chosen = guarded.flow, guarded.chosen
            if self.calibration is not None:
                certainty = self.calibration.probability(features)
            gained = torch.tensor([c != "identity" for c in chosen], device=flow.device)
            certainty = certainty * gained.view(-1, 1, 1)
        valid = output_valid(flow, o_val, s_val)
        crop = (slice(None), slice(None), slice(0, height), slice(0, width))
        flow = flow[crop].float().cpu().numpy()
        certainty = certainty.unsqueeze(1)[crop][:, 0].float().cpu().numpy()
        valid = valid.unsqueeze(1)[crop][:, 0].cpu().numpy()
        affine = affine.double().cpu().numpy()
        affine[[c == "identity" for c in chosen]] = np.array(IDENTITY_AFFINE)
        kept = features[crop].float().cpu().numpy() if keep_features and features is not None else None
        return [
            Registration(flow=flow[i], certainty=np.where(valid[i], certainty[i], 0.0).astype(np.float32),
                         affine=affine[i], valid=valid[i], chosen=chosen[i],
                         features=None if kept is None else kept[i])
            for i in range(len(opt))
        ]


def warp_numpy(image: np.ndarray, flow: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Backward-warp `image` `(C, H, W)` or `(H, W)` with `flow` `(2, h, w)`: ``out(p) = image(origin + p + flow(p))``.

    `origin` (x, y) places the flow's grid inside a larger `image` (e.g. a tile read with a margin); the
    output has the flow's shape. Bilinear; NaN where more than `WARP_COVERAGE_TOLERANCE` of a sample's
    support is outside the image or on NaN pixels.
    """
    squeeze = image.ndim == 2
    img = torch.from_numpy(np.asarray(image, dtype=np.float32)[None] if squeeze else np.asarray(image, np.float32))
    size = (img.shape[-2], img.shape[-1])
    shift = torch.tensor([float(origin[0]), float(origin[1])]).view(2, 1, 1)
    grid = cell_centres(flow.shape[-2], flow.shape[-1], 1) + shift
    points = grid.unsqueeze(0) + torch.from_numpy(np.asarray(flow, np.float32)).unsqueeze(0)
    result = sample_nan_aware(img, points, size, WARP_COVERAGE_TOLERANCE).numpy()
    return result[0] if squeeze else result
