"""Streaming inference with a twin: `Processor.step(image, mask=None)` frame by frame, returning probabilities.

    processor = jaxvos.torch.load("stcn.pth")             # or Processor(network, memory_config)
    probs = processor.step(image, mask)                   # the first frame: its objects' masks
    probs = processor.step(image)                         # later frames; give a mask where objects appear
    ids = processor.ids_of(probs)                         # [H W] object ids (0 background)

`image` is a float tensor [3 H W] normalised with the ImageNet mean and std (the PyTorch VOS convention) or a
uint8 RGB array or tensor [H W 3] (normalised here); it is zero-padded, evenly, to multiples of 16 as jaxvos does
and the outputs are cropped back. `mask` is an id map [H W] (0 background): ids not seen before are objects that
appear at this frame (ids already known are ignored there, as in `segment`). The result is float32
[1 + n H W]: background, then the n objects seen so far in `processor.object_ids` order (first appearance).

The per-frame maths and the memory policy are jaxvos's (`jaxvos.models.skeleton` with
`jaxvos.memory.key_value`): read the memory, decode, give objects that appear at this frame their masks, soft-
aggregate, and write the frame into memory by the policy, encoded from the detached soft probabilities. Objects
occupy a fixed number of slots (`max_objects`), as in jaxvos: a memory slot holds values for every object slot,
encoded when the frame was written, so an object can join later only into a slot that was there all along. By
default the capacity is the number of objects in the first mask; give `max_objects` when objects appear later.
Padded (unused) slots change nothing.

Parity with jaxvos (1e-4 in probabilities, tested on the CPU) assumes float32 arithmetic: on a GPU, turn off
TF32 (`torch.backends.cudnn.allow_tf32 = False`, `torch.backends.cuda.matmul.allow_tf32 = False`).
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jaxvos.torch import memory as memory_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Processor:
  """Per-video streaming state of a twin network (see the module docstring); `reset()` starts a new video."""

  def __init__(self, network: nn.Module, memory_config: memory_lib.MemoryConfig, *, max_objects: int | None = None,
               device: str | torch.device | None = None):
    self.device = torch.device(device) if device is not None else next(network.parameters()).device
    self.network = network.to(self.device).eval()
    self.memory_config = memory_config
    self.affinity = memory_lib.AFFINITIES[network.affinity]
    self.top_k = network.top_k
    self.max_objects = max_objects
    self.reset()

  def reset(self) -> None:
    """Forgets the video: the next `step` needs a mask."""
    self.memory: memory_lib.KeyValueMemory | None = None
    self.object_ids: list[int] = []
    self.capacity = self.max_objects
    self.object_valid: torch.Tensor | None = None
    self._input_hw: tuple[int, int] | None = None

  @torch.inference_mode()
  def step(self, image, mask=None) -> torch.Tensor:
    """Segments one frame (see the module docstring); returns probabilities [1 + n H W] on the device."""
    frame, pads = self._frame(image)
    if self.memory is None and mask is None:
      raise ValueError("the first frame needs a mask of its objects")
    new_masks, new_valid = self._new_objects(mask, frame.shape[-2:], pads)
    if self.memory is None:
      logits = self._first_frame(frame, new_masks, new_valid)
    else:
      logits = self._next_frame(frame, new_masks, new_valid)
    probs = torch.softmax(logits, dim=0)[:1 + len(self.object_ids)]
    top, bottom, left, right = pads
    return probs[:, top:probs.shape[1] - bottom, left:probs.shape[2] - right]

  def ids_of(self, probs: torch.Tensor) -> np.ndarray:
    """Probabilities [1 + n H W] -> uint8 id map [H W] (argmax; 0 background)."""
    lookup = np.asarray([0, *self.object_ids], np.uint8)
    return lookup[probs.argmax(dim=0).cpu().numpy()]

  def _first_frame(self, frame, masks, valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    logits = memory_lib.aggregate(masks, valid)
    keys, values = self._encode(frame, query, logits)
    self.memory = memory_lib.KeyValueMemory(
        self.memory_config, key_groups=keys.shape[0], objects=values.shape[0], positions=keys.shape[1],
        key_dim=keys.shape[2], value_dim=values.shape[2], device=self.device)
    self.object_valid = valid
    self.memory.note_objects(valid)
    self._write(keys, values, annotated=True)
    return logits

  def _next_frame(self, frame, new_masks, new_valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    object_logits = self.network.decode(self._read(query)[None], query)[0]
    return self._merge_and_write(frame, query, object_logits, new_masks, new_valid)

  def _read(self, query) -> torch.Tensor:
    """The memory's read-out [o cv h w] for the query frame's keys."""
    key16 = query["key16"][0]  # [ck h w]
    h, w = key16.shape[1:]
    memory = self.memory
    affinity = self.affinity(memory.keys.flatten(1, 2), key16.flatten(1).T)
    readout = memory_lib.read(affinity, memory.values.flatten(1, 2), memory.valid_positions(), self.top_k)
    return readout.transpose(1, 2).reshape(readout.shape[0], -1, h, w)

  def _merge_and_write(self, frame, query, object_logits, new_masks, new_valid) -> torch.Tensor:
    """Objects new at this frame take their masks, soft aggregation, the memory write by the policy; -> logits."""
    memory = self.memory
    probs = memory_lib.merge_new_objects(torch.sigmoid(object_logits.float()), new_masks, new_valid)
    self.object_valid = self.object_valid | new_valid
    memory.note_objects(new_valid)
    logits = memory_lib.aggregate(probs, self.object_valid)
    slot, pin, write = memory.plan_write(bool(new_valid.any()))
    if write:
      keys, values = self._encode(frame, query, logits)
      memory.write(keys, values, slot, pin)
    memory.num_frames += 1
    return logits

  def _encode(self, frame, query, logits) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory keys [g m ck] and values [o m cv] of the frame, from its soft object probabilities."""
    probs = torch.softmax(logits, dim=0)[1:]
    keys, values = self.network.encode_memory(frame[None], query, probs[None])
    return keys[0].flatten(2).transpose(1, 2), values[0].flatten(2).transpose(1, 2)

  def _write(self, keys, values, annotated: bool) -> None:
    slot, pin, write = self.memory.plan_write(annotated)
    if write:
      self.memory.write(keys, values, slot, pin)
    self.memory.num_frames += 1

  def _frame(self, image) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """A normalised float32 [3 h w] on the device, zero-padded evenly to multiples of 16, and its padding."""
    image = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image)
    if image.dtype == torch.uint8:
      if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"a uint8 image must be [H W 3] RGB, got {list(image.shape)}")
      image = image.permute(2, 0, 1).float() / 255.0
      mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
      std = torch.tensor(IMAGENET_STD)[:, None, None]
      image = (image - mean) / std
    elif image.ndim != 3 or image.shape[0] != 3:
      raise ValueError(f"a float image must be [3 H W] (normalised), got {list(image.shape)}")
    image = image.float().to(self.device)
    h, w = image.shape[1:]
    pad_h, pad_w = (-h) % 16, (-w) % 16
    pads = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    if self.memory is not None and (h, w) != self._input_hw:
      raise ValueError(f"frame size {(h, w)} differs from the video's {self._input_hw}")
    self._input_hw = (h, w)
    return F.pad(image, (pads[2], pads[3], pads[0], pads[1])), pads

  def _new_objects(self, mask, padded_hw, pads) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks [slots h w] of the objects new at this frame, their validity [slots])."""
    if mask is None:
      return torch.zeros(self.capacity, *padded_hw, device=self.device), torch.zeros(
          self.capacity, dtype=torch.bool, device=self.device)
    mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask).to(self.device).long()
    if tuple(mask.shape) != self._input_hw:
      raise ValueError(f"mask size {tuple(mask.shape)} differs from the frame's {self._input_hw}")
    ids = [int(i) for i in torch.unique(mask).tolist() if i != 0 and int(i) not in self.object_ids]
    if self.memory is None and not ids:
      raise ValueError("the first frame's mask holds no object (every pixel is 0)")
    if self.capacity is None:
      self.capacity = len(ids)
    if len(self.object_ids) + len(ids) > self.capacity:
      raise ValueError(f"objects {ids} appear but the processor holds {self.capacity} objects "
                       f"({self.object_ids} already); create it with max_objects="
                       f"{len(self.object_ids) + len(ids)} or more")
    first = len(self.object_ids)
    self.object_ids.extend(ids)
    masks = torch.zeros(self.capacity, *self._input_hw, device=self.device)
    valid = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
    for i, object_id in enumerate(ids):
      masks[first + i] = (mask == object_id).float()
      valid[first + i] = True
    return F.pad(masks, (pads[2], pads[3], pads[0], pads[1])), valid
