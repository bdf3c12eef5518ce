"""A 5-frame, 2-object clip with an object appearing at frame 2, random variables, and jaxvos's probabilities on
it: the shared ground for the parity tests of the PyTorch twins (`test_torch_twins`) and ONNX (`test_onnx`)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvos.convert import families, rules

T, O = 5, 2
APPEARS = 2  # the frame where object 2 first appears
# A memory small enough that 5 frames use every part of the policy: frame 0 pinned, the temporary slot, an
# annotated frame (2) that finds the pinned quota full and goes to the ring, and its eviction by frame 4.
SMALL_MEMORY = dict(slots=2, every=2, max_pinned=1, temporary=True)


def random_variables(family, seed: int = 0) -> dict:
  """Random NumPy variables of `family` that keep activations in a sensible range.

  Kernels ~ N(0, 1/fan_in); BatchNorm statistics, scales and biases perturbed away from the identity. The final
  prediction convolutions are scaled down: where several objects are all but certain at one pixel, soft
  aggregation divides by `1 - p`, which float32 keeps to a few bits, so a one-ulp difference of a sigmoid moves
  the probabilities by percent; trained models are not certain of two objects at once, random ones can be.
  """
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in families.variable_shapes(family).items():
    leaf, module = path[-1], "/".join(path[1:-1])
    if leaf == "kernel":
      value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
      if "pred" in module.split("/")[-1]:
        value *= 0.1
    elif leaf == "bias" or leaf == "mean":
      value = rng.normal(scale=0.1, size=shape)
    elif leaf == "scale":
      value = rng.uniform(0.75, 1.25, size=shape)
    elif leaf == "var":
      value = rng.uniform(0.5, 1.5, size=shape)
    else:
      value = rng.normal(scale=0.1, size=shape)
    flat[path] = value.astype(np.float32)
  return rules.unflatten_variables(flat)


def blob(hw: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
  """float32 [h w] ellipse, coordinates as fractions of the frame."""
  h, w = hw
  y, x = np.mgrid[:h, :w]
  return ((((y - cy * h) / (ry * h)) ** 2 + ((x - cx * w) / (rx * w)) ** 2) < 1.0).astype(np.float32)


def object_masks(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """The masks of object 1 (given at frame 0) and object 2 (given at frame APPEARS), float32 [h w] each."""
  return blob(hw, 0.3, 0.35, 0.2, 0.22), blob(hw, 0.68, 0.7, 0.22, 0.2)


def normalised_frames(hw: tuple[int, int], seed: int = 1) -> np.ndarray:
  """float32 [t h w 3]: frames as the network sees them (normalised); smooth noise, so features vary."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(T, hw[0] // 4, hw[1] // 4, 3)).astype(np.float32)
  return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)


def logits_of(output) -> jax.Array:
  """`StepOutput.logits`, or the logits themselves (the older protocol)."""
  return getattr(output, "logits", output)


def jax_probabilities(family, variables, frames: np.ndarray, masks: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> list[np.ndarray]:
  """jaxvos's probabilities [O+1 h w] of every frame of the clip (frame 0: its given masks, aggregated).

  frames: normalised [t h w 3] at the model size; masks: objects 1 and 2 at that size (default `object_masks`).
  """
  from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
  hw = frames.shape[1:3]
  first, second = masks if masks is not None else object_masks(hw)
  masks = np.stack([first, np.zeros_like(first)])[None]
  valid = np.array([[True, False]])
  variables = jax.tree.map(jnp.asarray, variables)
  state = jax.jit(family.init_memory)(variables, frames[:1], masks, valid)
  probs = [np.asarray(jax.nn.softmax(attention.aggregate(jnp.asarray(masks), jnp.asarray(valid)), axis=1))[0]]
  step = jax.jit(family.step)
  for t in range(1, T):
    new_masks, new_valid = np.zeros((1, O, *hw), np.float32), np.zeros((1, O), bool)
    if t == APPEARS:
      new_masks[0, 1], new_valid[0, 1] = second, True
    state, output = step(variables, state, frames[t:t + 1], new_masks, new_valid)
    probs.append(np.asarray(jax.nn.softmax(logits_of(output), axis=1))[0])
  return probs


def id_maps(hw: tuple[int, int]) -> dict[int, np.ndarray]:
  """The clip's annotations as id maps: object 1 at frame 0, object 2 at frame APPEARS."""
  first, second = object_masks(hw)
  return {0: first.astype(np.uint8), APPEARS: (2 * second).astype(np.uint8)}


def twin_probabilities(processor, frames: np.ndarray) -> list[np.ndarray]:
  """A PyTorch twin processor's probabilities of every frame of the clip, padded to the clip's object slots
  (zeros before object 2); frames [t h w 3] as the processor takes them."""
  import torch  # pylint: disable=g-import-not-at-top  (the ONNX tests use this module without PyTorch)
  annotations = id_maps(frames.shape[1:3])
  probs = []
  for t, frame in enumerate(frames):
    out = processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t)).numpy()
    padded = np.zeros((O + 1, *out.shape[1:]), np.float32)
    padded[:out.shape[0]] = out
    probs.append(padded)
  return probs
