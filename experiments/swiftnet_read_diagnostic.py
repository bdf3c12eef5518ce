"""How a SwiftNet model reads its own annotated frame back, at several working sizes.

For the first frame of a DAVIS 2016 sequence and its mask, resized to each size, prints: the /16 positions and
how many are the object's; the softmax read weight that the object's query positions (and the background's) put
on the object's memory positions when the memory holds that frame alone (memory keys rescaled as the model's
`memory.key_norm` says); the median (max) norm of memory keys as encoded and of query keys; the spread of the
affinities; the light aggregation encoder's output norm at positions at least 2 from the map's border and on it,
and of its `conv_fusion4`/`conv_fusion5`; and how many object pixels the model predicts when that annotated
frame is given again as the next frame. Once: the RMS of the ASPP's dilation-8 kernel at its centre tap and off
it, beside a fresh initialisation's; `--zero-aspp-taps DIR` writes a copy of the model with those off-centre taps
zeroed (sessions 10-11, `experiments/README.md`).

    python experiments/swiftnet_read_diagnostic.py RUNS/swiftnet-static-video-cpu/export/final \
        --sequence bmx-trees --sizes 96,128,160,192 [--zero-aspp-taps RUNS/swiftnet-aspp8-centre]
"""

import argparse
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.convert import io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.inference import Segmenter  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.inference.frames import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.training import data as data_lib, validation  # noqa: E402  pylint: disable=g-import-not-at-top


def _norms(x) -> np.ndarray:
  x = np.asarray(x)
  return np.linalg.norm(x.reshape(-1, x.shape[-1]), axis=-1)


def diagnose(family, variables, frame: np.ndarray, mask: np.ndarray, size: int) -> None:
  module = family.module
  h, w = size, 16 * round(frame.shape[1] * size / frame.shape[0] / 16)
  image = jax.image.resize(jnp.asarray(frame, jnp.float32) / 255.0, (h, w, 3), "linear")
  x = ((image - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD))[None]
  masks = jax.image.resize(jnp.asarray(mask, jnp.float32), (h, w), "linear")[None, None]
  query = module.apply(variables, x, method=module.encode_query)
  query = query[0] if isinstance(query, tuple) else query
  encoded = module.apply(variables, x, query, masks, method=module.encode_memory)
  encoded = encoded[0] if isinstance(encoded, tuple) else encoded
  lae, captured = module.apply(variables, query, masks, method=lambda m, q, p: m.LAE(q, p),
                               capture_intermediates=True, mutable=["intermediates"])
  fusion = {name: np.median(_norms(captured["intermediates"]["LAE"][name]["__call__"][0]))
            for name in ("conv_fusion4", "conv_fusion5")}
  memory_keys = np.asarray(encoded["keys"])[0, 0].reshape(-1, encoded["keys"].shape[-1])
  query_keys = np.asarray(query["key16"])[0].reshape(-1, query["key16"].shape[-1])
  grid = (h // 16, w // 16)
  on_object = np.asarray(jax.image.resize(jnp.asarray(mask, jnp.float32), grid, "linear")).reshape(-1) > 0.5
  key_norm = family.config.memory.key_norm  # the read's rescaling of memory keys, where the model has one
  read_keys = memory_keys if key_norm is None else memory_keys * (key_norm / _norms(memory_keys)[:, None])
  affinity = query_keys @ read_keys.T / np.sqrt(memory_keys.shape[-1])
  weights = np.exp(affinity - affinity.max(axis=1, keepdims=True))
  weights /= weights.sum(axis=1, keepdims=True)
  on_object_weight = weights[:, on_object].sum(axis=1)
  out = np.linalg.norm(np.asarray(lae)[0, 0], axis=-1)  # [h/16 w/16]
  interior = np.zeros(out.shape, bool)
  interior[2:-2, 2:-2] = True
  print(f"size {size}: {on_object.size} positions at 1/16, {on_object.sum()} on the object; read weight on the "
        f"object's memory: object queries {on_object_weight[on_object].mean():.3f}, background queries "
        f"{on_object_weight[~on_object].mean():.3f}; memory key norm {np.median(_norms(memory_keys)):.1f} "
        f"(max {_norms(memory_keys).max():.1f}), query key norm {np.median(_norms(query_keys)):.1f}; affinity std "
        f"{affinity.std():.1f}; LAE output norm {np.median(out[interior]):.1f} inside ({interior.sum()} positions), "
        f"{np.median(out[~interior]):.1f} on the border ({(~interior).sum()}); conv_fusion4 "
        f"{fusion['conv_fusion4']:.1f}, conv_fusion5 {fusion['conv_fusion5']:.1f}")
  again = list(Segmenter(family, variables, size=size).segment_video(
      np.stack([frame, frame]), {0: mask.astype(np.uint8)}))[1]
  print(f"  the annotated frame again as frame 1: {int((again == 1).sum())} object pixels predicted "
        f"({int(mask.sum())} annotated)")


def aspp_taps(family, variables) -> None:
  """RMS of the dilation-8 ASPP kernel at its centre tap and off it, trained and freshly initialised."""
  fresh = family.init(jax.random.key(0), (64, 64))
  off = np.ones((3, 3), bool)
  off[1, 1] = False
  rms = lambda k: (np.sqrt(np.mean(k[1, 1] ** 2)), np.sqrt(np.mean(k[off] ** 2)))  # noqa: E731
  kernels = [np.asarray(v["params"]["aspp"]["aspp4"]["atrous_conv"]["kernel"]) for v in (variables, fresh)]
  (centre, outer), (fresh_centre, fresh_outer) = (rms(k) for k in kernels)
  print(f"aspp4 (dilation 8) kernel RMS: trained centre {centre:.4f}, off-centre {outer:.4f}; a fresh "
        f"initialisation {fresh_centre:.4f}, {fresh_outer:.4f}")


def zero_aspp_taps(model: str, out: str) -> None:
  """A copy of the model directory with the dilation-8 ASPP kernel's off-centre taps zeroed."""
  from safetensors.numpy import load_file, save  # pylint: disable=g-import-not-at-top
  shutil.copytree(model, out)  # refuses an existing OUT: nothing is overwritten
  tensors = load_file(os.path.join(model, io.VARIABLES_FILE))
  name = "params/aspp/aspp4/atrous_conv/kernel"
  kernel = np.zeros_like(tensors[name])
  kernel[1, 1] = tensors[name][1, 1]
  tensors[name] = kernel
  with open(os.path.join(out, io.VARIABLES_FILE), "wb") as f:
    f.write(save(tensors, metadata={"format": str(io.FORMAT)}))
  print(f"wrote {out}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("model", help="a SwiftNet model directory")
  parser.add_argument("--sequence", default="bmx-trees")
  parser.add_argument("--sizes", default="96,160")
  parser.add_argument("--zero-aspp-taps", metavar="DIR", help="also write the model with the dilation-8 ASPP "
                      "kernel's off-centre taps zeroed here")
  parser.add_argument("--davis-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                           "data", "davis2016-240p"))
  args = parser.parse_args()
  family, variables = io.load_model(args.model)
  by_name = {s.name: s for s in data_lib.davis_videos(args.davis_root, "240p")}
  video = validation.load_videos([by_name[args.sequence]], max_frames=1)[0]
  mask = validation.first_frame_objects(video) == 1
  aspp_taps(family, variables)
  for size in (int(s) for s in args.sizes.split(",")):
    diagnose(family, variables, video.frames[0], mask, size)
  if args.zero_aspp_taps:
    zero_aspp_taps(args.model, args.zero_aspp_taps)


if __name__ == "__main__":
  main()
