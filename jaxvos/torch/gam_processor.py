"""Streaming inference with the GAM twin: a fixed-size global context per object and MEM's mask history, as
`jaxvos.memory.global_context` and `jaxvos.models.gam` keep them.

    processor = jaxvos.torch.load("gam.pth")            # a twin checkpoint of gam / gam-r18 / gam-tiny
    probs = processor.step(image, mask)                 # the API of `jaxvos.torch.Processor`

Per frame (the order of `jaxvos.models.skeleton.MemoryFamily.step`): encode the query; read D = q(L_F) G for
every object slot; decode with MEM's history of the previous frames; objects given at this frame take their
masks; soft-aggregate; memorise the frame when `t % every == 0` or some object is given at it: every valid
object's G takes the running mean step G += (A - G) / T, T its own count, and an object given at this frame
restarts at T = 1 (so a late object's context starts where it appears); finally push the frame's soft masks
(area-averaged to stride `mem_stride`) onto the three-entry history, which objects given at this frame fill
with their mask. Memory is encoded from the detached soft probabilities, as in jaxvos.

Contexts are float32 [o ck cv] plus a normaliser [o ck] and a count [o]: the state does not grow with the video
or the frame size, but the history (3 o H W / s^2 values).
"""

import torch
from torch.nn import functional as F

from jaxvos.torch import gam as gam_lib
from jaxvos.torch import memory as memory_lib
from jaxvos.torch import processor as processor_lib

_EPS = 1e-6


def memory_weights(keys: torch.Tensor, normalization: str) -> torch.Tensor:
  """w(K): keys [n ck] -> [n ck] (efficient: softmax of each key channel over the positions)."""
  if normalization == "efficient":
    return torch.softmax(keys, dim=0)
  if normalization == "mean":
    return keys / keys.shape[0]
  if normalization == "livos":
    return torch.softmax(keys, dim=-1)
  return keys


def query_weights(keys: torch.Tensor, normalization: str) -> torch.Tensor:
  """q(L): query keys [n ck] -> [n ck] (efficient, livos: softmax over the channels)."""
  return torch.softmax(keys, dim=-1) if normalization in ("efficient", "livos") else keys


class GlobalContext:
  """Per-object running means over the memorised frames, eqs. (1)-(3); zero (count 0) until an object appears."""

  def __init__(self, objects: int, key_dim: int, value_dim: int, normalization: str, device=None):
    self.normalization = normalization
    self.context = torch.zeros(objects, key_dim, value_dim, device=device)  # G
    self.normalizer = torch.zeros(objects, key_dim, device=device)          # running mean of sum_n w(k_n)
    self.count = torch.zeros(objects, dtype=torch.int64, device=device)

  def write(self, keys: torch.Tensor, values: torch.Tensor, write: torch.Tensor, restart: torch.Tensor) -> None:
    """A_T = w(K)^T V per object (keys [n ck], values [o n cv]); G += (A - G) / T where `write` [o]; `restart`
    [o] objects drop what they held first (their G becomes A)."""
    weights = memory_weights(keys, self.normalization)
    context = torch.einsum("nk,onv->okv", weights, values)
    key_sums = weights.sum(dim=0)
    count = torch.where(restart, 0, self.count) + write.long()
    rate = torch.where(write, 1.0 / torch.clamp(count, min=1).float(), 0.0)
    old = torch.where(restart[:, None, None], 0.0, self.context)
    old_norm = torch.where(restart[:, None], 0.0, self.normalizer)
    self.context = old + rate[:, None, None] * (context - old)
    self.normalizer = old_norm + rate[:, None] * (key_sums[None] - old_norm)
    self.count = count

  def read(self, query_keys: torch.Tensor) -> torch.Tensor:
    """D = q(L_F) G: query keys [n ck] -> [o n cv] (LiVOS: divided by q . z)."""
    weights = query_weights(query_keys, self.normalization)
    readout = torch.einsum("nk,okv->onv", weights, self.context)
    if self.normalization == "livos":
      readout = readout / (torch.einsum("nk,ok->on", weights, self.normalizer)[..., None] + _EPS)
    return readout


class GAMProcessor(processor_lib.Processor):
  """`jaxvos.torch.Processor`'s API (`step`, `ids_of`, `reset`, `object_ids`) with GAM's state (module
  docstring): `context` (a `GlobalContext`), `history` [1 3 o H/s W/s] (None without MEM), `num_frames`."""

  def __init__(self, network: gam_lib.GAM, context_config: gam_lib.ContextConfig, *, max_objects: int | None = None,
               device: str | torch.device | None = None):
    # Not the base's: GAM reads no key-value memory (no affinity, no top-k).
    self.device = torch.device(device) if device is not None else next(network.parameters()).device
    self.network = network.to(self.device).eval()
    self.context_config = context_config
    self.max_objects = max_objects
    self.reset()

  def reset(self) -> None:
    """Forgets the video: the next `step` needs a mask."""
    super().reset()
    self.history: torch.Tensor | None = None
    self.num_frames = 0

  @property
  def context(self) -> GlobalContext | None:
    return self.memory

  def _first_frame(self, frame, masks, valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    logits = memory_lib.aggregate(masks, valid)
    probs = torch.softmax(logits, dim=0)[1:]
    key_dim, value_dim = query["key16"].shape[1], query["value16"].shape[1]
    self.memory = GlobalContext(valid.shape[0], key_dim, value_dim, self.context_config.normalization, self.device)
    self.object_valid = valid
    self._memorise(query, probs, valid)
    if self.network.mem is not None:
      s = self.network.mem_stride
      self.history = torch.zeros(1, gam_lib.HISTORY, valid.shape[0], frame.shape[1] // s, frame.shape[2] // s,
                                 device=self.device)
    self._end_frame(probs, valid)
    return logits

  def _next_frame(self, frame, new_masks, new_valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    key16 = query["key16"][0]
    h, w = key16.shape[1:]
    readout = self.memory.read(key16.flatten(1).T)                     # [o n cv]
    readout = readout.transpose(1, 2).reshape(readout.shape[0], -1, h, w)
    object_logits = self.network.decode(readout[None], query, self.history)[0]
    probs = memory_lib.merge_new_objects(torch.sigmoid(object_logits.float()), new_masks, new_valid)
    self.object_valid = self.object_valid | new_valid
    logits = memory_lib.aggregate(probs, self.object_valid)
    probs = torch.softmax(logits, dim=0)[1:]
    if self.num_frames % self.context_config.every == 0 or bool(new_valid.any()):
      self._memorise(query, probs, new_valid)
    self._end_frame(probs, new_valid)
    return logits

  def _memorise(self, query, probs, new_valid) -> None:
    """Every valid object's G takes this frame's A; objects new at this frame restart their mean."""
    keys, values = self.network.encode_memory(query, probs[None])
    self.memory.write(keys[0].flatten(1).T, values[0].flatten(2).transpose(1, 2), self.object_valid, new_valid)

  def _end_frame(self, probs, new_valid) -> None:
    """Pushes the soft masks [o H W] onto MEM's history; objects new at this frame fill all of it."""
    self.num_frames += 1
    if self.history is None:
      return
    masks = F.avg_pool2d(probs[None], self.network.mem_stride)        # [1 o H/s W/s]
    shifted = torch.cat([self.history[:, 1:], masks[:, None]], dim=1)
    repeated = masks[:, None].expand_as(shifted)
    self.history = torch.where(new_valid[None, None, :, None, None], repeated, shifted)

