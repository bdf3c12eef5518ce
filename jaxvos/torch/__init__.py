"""PyTorch twins of jaxvos families, for inference with PyTorch alone (torch and NumPy; JAX is never imported).

    import jaxvos.torch
    processor = jaxvos.torch.load("stcn.pth")              # `python -m jaxvos convert to-torch` writes the file
    probs = processor.step(image, mask)                    # first frame: float [3 H W] normalised, id map [H W]
    probs = processor.step(next_image)                     # [1 + objects, H, W], background first

Twins exist for every family, written from the papers and jaxvos's own modules (never ported from reference
code): STCN (`jaxvos.torch.stcn`), STM (`stm`), SwiftNet (`swiftnet`, its pixel-adaptive memory in
`swiftnet_memory`), GAM (`gam`, `gam_processor`) and SpVOS (`spvos`, `spvos_processor`: the gates decide as in
jaxvos, but the gated convolutions run as masked dense compute, so the twin saves no time). Their parameter names
are jaxvos's (so a jaxvos checkpoint's state dict loads strictly; STCN's, STM's and SwiftNet R18's are also the
official code's where the parts match), and each family's streaming processor keeps jaxvos's memory policy
(STM/STCN: pinned annotated frames, an every-k ring of fixed slots, the temporary previous-frame slot, STCN's
top-k read; SwiftNet: the variation-aware trigger and pixel-wise update; GAM: the per-object running-mean
context and mask history; SpVOS: argmax gates, reuse caches, dense refresh frames). Parity with jaxvos is tested
to 1e-4 in probabilities (it is about 1e-6).
"""

import os

from jaxvos.torch.checkpoint import TWINS, build, load_network, read, save
from jaxvos.torch.memory import MemoryConfig
from jaxvos.torch.processor import Processor

__all__ = ["MemoryConfig", "Processor", "TWINS", "build", "load", "load_network", "read", "save"]


def load(path: str | os.PathLike, *, max_objects: int | None = None, device=None) -> Processor:
  """The streaming processor of a twin checkpoint (`jaxvos.torch.checkpoint`), on `device` (default CPU).

  `max_objects`: object slots; by default the number of objects in the first mask (give it when objects appear
  later in the video).
  """
  network, memory_config, payload = load_network(path)
  if payload["family"].split("-")[0] == "swiftnet":  # the pixel-adaptive memory: its own processor
    from jaxvos.torch.swiftnet import SwiftNetProcessor  # pylint: disable=g-import-not-at-top
    return SwiftNetProcessor(network, memory_config, max_objects=max_objects, device=device or "cpu")
  if payload["family"].split("-")[0] in ("gam", "spvos"):  # the global context / the gates: their own processors
    from jaxvos.torch.gam_processor import GAMProcessor  # pylint: disable=g-import-not-at-top
    from jaxvos.torch.spvos_processor import SpVOSProcessor  # pylint: disable=g-import-not-at-top
    processor_class = GAMProcessor if payload["family"].startswith("gam") else SpVOSProcessor
    return processor_class(network, memory_config, max_objects=max_objects, device=device or "cpu")
  return Processor(network, memory_config, max_objects=max_objects, device=device or "cpu")
