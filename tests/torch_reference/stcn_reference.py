"""The STCN model of the `stcnbuf` package (an MIT fork of hkchengrex/STCN) as an independent parity reference.

`build` makes the reference with random weights that keep activations in a sensible range (BatchNorm statistics
measured on the test clip, then perturbed; keys scaled so the softmax over memory is not one-hot), and `run`
drives it over a clip by hand, the way stcnbuf's `STCNInference` does: the first frame's masks into memory,
then for every later frame encode, read the memory (top-k), decode, soft-aggregate, and write the frame into
memory every `every` frames (no eviction, no temporary frame).
"""

import numpy as np
import torch

from tests.torch_reference import torchvision_standin


def build(frames: torch.Tensor, masks: torch.Tensor, seed: int = 0) -> torch.nn.Module:
  """stcnbuf's eval-mode STCN with random weights; frames [t 3 h w] (normalised), masks [o 1 h w]."""
  with torchvision_standin.installed():
    from stcnbuf.model import eval_network  # pylint: disable=g-import-not-at-top
    torch.manual_seed(seed)
    model = eval_network.STCN()
  generator = torch.Generator().manual_seed(seed)
  norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
  for norm in norms:
    norm.reset_running_stats()
    norm.momentum = None  # a cumulative average over the calibration pass
  model.train()
  with torch.no_grad():
    _, _, f16, _, _ = model.encode_key(frames)
    model.encode_value(frames[:1], f16[:1], masks)
  model.eval()
  with torch.no_grad():
    for norm in norms:
      shape = norm.running_var.shape
      norm.running_var.mul_(torch.rand(shape, generator=generator) * 0.4 + 0.8)
      norm.running_mean.add_(torch.randn(shape, generator=generator) * 0.1 * norm.running_var.sqrt())
      norm.weight.copy_(torch.rand(shape, generator=generator) * 0.5 + 0.75)
      norm.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
    # With unit-variance features the orthogonal key projection gives keys so long that the softmax over
    # memory is one-hot and float32 rounding decides it; trained STCN keys are shorter.
    model.key_proj.key_proj.weight.mul_(0.1)
  return model


def run(model: torch.nn.Module, frames: torch.Tensor, masks: torch.Tensor, every: int = 1,
        top_k: int = 20) -> list[dict[str, np.ndarray]]:
  """Per frame: encode_key outputs (k16, f16_thin, f16, f8, f4), and for frames after the first the memory
  read-out [o c h w], the per-object probabilities and the aggregated probabilities [o+1 h w] (NCHW NumPy)."""
  from stcnbuf.inference_memory_bank import MemoryBank  # pylint: disable=g-import-not-at-top
  from stcnbuf.model.eval_network import aggregate  # pylint: disable=g-import-not-at-top
  bank = MemoryBank(k=masks.shape[0], top_k=top_k)
  outputs = []
  with torch.no_grad():
    for t in range(frames.shape[0]):
      frame = frames[t:t + 1]
      k16, f16_thin, f16, f8, f4 = model.encode_key(frame)
      out = dict(k16=k16, f16_thin=f16_thin, f16=f16, f8=f8, f4=f4)
      if t == 0:
        probs = aggregate(masks)[1:]
      else:
        readout = bank.match_memory(k16)  # [o 1 c h w]
        object_probs = model.segment_with_query(readout, f8, f4, k16, f16_thin)  # [o 1 h w]
        aggregated = aggregate(object_probs)  # [o+1 1 h w]
        out.update(readout=readout[:, 0], object_probs=object_probs[:, 0], probs=aggregated[:, 0])
        probs = aggregated[1:]
      if t % every == 0:
        bank.add_memory(k16[0], model.encode_value(frame, f16, probs).squeeze(1))
      outputs.append({name: value.numpy() for name, value in out.items()})
  return outputs
