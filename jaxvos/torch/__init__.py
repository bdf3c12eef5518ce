"""PyTorch twins of jaxvos families, for inference with PyTorch alone (torch and NumPy; JAX is never imported).

    import jaxvos.torch
    processor = jaxvos.torch.load("stcn.pth")              # `python -m jaxvos convert to-torch` writes the file
    probs = processor.step(image, mask)                    # first frame: float [3 H W] normalised, id map [H W]
    probs = processor.step(next_image)                     # [1 + objects, H, W], background first

Twins exist for STCN (`jaxvos.torch.stcn`) and STM (`jaxvos.torch.stm`), written from the papers and jaxvos's own
modules; their parameter names are jaxvos's (so a jaxvos checkpoint's state dict loads strictly), and the
streaming `Processor` keeps jaxvos's memory policy (pinned annotated frames, an every-k ring of fixed slots, the
temporary previous-frame slot, STCN's top-k read). Parity with jaxvos is tested to 1e-4 in probabilities.
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
  network, memory_config, _ = load_network(path)
  return Processor(network, memory_config, max_objects=max_objects, device=device or "cpu")
