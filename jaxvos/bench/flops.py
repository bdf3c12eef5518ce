"""`python -m jaxvos bench flops`: multiply-accumulates (MACs) per layer of a model, dense and as executed.

Counted from the jaxpr of one `step` (shapes only): for every convolution, output elements x kernel taps x input
channels per group; for every matmul (`dot_general`: the memory read-out, attention, 1x1 layers written as
`Dense`), output elements x contracted size. Layers are named by Flax's module path (the jaxpr's name stack).
`count_macs` counts a `lax.switch`/`cond` as its costliest branch (the memory encoding as on a memorised frame),
a `scan` as its length times its body. `executed_counter` counts what one call executes: the branch each
`cond` takes (the memory encoding only on the frames that memorise, every `every`-th at inference; SwiftNet's
read on its memory's fill), but inside a gated layer, whose sparse executor counts as its dense branch. Any
family can be counted.

The model segments a short synthetic video (the drifting texture of `bench segment`, boxes as objects, random
or `--checkpoint` weights); each frame after the first is counted (`dense`: every gated layer at its dense
count) and every layer with an executed fraction in the step's aux outputs (`executed/<layer path>`: SpVOS's
gated convolutions, `jaxvos.models.spvos`) is scaled by its mean over those frames (`executed`); every other
layer executes its dense count.

    python -m jaxvos bench flops --model spvos-r18 [--checkpoint DIR] [--size 480] [--frames 10] [--objects 2]
        [--layers]

One line per part (the module path's first component) and the total, `dense G` / `executed G` MACs per frame
and their ratio; `--layers` lists every layer.
"""

import collections
import functools
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


def _eqn_macs(eqn, name: str, every_branch: bool = False) -> collections.Counter:
  """The MACs one equation adds, by name stack (see the module docstring for cond and scan); `every_branch`:
  every branch of a cond counted (for the names that can occur, not for their sum)."""
  primitive = eqn.primitive.name
  if primitive == "conv_general_dilated":
    return collections.Counter({name: conv_macs(eqn)})
  if primitive == "dot_general":
    return collections.Counter({name: dot_macs(eqn)})
  counts = collections.Counter()
  if primitive == "cond":
    branches = [_walk(branch.jaxpr, name, every_branch) for branch in eqn.params["branches"]]
    for branch in branches if every_branch else [max(branches, key=lambda c: sum(c.values()))]:
      counts.update(branch)
  elif primitive == "scan":
    inner = _walk(eqn.params["jaxpr"].jaxpr, name, every_branch)
    counts.update({key: value * eqn.params["length"] for key, value in inner.items()})
  else:
    for sub in _sub_jaxprs(eqn):
      counts.update(_walk(sub, name, every_branch))
  return counts


def _name(eqn, prefix: str) -> str:
  return "/".join(p for p in (prefix, _module_path(str(eqn.source_info.name_stack))) if p)


def _walk(jaxpr, prefix: str, every_branch: bool = False) -> collections.Counter:
  """MACs by name stack in `jaxpr` and its sub-jaxprs."""
  counts = collections.Counter()
  for eqn in jaxpr.eqns:
    counts.update(_eqn_macs(eqn, _name(eqn, prefix), every_branch))
  return counts


def count_macs(fn: Callable, *args) -> dict[str, int]:
  """Dense MACs of every convolution and matmul of `fn(*args)` by module path (arrays or shape structs)."""
  import jax  # pylint: disable=g-import-not-at-top
  return dict(_walk(jax.make_jaxpr(fn)(*args).jaxpr, ""))


_CALLS = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat", "checkpoint")


def executed_counter(fn: Callable, *args, dense_within: tuple[str, ...] = ()) -> Callable:
  """`counts(*args)` -> {module path: MACs}: what `fn` executes on these arguments (their shapes: `args`), as
  traced scalars, so jit it. Every `cond`/`switch` counts the branch it takes (a memory encoding counts on the
  frames it runs, SwiftNet's read on the memory's fill), but those inside a layer of `dense_within` (the gated
  layers, whose sparse executor's buckets count as the dense branch: their executed fraction scales them), and
  a `scan` counts its length times its body's costliest branches, as `count_macs`. Only the computation the
  branch decisions depend on survives XLA's dead-code elimination: the count costs far less than `fn`."""
  import jax  # pylint: disable=g-import-not-at-top
  closed = jax.make_jaxpr(fn)(*args)
  index = {name: i for i, name in enumerate(sorted(_walk(closed.jaxpr, "", every_branch=True)))}

  def counts(*args):
    _, vector = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args), "", index, dense_within)
    return {name: vector[i] for name, i in index.items()}

  return counts


def _evaluate(jaxpr, consts, args, prefix: str, index: dict[str, int], dense_within: tuple[str, ...]):
  """(outputs of `jaxpr` on `args`, MACs executed by name as a vector over `index`): `executed_counter`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
  read = lambda v: v.val if type(v).__name__ == "Literal" else env[v]  # noqa: E731
  static, vector = collections.Counter(), jnp.zeros(len(index), jnp.float32)
  for eqn in jaxpr.eqns:
    name, values, primitive = _name(eqn, prefix), [read(v) for v in eqn.invars], eqn.primitive.name
    sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr")) if primitive in _CALLS else None
    if primitive == "cond" and not any(name == p or name.startswith(p + "/") for p in dense_within):
      branches = [functools.partial(_evaluate_closed, branch, name, index, dense_within)
                  for branch in eqn.params["branches"]]
      outs, executed = jax.lax.switch(values[0], branches, *values[1:])
      vector = vector + executed
    elif hasattr(sub, "consts"):
      outs, executed = _evaluate(sub.jaxpr, sub.consts, values, name, index, dense_within)
      vector = vector + executed
    else:
      static.update(_eqn_macs(eqn, name))
      outs = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
      outs = outs if eqn.primitive.multiple_results else [outs]
    env.update(zip(eqn.outvars, outs))
  static_vector = np.zeros(len(index), np.float32)
  for name, macs in static.items():
    static_vector[index[name]] = macs
  return [read(v) for v in jaxpr.outvars], vector + static_vector


def _evaluate_closed(closed, prefix, index, dense_within, *args):
  return _evaluate(closed.jaxpr, closed.consts, args, prefix, index, dense_within)


def step_counter(family, *args) -> Callable:
  """`executed_counter` of `family.step` on `args` (variables, state, frame, masks, object_valid), jitted, with
  the family's gated layers (its `executed/<path>` aux outputs) counted dense."""
  import jax  # pylint: disable=g-import-not-at-top
  aux = jax.eval_shape(family.step, *args)[1].aux
  gated = tuple(key[len("executed/"):] for key in aux if key.startswith("executed/"))
  return jax.jit(executed_counter(family.step, *args, dense_within=gated))


def executed_macs(dense: dict[str, int], fractions: dict[str, float]) -> dict[str, float]:
  """Each layer's dense MACs scaled by the executed fraction of the gated layer it belongs to: the layer whose
  module path ends with the gated path (its gate, `<path>/gate/...`, is a layer of its own and runs dense)."""
  executed = {}
  for name, macs in dense.items():
    matches = [f for path, f in fractions.items() if name == path or name.endswith("/" + path)]
    executed[name] = macs * (matches[0] if matches else 1.0)
  return executed


def measure(family, variables, frames: np.ndarray, masks: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
  """(MACs per layer per frame, each frame's taken branches, gated layers at their dense count, and mean executed
  fraction per gated layer), both over the frames after the first, on frames [t h w 3] (normalised, sizes
  multiples of 16) with the first frame's masks [o h w]."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  valid = jnp.ones((1, masks.shape[0]), bool)
  masks = jnp.asarray(masks[None], jnp.float32)
  no_masks, no_objects = jnp.zeros_like(masks), jnp.zeros_like(valid)
  state = jax.jit(family.init_memory)(variables, jnp.asarray(frames[:1]), masks, valid)
  counter = step_counter(family, variables, state, jnp.asarray(frames[1:2]), no_masks, no_objects)
  step, sums, macs = jax.jit(family.step), collections.defaultdict(float), collections.defaultdict(float)
  for frame in frames[1:]:
    for name, value in counter(variables, state, jnp.asarray(frame[None]), no_masks, no_objects).items():
      macs[name] += float(value) / (len(frames) - 1)
    state, output = step(variables, state, jnp.asarray(frame[None]), no_masks, no_objects)
    for key, value in output.aux.items():
      if key.startswith("executed/"):
        sums[key[len("executed/"):]] += float(np.mean(value)) / (len(frames) - 1)
  return dict(macs), dict(sums)


def _module_path(name_stack: str) -> str:
  """A name stack as a module path: the root module's scope (`SpVOS.encode_query`, or its class name `BasicBlock`
  when applied on its own) and method scopes (`conv1._gated`) dropped, submodules named in capitals (SwiftNet's
  `Encoder`, `LAE`) kept; an einsum outside any module (the memory read-out) as `memory/<equation>`."""
  if "->" in name_stack:
    return "memory/" + name_stack.split("/")[-1]
  scopes = [c for c in name_stack.split("/") if c]
  if scopes and scopes[0][0].isupper():
    scopes = scopes[1:]
  return "/".join(c for c in scopes if "." not in c)


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
