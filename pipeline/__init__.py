"""One scene pair: read + reproject, tile, register on Ray actors, blend, warp, write Zarr (see DESIGN.md).

Imports `model`; never Prefect.
"""
