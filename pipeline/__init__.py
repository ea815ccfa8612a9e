"""One scene pair: read + reproject, tile, register on Ray actors, blend, warp, write Zarr (see DESIGN.md).

Imports `model`; never Prefect.
"""

from .config import PipelineConfig, StorageOptions
from .pair import completed_result, register_pair, store_path
from .pool import TilePool
from .quality import TileStatus
from .rasters import RasterError, TransientReadError
from .scene import PairResult, ScenePair

__all__ = ["PairResult", "completed_result", "PipelineConfig", "RasterError", "ScenePair", "StorageOptions", "TilePool", "TileStatus", "TransientReadError",
           "register_pair", "store_path"]
