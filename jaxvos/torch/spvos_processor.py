"""Streaming inference with the SpVOS twin: STCN's memory (`jaxvos.torch.processor`) plus the gates' state, as
`jaxvos.models.spvos` keeps it.

    processor = jaxvos.torch.load("spvos.pth")          # a twin checkpoint of spvos / spvos-r18 / spvos-tiny
    probs = processor.step(image, mask)                 # the API of `jaxvos.torch.Processor`
    processor.executed                                  # {layer path: fraction of its tiles computed}, last frame

State policy (jaxvos's at inference): frame t = 0 runs dense and fills the key encoder's caches (each gated
layer's input and output); the decoder does not run there, so it runs dense at t = 1. Every frame with
t % `refresh_every` == 0 runs dense (encoder and decoder); so does the decoder on the frame after one where
objects were annotated (its cached outputs lack them). Other frames take each gate's argmax (or the config's
`force`d action); a part not in `gated_parts` runs dense on every frame; with `change_threshold` the tiles whose
input did not change reuse. Each gated layer keeps its last input and output whatever it did (with the guard, a
reused tile keeps the input its output was computed from); the gates also read the previous frame's soft masks.
Memory reads and writes are STCN's, with the value encoder always dense; with `read_threshold`, the read guard of
`jaxvos.memory.key_value` (while the memory is unchanged, a position whose key moved by at most the threshold times
the mean key norm since the key of its kept read-out keeps that read-out).
"""

import torch

from jaxvos.torch import memory as memory_lib
from jaxvos.torch import processor as processor_lib
from jaxvos.torch import spvos as spvos_lib
from jaxvos.torch.spvos import COMPUTE, FrameGates


class SpVOSProcessor(processor_lib.Processor):
  """`jaxvos.torch.Processor` with SpVOS's gates (module docstring); `gates` holds the last frame's
  `FrameGates` per part (their `actions` say what each layer did)."""
  network: spvos_lib.SpVOS

  def reset(self) -> None:
    """Forgets the video: the next `step` needs a mask."""
    super().reset()
    self.caches: dict[str, dict] = {"encoder": {}, "decoder": {}}
    self.masks: torch.Tensor | None = None   # [1 o H W] the previous frame's soft masks
    self.refresh = False                     # objects were annotated at the previous frame
    self.gates: dict[str, FrameGates] = {}
    self.read_cache: tuple | None = None     # (keys [n ck], read-out [o cv h w], the memory's written_at, since)

  @property
  def executed(self) -> dict[str, float]:
    """{jaxvos layer path: fraction of its output pixels computed on the last frame}."""
    return {path: _computed_fraction(action, gates, path) for gates in self.gates.values()
            for path, action in gates.actions.items()}

  def _frame_gates(self, part: str, frame_hw, dense: bool) -> FrameGates:
    return FrameGates(frame_hw, self.network.tile_pixels, dense=dense, caches=self.caches[part], masks=self.masks,
                      force=self.network.force, compute_threshold=self.network.compute_threshold,
                      change_threshold=self.network.change_threshold)

  def _first_frame(self, frame, masks, valid) -> torch.Tensor:
    gates = self._frame_gates("encoder", frame.shape[1:], dense=True)
    query = self.network.encode_query(frame[None], gates)
    logits = memory_lib.aggregate(masks, valid)
    keys, values = self._encode(frame, query, logits)
    self.memory = memory_lib.KeyValueMemory(
        self.memory_config, key_groups=keys.shape[0], objects=values.shape[0], positions=keys.shape[1],
        key_dim=keys.shape[2], value_dim=values.shape[2], device=self.device)
    self.object_valid = valid
    self.memory.note_objects(valid)
    self._write(keys, values, annotated=True)
    self._end_frame({"encoder": gates}, logits, annotated=True)
    return logits

  def _next_frame(self, frame, new_masks, new_valid) -> torch.Tensor:
    t = self.memory.num_frames
    refresh = t % self.network.refresh_every == 0
    ungated = {part: part not in self.network.gated_parts for part in ("encoder", "decoder")}
    gates = {"encoder": self._frame_gates("encoder", frame.shape[1:], dense=refresh or ungated["encoder"]),
             "decoder": self._frame_gates("decoder", frame.shape[1:],
                                          dense=refresh or t <= 1 or self.refresh or ungated["decoder"])}
    query = self.network.encode_query(frame[None], gates["encoder"])
    object_logits = self.network.decode(self._read(query)[None], query, gates["decoder"])[0]
    logits = self._merge_and_write(frame, query, object_logits, new_masks, new_valid)
    self._end_frame(gates, logits, annotated=bool(new_valid.any()))
    return logits

  def _read(self, query) -> torch.Tensor:
    """STCN's read-out [o cv h w], with the read guard when the network has a `read_threshold`."""
    readout = super()._read(query)
    if self.network.read_threshold is None:
      return readout
    keys = query["key16"][0].flatten(1).T  # [n ck]
    memory = (self.memory.written_at.clone(), self.memory.object_since.clone())
    changed = torch.ones(keys.shape[0], dtype=torch.bool, device=keys.device)
    if self.read_cache is not None and all(torch.equal(a, b) for a, b in zip(memory, self.read_cache[2:])):
      cached_keys, cached_readout = self.read_cache[:2]
      scale = keys.norm(dim=1).mean()
      changed = (keys - cached_keys).norm(dim=1) > self.network.read_threshold * scale
      readout = torch.where(changed.view(1, 1, *readout.shape[2:]), readout, cached_readout)
      keys = torch.where(changed[:, None], keys, cached_keys)
    self.read_cache = (keys, readout, *memory)
    return readout

  def _end_frame(self, gates: dict[str, FrameGates], logits: torch.Tensor, annotated: bool) -> None:
    """Keeps each part's new caches, the frame's soft masks and whether objects were annotated."""
    for part, part_gates in gates.items():
      self.caches[part] = part_gates.new_caches
    self.gates = gates
    self.masks = torch.softmax(logits, dim=0)[None, 1:]
    self.refresh = annotated


def _computed_fraction(action: torch.Tensor, gates: FrameGates, path: str) -> float:
  """Fraction of a layer's output pixels in computed tiles (overhanging tiles count their pixels only)."""
  out_hw = gates.new_caches[path]["y"].shape[2:]
  th, tw = gates.tile(tuple(out_hw))
  pixels = action.repeat_interleave(th, dim=1).repeat_interleave(tw, dim=2)[:, :out_hw[0], :out_hw[1]]
  return float((pixels == COMPUTE).float().mean())

