"""`python -m jaxvos bench flops`: multiply-accumulates (MACs) per layer of a model, dense and as executed.

Counted from the jaxpr of one `step` (shapes only): for every convolution, output elements x kernel taps x input
channels per group; for every matmul (`dot_general`: the memory read-out, attention, 1x1 layers written as
`Dense`), output elements x contracted size. Layers are named by Flax's module path (the jaxpr's name stack).
Branches of a `lax.switch`/`cond` count as the costliest one (the sparse executor's dense branch, so the count is
the dense one; the memory encoding counts as on a memorised frame, every `every`-th at inference), a `scan` as
its length times its body. Any family can be counted.

Then the model segments a short synthetic video (the drifting texture of `bench segment`, boxes as objects,
random or `--checkpoint` weights) and every layer with an executed fraction in the step's aux outputs
(`executed/<layer path>`: SpVOS's gated convolutions, `jaxvos.models.spvos`) is scaled by its mean over the
frames after the first; every other layer executes its dense count.

    python -m jaxvos bench flops --model spvos-r18 [--checkpoint DIR] [--size 480] [--frames 10] [--objects 2]
        [--layers]

One line per part (the module path's first component) and the total, `dense G` / `executed G` MACs per frame
and their ratio; `--layers` lists every layer.
"""

import collections
import math
from typing import Any, Callable

import numpy as np

DESCRIPTION = __doc__.split("\n\n")[0].split(": ", 1)[1]


def add_arguments(parser):
  parser.add_argument("--model", default="spvos-r18", metavar="NAME", help="a registered model (default spvos-r18)")
  parser.add_argument("--checkpoint", help="a model directory (`jaxvos convert` / training export) instead of "
                      "random weights")
  parser.add_argument("--size", type=int, default=480, help="frame height; 16:9 width (default 480)")
  parser.add_argument("--frames", type=int, default=10, help="frames segmented for the executed fractions")
  parser.add_argument("--objects", type=int, default=2)
  parser.add_argument("--layers", action="store_true", help="print every layer")


def conv_macs(eqn) -> int:
  """MACs of a `conv_general_dilated` equation: output elements x kernel taps x input channels per group."""
  rhs = eqn.invars[1].aval.shape
  spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, spatial ...)
  taps = math.prod(rhs[i] for i in spec[2:])
  return math.prod(eqn.outvars[0].aval.shape) * taps * rhs[spec[1]]


def dot_macs(eqn) -> int:
  """MACs of a `dot_general` equation: output elements x contracted size."""
  (contract, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)


def _sub_jaxprs(eqn):
  for param in eqn.params.values():
    for sub in param if isinstance(param, (list, tuple)) else [param]:
      sub = getattr(sub, "jaxpr", sub)
      if hasattr(sub, "eqns"):
        yield sub


def _walk(jaxpr, prefix: str) -> collections.Counter:
  """MACs by name stack in `jaxpr` and its sub-jaxprs (see the module docstring for cond and scan)."""
  counts = collections.Counter()
  for eqn in jaxpr.eqns:
    name = "/".join(p for p in (prefix, _module_path(str(eqn.source_info.name_stack))) if p)
    primitive = eqn.primitive.name
    if primitive == "conv_general_dilated":
      counts[name] += conv_macs(eqn)
    elif primitive == "dot_general":
      counts[name] += dot_macs(eqn)
    elif primitive == "cond":
      branches = [_walk(branch.jaxpr, name) for branch in eqn.params["branches"]]
      counts.update(max(branches, key=lambda c: sum(c.values())))
    elif primitive == "scan":
      inner = _walk(eqn.params["jaxpr"].jaxpr, name)
      counts.update({key: value * eqn.params["length"] for key, value in inner.items()})
    else:
      for sub in _sub_jaxprs(eqn):
        counts.update(_walk(sub, name))
  return counts


def count_macs(fn: Callable, *args) -> dict[str, int]:
  """Dense MACs of every convolution and matmul of `fn(*args)` by module path (arrays or shape structs)."""
  import jax  # pylint: disable=g-import-not-at-top
  return dict(_walk(jax.make_jaxpr(fn)(*args).jaxpr, ""))


def executed_macs(dense: dict[str, int], fractions: dict[str, float]) -> dict[str, float]:
  """Each layer's dense MACs scaled by the executed fraction of the gated layer it belongs to: the layer whose
  module path ends with the gated path (its gate, `<path>/gate/...`, is a layer of its own and runs dense)."""
  executed = {}
  for name, macs in dense.items():
    matches = [f for path, f in fractions.items() if name == path or name.endswith("/" + path)]
    executed[name] = macs * (matches[0] if matches else 1.0)
  return executed


def measure(family, variables, frames: np.ndarray, masks: np.ndarray) -> tuple[dict[str, int], dict[str, float]]:
  """(dense MACs per layer of one step, mean executed fraction per gated layer) on frames [t h w 3] (normalised,
  sizes multiples of 16) with the first frame's masks [o h w]."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  valid = jnp.ones((1, masks.shape[0]), bool)
  masks = jnp.asarray(masks[None], jnp.float32)
  no_masks, no_objects = jnp.zeros_like(masks), jnp.zeros_like(valid)
  state = jax.jit(family.init_memory)(variables, jnp.asarray(frames[:1]), masks, valid)
  dense = count_macs(family.step, variables, state, jnp.asarray(frames[1:2]), no_masks, no_objects)
  step, sums = jax.jit(family.step), collections.defaultdict(float)
  for frame in frames[1:]:
    state, output = step(variables, state, jnp.asarray(frame[None]), no_masks, no_objects)
    for key, value in output.aux.items():
      if key.startswith("executed/"):
        sums[key[len("executed/"):]] += float(np.mean(value)) / (len(frames) - 1)
  return dense, dict(sums)


def _module_path(name_stack: str) -> str:
  """A name stack as a module path: the root class and method scopes (`SpVOS.encode_query`, `conv1._gated`)
  dropped; an einsum outside any module (the memory read-out) as `memory/<equation>`."""
  if "->" in name_stack:
    return "memory/" + name_stack.split("/")[-1]
  return "/".join(c for c in name_stack.split("/") if c and "." not in c and not c[0].isupper())


def _parts(counts: dict[str, float]) -> dict[str, float]:
  """MACs summed by the module path's first component."""
  parts = collections.Counter()
  for name, macs in counts.items():
    parts[name.split("/")[0] or "(other)"] += macs
  return dict(parts)


def _load(args) -> tuple[Any, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  if args.checkpoint:
    from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
    return io.load_model(args.checkpoint)
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  family = registry.build(args.model)
  return family, family.init(jax.random.key(0), (64, 64))


def run(args) -> int:
  from jaxvos.bench.segment import _first_mask, _frames  # pylint: disable=g-import-not-at-top
  from jaxvos.inference.frames import normalize  # pylint: disable=g-import-not-at-top
  family, variables = _load(args)
  frames = np.stack(list(_frames(args.frames + 1, args.size)))
  (h0, w0), (h, w) = frames.shape[1:3], (16 * math.ceil(s / 16) for s in frames.shape[1:3])
  frames = np.asarray(normalize(np.pad(frames, ((0, 0), (0, h - h0), (0, w - w0), (0, 0)))))
  first = np.pad(_first_mask(args.size, args.objects), ((0, h - h0), (0, w - w0)))
  masks = np.stack([first == i + 1 for i in range(args.objects)]).astype(np.float32)
  dense, fractions = measure(family, variables, frames, masks)
  executed = executed_macs(dense, fractions)
  print(f"{family.name} at {w}x{h}, {args.objects} objects, {args.frames} frames after the first "
        f"({len(fractions)} gated layers); MACs per frame")
  rows = sorted(dense) if args.layers else []
  for name in rows:
    print(f"  {name:<70} dense {dense[name] / 1e9:8.3f} G  executed {executed[name] / 1e9:8.3f} G")
  dense_parts, executed_parts = _parts(dense), _parts(executed)
  for part in sorted(dense_parts, key=dense_parts.get, reverse=True):
    print(f"{part:<24} dense {dense_parts[part] / 1e9:9.3f} G  executed {executed_parts[part] / 1e9:9.3f} G  "
          f"({executed_parts[part] / max(dense_parts[part], 1):.2f})")
  total_dense, total_executed = sum(dense.values()), sum(executed.values())
  print(f"{'total':<24} dense {total_dense / 1e9:9.3f} G  executed {total_executed / 1e9:9.3f} G  "
        f"({total_executed / total_dense:.2f})")
  return 0
