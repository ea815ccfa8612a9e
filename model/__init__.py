"""SOMA: dense SAR -> optical registration (FGE + GLAM) behind a numpy-in, numpy-out Registrar.

Knows nothing of geo-referencing, Ray or Prefect.
"""

from .config import CONFIGS, LITE, PAPER, SomaConfig, get_config
from .errors import CheckpointError, InvalidInputError, SomaError
from .registrar import Registrar, Registration, warp_numpy

__all__ = [
    "CONFIGS",
    "LITE",
    "PAPER",
    "CheckpointError",
    "InvalidInputError",
    "Registrar",
    "Registration",
    "SomaConfig",
    "SomaError",
    "get_config",
    "warp_numpy",
]
