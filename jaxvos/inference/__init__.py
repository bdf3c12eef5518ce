"""Family-agnostic inference: whole videos under `lax.scan` or one jitted step per frame (streaming)."""

from jaxvos.inference.engine import Segmenter, Stream, segment_video
from jaxvos.inference.frames import Geometry, normalize, plan_geometry

__all__ = ["Geometry", "Segmenter", "Stream", "normalize", "plan_geometry", "segment_video"]
