"""Parameter-free pure functions shared by models, losses and metrics (no parameters, no configs)."""

from jaxvos.ops.masks import (
    boundary_map,
    dilate_disk,
    disk_row_extents,
    pack_bits,
    packed_boundary_map,
    packed_count,
    packed_dilate_disk,
    unpack_bits,
)

__all__ = [
    "boundary_map",
    "dilate_disk",
    "disk_row_extents",
    "pack_bits",
    "packed_boundary_map",
    "packed_count",
    "packed_dilate_disk",
    "unpack_bits",
]
