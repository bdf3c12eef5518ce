"""Readers, writers, generators and clip samplers for video object segmentation data.

Every reader returns frames as uint8 [h w 3] RGB and masks as uint8 [h w] object ids (0 background); see
`data_pipelines/README.md` for the supported layouts. Bad input raises `DataError` (one line naming the file);
inputs that can be repaired safely are repaired with a `DataWarning`.
"""

from data_pipelines.errors import DataError, DataWarning

__all__ = ["DataError", "DataWarning"]
