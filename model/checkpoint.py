"""SOMA checkpoints: config + weights + metadata in one file, read with `weights_only=True`."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .config import SomaConfig
from .errors import CheckpointError
from .network import SomaNet

FORMAT = "soma-checkpoint/1"
REQUIRED_KEYS = ("format", "config", "state_dict")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded as the model's identity in outputs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, net: SomaNet, meta: dict[str, Any] | None = None) -> Path:
    """Write `net` (its config and weights) and plain-data `meta` atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Backbone weight paths only matter when building from scratch: the state dict holds the weights.
    config = replace(net.config, encoder=replace(net.config.encoder, resnet_weights=None, dinov2_weights=None))
    payload = {"format": FORMAT, "config": config.to_dict(), "state_dict": net.state_dict(), "meta": meta or {}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> tuple[SomaConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config, state dict and metadata of a checkpoint; `CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a loadable weights-only torch file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a SOMA checkpoint (expected a dict with keys {REQUIRED_KEYS})")
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload['format']!r}, expected {FORMAT!r}")
    try:
        config = SomaConfig.from_dict(payload["config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is malformed ({exc})") from exc
    return config, payload["state_dict"], payload.get("meta", {})


def load_network(path: str | Path) -> tuple[SomaNet, dict[str, Any]]:
    """The network stored in `path` (on the CPU, eval mode) and its metadata."""
    config, state, meta = read_checkpoint(path)
    net = SomaNet(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the {config.name!r} SOMA model: "
                              f"{str(exc).splitlines()[0]}") from exc
    return net.eval(), meta
