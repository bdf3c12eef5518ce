"""Export a family to ONNX: the first-frame memory initialisation and the per-frame step, state in, state out.

    <dir>/init.onnx   frame [1 h w 3], masks [1 o h w], object_valid [1 o] -> probs [1 o+1 h w], next_state.*
    <dir>/step.onnx   frame [1 h w 3], new_masks [1 o h w], new_object_valid [1 o], state.* -> probs, next_state.*
    <dir>/onnx.json   family, config, model size, object count, the state's names, shapes and dtypes, exporter

Both graphs are the family's own `init_memory` and `step` (`jaxvos.models.family`) with the variables baked in
as initialisers, at a fixed model size (h, w: multiples of 16) and object capacity o; `probs` is the softmax of
the step's logits (background first). The state is the family's state pytree flattened in `jax.tree` order, its
leaves named by their paths (`state.memory.keys`, ...): the runner feeds each output `next_state.X` back as
the input `state.X` of the next frame. Frames are normalised with the ImageNet mean and std
(`jaxvos.export.geometry`).

The exporter is `jax2onnx`, pinned (`EXPORTER`): 0.13.0 is its newest release whose declared dependencies accept
jaxvos's orbax-checkpoint 0.12 (0.13.1 to 0.17.1 require orbax-checkpoint < 0.11.37); both 0.13.0 and 0.17.1 were
tried with jax 0.10.2 / flax 0.12.8. The functions are traced to a jaxpr by JAX first and replayed, primitive
by primitive, for the exporter (`replayable`), which keeps jax2onnx on plain `lax` primitives and rewrites the
few it cannot lower into equivalents it can:
- Flax calls are never seen by jax2onnx's Flax-level patches (its `nn.max_pool` patch does not accept the
  positional window of flax 0.12.8);
- a max pool over NHWC (window (1, k, k, 1)), which jax2onnx lowers as a MaxPool over four spatial axes that
  onnxruntime refuses, becomes a pool over [(n c) h w];
- the one-element batched gather/scatter that `vmap` makes of the memory's `dynamic_update_slice` writes (no
  lowering for scatters with batching dimensions) goes back to `dynamic_slice` / `dynamic_update_slice`;
- `stack` (a primitive in jax 0.10, unknown to jax2onnx 0.13) becomes `concatenate`;
- nested jit and custom-derivative calls are inlined; `cond` is rebuilt as nested two-branch conds (ONNX `If`;
  jax2onnx 0.13 lowers two branches only, and SwiftNet's bucketed reads and SpVOS's sparse executor switch over
  more), its branches replayed with the same rewrites;
- `scan` is unrolled, its body replayed with the same rewrites (the scans here are `searchsorted`'s binary
  search over a static table: a few iterations), and the total-order comparisons that body uses (`le_to`,
  `lt_to`, `eq_to`, unknown to jax2onnx 0.13) become the plain ones on integers, where the two orders agree;
- a scatter batched over one video (what `vmap` makes of `.at[].set`: SwiftNet's pixel-wise match) is done on
  that video without batching dimensions, which jax2onnx 0.13 does not lower;
- the window gathers and scatters of SpVOS's sparse executor (`jaxvos.ops.sparse_conv`: tiles gathered onto a
  canvas and written back, the unused ones dropped) become one index per element, a window not wholly inside
  the operand sent to an extra row that is cut off (XLA drops such a window whole); with jax2onnx 0.13's own
  lowering of them, onnxruntime refused SpVOS's step graph (type inference inside the executor's `If` branches);
- `dynamic_slice` gets its start clamping written out: XLA moves a window that would run past the end back
  inside, jax2onnx's `Slice` would cut it short (SwiftNet's masked memory write reads the window at the next
  pinned slot's offset, past the end once every pinned slot is taken).
Every registered family exports (`tests/test_onnx.py`). An operation that is neither lowered nor rewritten ends
the export with `UnsupportedPrimitive`, one line naming the family and the primitive (float total-order
comparisons, for one, are not rewritten: no family uses them). Nothing is approximated: the parity tests hold
onnxruntime to 1e-4 of JAX (it is about 1e-5).
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import warnings
from typing import Any, Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np

from data_pipelines.errors import DataError
from jaxvos.convert import families

EXPORTER = "jax2onnx==0.13.0"
ONNX_PIN = "onnx==1.23.2"
OPSET = 21
META_FILE = "onnx.json"
INIT_FILE = "init.onnx"
STEP_FILE = "step.onnx"
FORMAT = 1
NEXT = "next_"  # output `next_state.memory.keys` is the next frame's input `state.memory.keys`
MAX_UNROLL = 64  # scans up to this long are unrolled (see `_unrolled_scan`)
_PRIMS = jex.core.primitives


@dataclasses.dataclass(frozen=True)
class ExportSpec:
  """What the graphs are fixed to: the model size (after resizing and padding) and the object capacity."""
  model_hw: tuple[int, int]
  objects: int
  size: int = 480  # the shorter side frames are resized to before padding (recorded for the runner)

  def __post_init__(self):
    if any(n <= 0 or n % 16 for n in self.model_hw):
      raise ValueError(f"model size {self.model_hw}: height and width must be positive multiples of 16")
    if not 1 <= self.objects <= 255:
      raise ValueError(f"objects must be in 1..255, got {self.objects}")


def _logits(output: Any) -> jax.Array:
  """The logits of `step`'s output: `StepOutput.logits` (or the logits themselves, the older protocol)."""
  return getattr(output, "logits", output)


def family_functions(family: Any, variables: Any, spec: ExportSpec):
  """(init_fn, step_fn, example state) with the state as a flat list of arrays; variables are closed over."""
  h, w = spec.model_hw
  frame = jnp.zeros((1, h, w, 3), jnp.float32)
  masks = jnp.zeros((1, spec.objects, h, w), jnp.float32).at[:, 0, : h // 2].set(1.0)
  valid = jnp.zeros((1, spec.objects), bool).at[:, 0].set(True)
  state = jax.eval_shape(family.init_memory, variables, frame, masks, valid)
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(state)

  def init_fn(frame, masks, object_valid):
    from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
    state = family.init_memory(variables, frame, masks, object_valid)
    probs = jax.nn.softmax(attention.aggregate(masks, object_valid), axis=1)
    return (probs, *jax.tree.leaves(state))

  def step_fn(frame, new_masks, new_object_valid, *leaves):
    state, output = family.step(variables, jax.tree.unflatten(treedef, leaves), frame, new_masks,
                                new_object_valid)
    return (jax.nn.softmax(_logits(output), axis=1), *jax.tree.leaves(state))

  names = ["state." + jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in paths_leaves]
  shapes = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for _, leaf in paths_leaves]
  return init_fn, step_fn, names, shapes


def export(family: Any, variables: Any, out_dir: str | os.PathLike, spec: ExportSpec, *,
           source: str | None = None) -> dict:
  """Writes init.onnx, step.onnx and onnx.json for `family` with `variables` into `out_dir` (new or empty).

  Returns the description written to onnx.json.

  Raises:
    DataError: `out_dir` exists and is not empty, jax2onnx is missing, or the family uses an operation that
      neither jax2onnx lowers nor a rewrite here replaces (`UnsupportedPrimitive`, one line naming the family and
      the primitive; nothing is left in `out_dir`).
  """
  out_dir = os.fspath(out_dir)
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise DataError(out_dir, "exists and is not an empty directory; nothing is overwritten")
  try:
    from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(out_dir, f"exporting to ONNX needs jax2onnx: pip install {EXPORTER} {ONNX_PIN} "
                    "onnxruntime==1.31.1 (or pip install 'jaxvos[onnx]')") from None
  variables = jax.tree.map(jnp.asarray, variables)
  init_fn, step_fn, names, shapes = family_functions(family, variables, spec)
  h, w = spec.model_hw
  o = spec.objects
  inputs = {
      INIT_FILE: (init_fn, ["frame", "masks", "object_valid"], []),
      STEP_FILE: (step_fn, ["frame", "new_masks", "new_object_valid"], shapes),
  }
  models = {}
  for file_name, (fn, input_names, state_shapes) in inputs.items():
    args = [jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32), jax.ShapeDtypeStruct((1, o, h, w), jnp.float32),
            jax.ShapeDtypeStruct((1, o), jnp.bool_), *state_shapes]
    replay = replayable(fn, args)
    try:
      with _quiet_exporter():
        model = to_onnx(replay, args, model_name=f"{family.name}_{file_name[:-5]}", opset=OPSET,
                        input_names=input_names + names[:len(state_shapes)])
    except NotImplementedError as error:
      raise UnsupportedPrimitive(family.name, file_name, error) from None
    output_shapes = [(1, o + 1, h, w), *[shape.shape for shape in shapes]]
    models[file_name] = _name_outputs(model, ["probs", *[NEXT + name for name in names]], output_shapes)
  os.makedirs(out_dir, exist_ok=True)  # only once both graphs exist: a failed export writes nothing
  for file_name, model in models.items():
    _save(model, os.path.join(out_dir, file_name))
  meta = {
      "format": FORMAT, "family": family.name, "config": families.config_dict(family),
      "model_hw": list(spec.model_hw), "objects": o, "size": spec.size, "source": source,
      "state": [{"name": n, "shape": list(s.shape), "dtype": np.dtype(s.dtype).name} for n, s in zip(names, shapes)],
      "exporter": EXPORTER, "opset": OPSET,
  }
  with open(os.path.join(out_dir, META_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
  return meta


class UnsupportedPrimitive(DataError):
  """A family that cannot be exported: jax2onnx has no lowering for one of its primitives, and no exact rewrite
  here replaces it. One line: `<family>: cannot be exported to ONNX: ... primitive '<name>' ...`."""

  def __init__(self, family_name: str, file_name: str, error: Exception):
    found = re.search(r"primitive '([^']+)'", str(error))
    self.primitive = found.group(1) if found else None
    what = f"the primitive {self.primitive!r}" if found else " ".join(str(error).split())[:200]
    super().__init__(family_name, f"cannot be exported to ONNX: {EXPORTER} has no lowering for {what} (in its "
                     f"{file_name[:-5]} graph) and jaxvos has no exact rewrite of it")


@contextlib.contextmanager
def _quiet_exporter():
  """jax2onnx logs a traceback for each bundled example whose optional package is missing and warns of JAX
  deprecations it uses, onnx_ir warns of each untyped scalar constant; none of it concerns the export."""
  loggers = [logging.getLogger(name) for name in ("jax2onnx.plugins.plugin_system", "onnx_ir.serde")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    with warnings.catch_warnings():
      warnings.filterwarnings("ignore", category=DeprecationWarning, module="jax2onnx")
      yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def _name_outputs(model, names: list[str], shapes: list[tuple[int, ...]]):
  """Names the graph's outputs through Reshape nodes to their shapes in JAX: an output may be an input passed
  through unchanged (the objects of the first frame), and one ONNX value cannot carry both names; and jax2onnx
  0.13 can drop a reshape that only adds the unit batch axis (SpVOS's cached decoder inputs come out [o h w c],
  not [1 o h w c]); the elements are the same, in the same order (the parity tests check the values)."""
  from onnx import helper, numpy_helper  # pylint: disable=g-import-not-at-top
  graph = model.graph
  for output, name, shape in zip(graph.output, names, shapes):
    shape_name = f"output_shape_{name}"
    graph.initializer.append(numpy_helper.from_array(np.asarray(shape, np.int64), shape_name))
    graph.node.append(helper.make_node("Reshape", [output.name, shape_name], [name], name=f"output_{name}",
                                       allowzero=1))  # a 0 in `shape` is a size (SwiftNet's empty read-out)
    output.name = name
    del output.type.tensor_type.shape.dim[:]
    for size in shape:
      output.type.tensor_type.shape.dim.add().dim_value = size
  return model


def _save(model, path: str) -> None:
  """One .onnx file; weights past protobuf's 2 GB limit go to a `.data` file beside it."""
  import onnx  # pylint: disable=g-import-not-at-top
  large = model.ByteSize() > 2**31 - 2**26 if hasattr(model, "ByteSize") else False
  onnx.save_model(model, path, save_as_external_data=large,
                  location=os.path.basename(path) + ".data" if large else None)


def replayable(fn: Callable[..., Any], args: list[jax.ShapeDtypeStruct]) -> Callable[..., list]:
  """`fn` traced to a jaxpr and replayed primitive by primitive, with the rewrites of the module docstring."""
  closed = jax.make_jaxpr(fn)(*args)

  def replay(*inputs):
    return _eval(closed.jaxpr, closed.consts, inputs)

  return replay


def _eval(jaxpr, consts, args) -> list:
  env = {}

  def read(var):
    return var.val if isinstance(var, jex.core.Literal) else env[var]

  for var, value in zip(jaxpr.constvars, consts):
    env[var] = value
  for var, value in zip(jaxpr.invars, args):
    env[var] = value
  for eqn in jaxpr.eqns:
    outs = _eval_eqn(eqn, [read(var) for var in eqn.invars])
    for var, value in zip(eqn.outvars, outs):
      env[var] = value
  return [read(var) for var in jaxpr.outvars]


def _eval_closed(closed, *args) -> list:
  return _eval(closed.jaxpr, closed.consts, args)


def _eval_eqn(eqn, invals: list) -> list:
  prim, params = eqn.primitive, eqn.params
  if prim is _PRIMS.jit_p:
    return _eval_closed(params["jaxpr"], *invals)
  if prim in (_PRIMS.custom_jvp_call_p, _PRIMS.custom_vjp_call_p):
    return _eval_closed(params["call_jaxpr"], *invals)
  if prim is _PRIMS.cond_p:
    branches = [lambda *ops, closed=closed: _eval_closed(closed, *ops) for closed in params["branches"]]
    return list(_binary_switch(invals[0], branches, invals[1:]))
  if prim is _PRIMS.scatter_p and _is_single_batched_update(params, *invals):
    operand, indices, updates = invals
    return [jax.lax.dynamic_update_slice(operand, updates, [0, *indices[0]])]
  if prim.name == "stack":  # a primitive since jax 0.9; jax2onnx 0.13 lowers concatenate, not stack
    return [jnp.concatenate([jnp.expand_dims(x, params["axis"]) for x in invals], axis=params["axis"])]
  if prim is _PRIMS.reduce_window_max_p and _is_nhwc_pool(params, *invals):
    return [_nhwc_max_pool(invals[0], params)]
  if prim is _PRIMS.scan_p:
    return _unrolled_scan(params, invals)
  if prim in _TOTAL_ORDER and all(jnp.issubdtype(x.dtype, jnp.integer) for x in invals):
    return [_TOTAL_ORDER[prim](*invals)]  # integers have one order: the total order is the plain comparison
  if prim is _PRIMS.gather_p and _is_single_batched_slice(params, *invals):
    operand, indices = invals
    return [_clamped_dynamic_slice(operand, [0, *indices[0]], params["slice_sizes"])]
  if prim is _PRIMS.scatter_p and _is_batch_of_one_scatter(params, *invals):
    return [_unbatched_scatter(prim, params, *invals)]
  if prim is _PRIMS.gather_p and _is_window_gather(params, *invals):
    return [_elementwise_gather(params, *invals)]
  if prim is _PRIMS.scatter_p and _is_window_scatter(params, *invals):
    return [_elementwise_scatter(params, *invals)]
  if prim is _PRIMS.dynamic_slice_p and len(invals) == invals[0].ndim + 1:  # static sizes
    return [_clamped_dynamic_slice(invals[0], invals[1:], params["slice_sizes"])]
  out = prim.bind(*invals, **prim.get_bind_params(params))
  return list(out) if prim.multiple_results else [out]


def _binary_switch(index: jax.Array, branches: list[Callable[..., Any]], operands: list) -> list:
  """`cond` over n branches as nested two-branch conds (ONNX `If`; jax2onnx 0.13 lowers two branches only),
  halving the branches by `index` (in range: `lax.switch` clamps it before `cond`)."""
  if len(branches) == 1:
    return branches[0](*operands)
  if len(branches) == 2:
    return jax.lax.cond(index > 0, branches[1], branches[0], *operands)
  mid = len(branches) // 2
  return jax.lax.cond(index < mid, lambda *ops: _binary_switch(index, branches[:mid], list(ops)),
                      lambda *ops: _binary_switch(index - mid, branches[mid:], list(ops)), *operands)


_TOTAL_ORDER = {_PRIMS.le_to_p: jax.lax.le, _PRIMS.lt_to_p: jax.lax.lt, _PRIMS.eq_to_p: jax.lax.eq}


def _unrolled_scan(params, invals) -> list:
  """`lax.scan` replayed iteration by iteration (the same operations in the same order, its body rewritten
  too); the scans here are short (`searchsorted`'s binary search: log2 of the table length). A scan longer than
  `MAX_UNROLL` stays a scan (an ONNX `Loop`) whose body is replayed."""
  consts, rest = invals[:params["num_consts"]], invals[params["num_consts"]:]
  carry, xs = list(rest[:params["num_carry"]]), rest[params["num_carry"]:]
  length, ys = params["length"], []
  if length > MAX_UNROLL:
    def body(carry, x):
      outs = _eval_closed(params["jaxpr"], *consts, *carry, *x)
      return outs[:params["num_carry"]], outs[params["num_carry"]:]
    carry, ys = jax.lax.scan(body, carry, xs, length=length, reverse=params["reverse"])
    return [*carry, *ys]
  for i in (reversed(range(length)) if params["reverse"] else range(length)):
    outs = _eval_closed(params["jaxpr"], *consts, *carry, *[x[i] for x in xs])
    carry, y = outs[:params["num_carry"]], outs[params["num_carry"]:]
    ys.append(y)
  if params["reverse"]:
    ys.reverse()
  stacked = [jnp.concatenate([y[j][None] for y in ys]) for j in range(len(ys[0]))] if ys and ys[0] else []
  return [*carry, *stacked]


_CLAMPING = (jax.lax.GatherScatterMode.CLIP, jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _clamped_dynamic_slice(operand: jax.Array, starts: list, sizes) -> jax.Array:
  """`dynamic_slice` with its start clamping to [0, dim - size] written out: XLA clamps a window that would run
  past the end back inside, jax2onnx 0.13's Slice does not (the window would come out short)."""
  starts = [jax.lax.clamp(jnp.zeros((), jnp.asarray(s).dtype), jnp.asarray(s),
                          jnp.asarray(dim - size, jnp.asarray(s).dtype))
            for s, dim, size in zip(starts, operand.shape, sizes)]
  return jax.lax.dynamic_slice(operand, starts, sizes)


def _is_single_batched_update(params, operand, indices, updates) -> bool:
  """A `vmap`ped `dynamic_update_slice` over a batch of one: a whole window written at `indices[0]`."""
  dims, rest = params["dimension_numbers"], tuple(range(1, operand.ndim))
  return (tuple(dims.operand_batching_dims) == (0,) and tuple(dims.scatter_indices_batching_dims) == (0,)
          and operand.shape[0] == 1 and indices.shape == (1, operand.ndim - 1) and updates.ndim == operand.ndim
          and tuple(dims.update_window_dims) == rest and tuple(dims.scatter_dims_to_operand_dims) == rest
          and not dims.inserted_window_dims and params["mode"] in _CLAMPING)


def _is_single_batched_slice(params, operand, indices) -> bool:
  """A `vmap`ped `dynamic_slice` over a batch of one."""
  dims, rest = params["dimension_numbers"], tuple(range(1, operand.ndim))
  return (tuple(dims.operand_batching_dims) == (0,) and tuple(dims.start_indices_batching_dims) == (0,)
          and operand.shape[0] == 1 and indices.shape == (1, operand.ndim - 1)
          and tuple(dims.offset_dims) == rest and tuple(dims.start_index_map) == rest
          and not dims.collapsed_slice_dims and params["slice_sizes"][0] == 1 and params["mode"] in _CLAMPING)


def _is_window_gather(params, operand, indices) -> bool:
  """A gather of whole windows at start indices (no batching dimensions, the index vector last): what
  `jaxvos.ops.sparse_conv` gathers its tiles with; jax2onnx 0.13 mislowers a window with a trailing axis of 1."""
  dims = params["dimension_numbers"]
  return (not dims.operand_batching_dims and not dims.start_indices_batching_dims and indices.ndim >= 2
          and len(dims.offset_dims) >= 2 and params["mode"] in _CLAMPING
          and jnp.issubdtype(indices.dtype, jnp.integer))


def _window_indices(operand_shape, indices: jax.Array, window_sizes, collapsed: tuple[int, ...],
                    index_map: tuple[int, ...], window_dims: tuple[int, ...], out_ndim: int) -> tuple:
  """Per-element operand indices of a window gather/scatter, each broadcast to the output (updates) shape:
  the window's start (clamped into the operand, as XLA does for a gather) plus the position inside it."""
  batch_axes = [axis for axis in range(out_ndim) if axis not in window_dims]
  offsets = iter(window_dims)
  out = []
  for dim, (size, window) in enumerate(zip(operand_shape, window_sizes)):
    index = jnp.zeros((), jnp.int32)
    if dim in index_map:
      start = indices[..., index_map.index(dim)].astype(jnp.int32)
      index = jnp.expand_dims(start, [a for a in range(out_ndim) if a not in batch_axes])
    if dim not in collapsed:
      axis = next(offsets)
      shape = [1] * out_ndim
      shape[axis] = window
      index = index + jnp.arange(window, dtype=jnp.int32).reshape(shape)
    out.append(index)
  return out


def _elementwise_gather(params, operand: jax.Array, indices: jax.Array) -> jax.Array:
  """The window gather of `_is_window_gather` as one index per element (`operand[i0, i1, ...]`: a GatherND)."""
  dims, sizes = params["dimension_numbers"], params["slice_sizes"]
  starts = jnp.stack([jnp.clip(indices[..., k].astype(jnp.int32), 0, operand.shape[d] - sizes[d])
                      for k, d in enumerate(dims.start_index_map)], axis=-1)
  out_ndim = indices.ndim - 1 + len(dims.offset_dims)
  index = _window_indices(operand.shape, starts, sizes, tuple(dims.collapsed_slice_dims),
                          tuple(dims.start_index_map), tuple(dims.offset_dims), out_ndim)
  return operand[tuple(index)]


def _is_window_scatter(params, operand, indices, updates) -> bool:
  """A scatter of whole windows that drops the windows not inside the operand (`sparse_conv`'s write-back)."""
  dims = params["dimension_numbers"]
  return (params["mode"] == jax.lax.GatherScatterMode.FILL_OR_DROP and not dims.operand_batching_dims
          and not dims.scatter_indices_batching_dims and indices.ndim >= 2 and len(dims.update_window_dims) >= 2
          and params["update_jaxpr"] is None and jnp.issubdtype(indices.dtype, jnp.integer))


def _elementwise_scatter(params, operand: jax.Array, indices: jax.Array, updates: jax.Array) -> jax.Array:
  """The window scatter of `_is_window_scatter` as one index per element: a window not wholly inside the
  operand is dropped (XLA's rule) by sending its elements to an extra row cut off afterwards."""
  dims = params["dimension_numbers"]
  window_dims, inserted = tuple(dims.update_window_dims), tuple(dims.inserted_window_dims)
  index_map = tuple(dims.scatter_dims_to_operand_dims)
  sizes, window = [], iter(window_dims)
  for dim in range(operand.ndim):
    sizes.append(1 if dim in inserted else updates.shape[next(window)])
  inside = jnp.ones(indices.shape[:-1], bool)
  for k, dim in enumerate(index_map):
    start = indices[..., k].astype(jnp.int32)
    inside &= (start >= 0) & (start <= operand.shape[dim] - sizes[dim])
  index = _window_indices(operand.shape, indices, sizes, inserted, index_map, window_dims, updates.ndim)
  batch_axes = [axis for axis in range(updates.ndim) if axis not in window_dims]
  keep = jnp.expand_dims(inside, [a for a in range(updates.ndim) if a not in batch_axes])
  spare = operand.shape[0]  # the extra row along axis 0
  index[0] = jnp.where(keep, index[0], spare)
  index = [jnp.where(keep, i, 0) if d else i for d, i in enumerate(index)]
  padded = jnp.concatenate([operand, jnp.zeros((1, *operand.shape[1:]), operand.dtype)])
  return padded.at[tuple(index)].set(updates, mode="promise_in_bounds")[:operand.shape[0]]


def _is_batch_of_one_scatter(params, operand, indices, updates) -> bool:
  """A scatter whose only batching dimension is the leading axis of one video (what `vmap` makes of `.at[]`)."""
  dims = params["dimension_numbers"]
  return (tuple(dims.operand_batching_dims) == (0,) and tuple(dims.scatter_indices_batching_dims) == (0,)
          and operand.shape[0] == 1 and indices.shape[0] == 1 and indices.ndim >= 2)


def _unbatched_scatter(prim, params, operand: jax.Array, indices: jax.Array, updates: jax.Array) -> jax.Array:
  """The scatter of `_is_batch_of_one_scatter` on the one video, without batching dimensions (jax2onnx 0.13 lowers
  none), then given its batch axis back: the same writes."""
  dims = params["dimension_numbers"]
  batch_axis = min(set(range(updates.ndim)) - set(dims.update_window_dims))  # indices' axis 0 among updates'
  unbatched = jax.lax.ScatterDimensionNumbers(
      update_window_dims=tuple(d - (d > batch_axis) for d in dims.update_window_dims),
      inserted_window_dims=tuple(d - 1 for d in dims.inserted_window_dims),
      scatter_dims_to_operand_dims=tuple(d - 1 for d in dims.scatter_dims_to_operand_dims))
  out = prim.bind(operand[0], indices[0], jnp.squeeze(updates, batch_axis),
                  **prim.get_bind_params({**params, "dimension_numbers": unbatched}))
  return out[None]


def _is_nhwc_pool(params, operand) -> bool:
  """A 2-d max pool over [n h w c]: window, strides and dilations 1 on the batch and channel axes."""
  window, strides = params["window_dimensions"], params["window_strides"]
  return (operand.ndim == 4 and window[0] == window[3] == 1 and strides[0] == strides[3] == 1
          and tuple(params["padding"][0]) == tuple(params["padding"][3]) == (0, 0)
          and all(d == 1 for d in (*params["base_dilation"], *params["window_dilation"])))


def _nhwc_max_pool(x: jax.Array, params) -> jax.Array:
  """The pool of `_is_nhwc_pool` on [(n c) h w], which ONNX's MaxPool takes as 3-d with a window (1, k, k)."""
  n, h, w, c = x.shape
  window, strides, padding = params["window_dimensions"], params["window_strides"], params["padding"]
  flat = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w)
  pooled = jax.lax.reduce_window(flat, -jnp.inf, jax.lax.max, (1, *window[1:3]), (1, *strides[1:3]),
                                 ((0, 0), *padding[1:3]))
  return jnp.transpose(pooled.reshape(n, c, *pooled.shape[1:]), (0, 2, 3, 1))
