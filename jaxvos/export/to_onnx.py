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
- nested jit and custom-derivative calls are inlined, `cond` is rebuilt with `lax.switch` (an ONNX `If`).
Nothing is approximated: the parity tests hold onnxruntime to 1e-4 of JAX (it is about 1e-5).
"""

import contextlib
import dataclasses
import json
import logging
import os
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
    DataError: `out_dir` exists and is not empty, or jax2onnx is missing.
    NotImplementedError: an operation the exporter cannot lower (the message names it).
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
  os.makedirs(out_dir, exist_ok=True)
  for file_name, (fn, input_names, state_shapes) in inputs.items():
    args = [jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32), jax.ShapeDtypeStruct((1, o, h, w), jnp.float32),
            jax.ShapeDtypeStruct((1, o), jnp.bool_), *state_shapes]
    replay = replayable(fn, args)
    with _quiet_exporter():
      model = to_onnx(replay, args, model_name=f"{family.name}_{file_name[:-5]}", opset=OPSET,
                      input_names=input_names + names[:len(state_shapes)])
    _save(_name_outputs(model, ["probs", *[NEXT + name for name in names]]), os.path.join(out_dir, file_name))
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


def _name_outputs(model, names: list[str]):
  """Renames the graph's outputs through Identity nodes: an output may be an input passed through unchanged
  (the objects of the first frame), and one ONNX value cannot carry both names."""
  import onnx  # pylint: disable=g-import-not-at-top
  graph = model.graph
  for output, name in zip(graph.output, names):
    graph.node.append(onnx.helper.make_node("Identity", [output.name], [name], name=f"output_{name}"))
    output.name = name
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
    return list(jax.lax.switch(invals[0], branches, *invals[1:]))
  if prim is _PRIMS.scatter_p and _is_single_batched_update(params, *invals):
    operand, indices, updates = invals
    return [jax.lax.dynamic_update_slice(operand, updates, [0, *indices[0]])]
  if prim.name == "stack":  # a primitive since jax 0.9; jax2onnx 0.13 lowers concatenate, not stack
    return [jnp.concatenate([jnp.expand_dims(x, params["axis"]) for x in invals], axis=params["axis"])]
  if prim is _PRIMS.reduce_window_max_p and _is_nhwc_pool(params, *invals):
    return [_nhwc_max_pool(invals[0], params)]
  if prim is _PRIMS.gather_p and _is_single_batched_slice(params, *invals):
    operand, indices = invals
    return [jax.lax.dynamic_slice(operand, [0, *indices[0]], params["slice_sizes"])]
  out = prim.bind(*invals, **prim.get_bind_params(params))
  return list(out) if prim.multiple_results else [out]


_CLAMPING = (jax.lax.GatherScatterMode.CLIP, jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


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
