"""PyTorch state-dict keys <-> jaxvos (Flax) variable paths, as a table of rules.

jaxvos modules are named after the PyTorch reference (DESIGN.md, "Names are checkpoint names"), so conversion is
a few generic rules plus a short table per family, never a list of sizes:

- Module paths: dots become path levels, and an `nn.Sequential` index joins its container's name with `_`
  (`layer1.0.downsample.0.weight` -> `layer1_0/downsample_0/kernel`, `mlp.1.weight` -> `mlp_1/kernel`).
- Leaves (`LEAF_RULES`), by the kind of layer, which the state dict itself tells: a module with a
  `running_mean` buffer is a BatchNorm, a 4-d `weight` a convolution, a 2-d one a linear layer. Convolution
  kernels go from OIHW to HWIO, linear ones from [out, in] to [in, out]; BatchNorm's running statistics go to
  the `batch_stats` collection; `num_batches_tracked` is dropped (frozen BatchNorm never reads it) and written
  back as 0.
- Per family (`FamilyRules`): the names of its `nn.Sequential` containers, module renames and keys that the
  jaxvos model has no counterpart for. The container names are what makes the map invertible: `up_16_8/...` is
  STCN's `up_16_8.*`, but `layer1_0/...` is `layer1.0.*`.

Flat Flax paths are tuples `(collection, module, ..., leaf)`, e.g. `("params", "key_encoder", "conv1",
"kernel")`; arrays are NumPy in both directions.
"""

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np

from data_pipelines.errors import DataError

FlaxPath = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LeafRule:
  """One PyTorch parameter or buffer of one kind of layer, and the Flax variable it is."""
  layer: str                               # "conv", "linear" or "batchnorm"
  torch_name: str
  collection: str
  flax_name: str
  to_flax_axes: tuple[int, ...] | None     # transpose from the PyTorch layout, None to copy


LEAF_RULES = (
    LeafRule("conv", "weight", "params", "kernel", (2, 3, 1, 0)),   # OIHW -> HWIO
    LeafRule("conv", "bias", "params", "bias", None),
    LeafRule("linear", "weight", "params", "kernel", (1, 0)),       # [out, in] -> [in, out]
    LeafRule("linear", "bias", "params", "bias", None),
    LeafRule("batchnorm", "weight", "params", "scale", None),
    LeafRule("batchnorm", "bias", "params", "bias", None),
    LeafRule("batchnorm", "running_mean", "batch_stats", "mean", None),
    LeafRule("batchnorm", "running_var", "batch_stats", "var", None),
)
# PyTorch buffers with no Flax counterpart: dropped on import, written back with this value on export.
DROPPED_BUFFERS = {"num_batches_tracked": np.int64(0)}


@dataclasses.dataclass(frozen=True)
class FamilyRules:
  """What one family's PyTorch state dict needs beyond the generic rules.

  Attributes:
    sequential: regular expression matching the names of the reference's `nn.Sequential` containers (the
      inverse of the `_<index>` join); with renames, the names on both sides.
    renames: (PyTorch module prefix, Flax module prefix) pairs, e.g. `("layer1", "res2")`; `.` and `/`
      separate levels. Most families need none: jaxvos names mirror the reference.
    dropped: (regular expression on a PyTorch key, reason) for reference keys jaxvos does not model.
  """
  sequential: str
  renames: tuple[tuple[str, str], ...] = ()
  dropped: tuple[tuple[str, str], ...] = ()


# torchvision ResNets: stages and projection shortcuts are `nn.Sequential`.
TORCHVISION_RESNET = FamilyRules(
    sequential=r"layer\d+|downsample",
    dropped=((r"fc\..*", "the ImageNet classifier"), (r"layer4\..*", "the trunk is cut after layer3")))
# hkchengrex/STCN `model/network.py` / `modules.py` (and the stcnbuf fork): the key encoder calls torchvision's
# layer1 `res2`; CBAM's channel MLP is `nn.Sequential(Flatten, Linear, ReLU, Linear)`.
STCN = FamilyRules(sequential=r"layer\d+|res\d+|downsample|mlp")

# seoungwugoh/STM `model.py`: encoders name torchvision's layer1..3 `res2`..`res4`; each registers the ImageNet
# mean and std as buffers (jaxvos normalises frames before the network; `to_torch_twins` writes them back).
STM = FamilyRules(sequential=r"res\d+|downsample",
                  dropped=((r"Encoder_[MQ]\.(mean|std)", "the ImageNet normalisation constants (jaxvos normalises "
                            "frames before the network)"),))

# haochenheheda/SwiftNet `swiftnet.py` (what matches it: `jaxvos.convert.swiftnet_torch`): the encoder names
# torchvision's layer1..3 `res2`..`res4` and registers the ImageNet mean and std as buffers.
SWIFTNET = FamilyRules(
    sequential=r"res\d+|downsample",
    dropped=((r"Encoder\.(mean|std)", "the ImageNet normalisation constants (jaxvos normalises frames before the "
              "network)"),))

FAMILY_RULES = {"stcn": STCN, "stm": STM, "swiftnet": SWIFTNET, "resnet18": TORCHVISION_RESNET,
                "resnet50": TORCHVISION_RESNET}


def rules_for(family: str) -> FamilyRules:
  """The rule table of a family; registry variants share their family's (`stcn-r18` is `stcn`).

  Raises:
    ValueError: a family with no table (it cannot be converted).
  """
  base = family if family in FAMILY_RULES else family.split("-")[0]
  if base not in FAMILY_RULES:
    raise ValueError(f"no PyTorch conversion rules for family {family!r} (known: {', '.join(FAMILY_RULES)})")
  return FAMILY_RULES[base]


def _layer_kinds(state_dict: Mapping[str, np.ndarray]) -> dict[str, str]:
  """PyTorch module path -> "conv" / "linear" / "batchnorm", from the keys and the rank of `weight`."""
  kinds = {}
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    if leaf == "running_mean":
      kinds[module] = "batchnorm"
    elif leaf == "weight" and kinds.get(module) != "batchnorm":
      kinds[module] = {4: "conv", 2: "linear"}.get(np.ndim(value), f"{np.ndim(value)}-d weight")
  return kinds


def _flax_module(module: str, rules: FamilyRules) -> tuple[str, ...]:
  """PyTorch module path (dotted) -> Flax module path: renames, then `name.<i>` -> `name_<i>`."""
  for torch_prefix, flax_prefix in rules.renames:
    if module == torch_prefix or module.startswith(torch_prefix + "."):
      module = flax_prefix.replace("/", ".") + module[len(torch_prefix):]
      break
  parts: list[str] = []
  for part in module.split(".") if module else ():
    if part.isdigit() and parts:
      parts[-1] = f"{parts[-1]}_{part}"
    else:
      parts.append(part)
  return tuple(parts)


def _torch_module(path: tuple[str, ...], rules: FamilyRules) -> str:
  """Inverse of `_flax_module`: `name_<i>` splits back only where `name` is a sequential container."""
  parts = []
  for name in path:
    match = re.fullmatch(rf"({rules.sequential})_(\d+)", name)
    parts.extend(match.groups() if match else (name,))
  module = ".".join(parts)
  for torch_prefix, flax_prefix in rules.renames:
    dotted = flax_prefix.replace("/", ".")
    if module == dotted or module.startswith(dotted + "."):
      return torch_prefix + module[len(dotted):]
  return module


def _leaf_rule(layer: str, torch_name: str | None = None, flax_name: str | None = None) -> LeafRule | None:
  for rule in LEAF_RULES:
    if rule.layer == layer and torch_name in (None, rule.torch_name) and flax_name in (None, rule.flax_name):
      return rule
  return None


def torch_to_flax(state_dict: Mapping[str, np.ndarray], rules: FamilyRules,
                  source: str = "checkpoint") -> tuple[dict[FlaxPath, np.ndarray], list[str]]:
  """Converts a PyTorch state dict to flat Flax variables; returns (variables, notes on dropped keys).

  Raises:
    DataError: a key that no rule covers (an unknown layer kind or leaf), naming it and `source`.
  """
  kinds = _layer_kinds(state_dict)
  flat, notes, dropped = {}, [], {}
  for key, value in state_dict.items():
    reason = next((why for pattern, why in rules.dropped if re.fullmatch(pattern, key)), None)
    module, _, leaf = key.rpartition(".")
    if reason is not None:
      dropped.setdefault(reason, []).append(key)
      continue
    if leaf in DROPPED_BUFFERS:
      continue
    rule = _leaf_rule(kinds.get(module, "unknown"), torch_name=leaf)
    if rule is None:
      raise DataError(source, f"no conversion rule for {key} (shape {list(np.shape(value))}, layer kind "
                      f"{kinds.get(module, 'unknown')})")
    array = np.asarray(value, dtype=np.float32)
    if rule.to_flax_axes is not None:
      array = array.transpose(rule.to_flax_axes)
    flat[(rule.collection, *_flax_module(module, rules), rule.flax_name)] = np.array(array, order="C")
  for reason, keys in dropped.items():
    notes.append(f"dropped {len(keys)} keys ({first_few(keys)}): {reason}")
  return flat, notes


def flax_layer_kinds(shapes: Mapping[FlaxPath, tuple[int, ...]]) -> dict[tuple[str, ...], str]:
  """Flax module path -> layer kind: a module with batch statistics is a BatchNorm, else the kernel's rank."""
  kinds = {path[1:-1]: "batchnorm" for path in shapes if path[0] == "batch_stats"}
  for path, shape in shapes.items():
    if path[0] == "params" and path[-1] == "kernel" and path[1:-1] not in kinds:
      kinds[path[1:-1]] = {4: "conv", 2: "linear"}.get(len(shape), f"{len(shape)}-d kernel")
  return kinds


def torch_key(path: FlaxPath, kinds: Mapping[tuple[str, ...], str], rules: FamilyRules) -> str:
  """The PyTorch state-dict key of one flat Flax path (`kinds` from `flax_layer_kinds`)."""
  rule = _leaf_rule(kinds.get(path[1:-1], "unknown"), flax_name=path[-1])
  leaf = rule.torch_name if rule is not None and rule.collection == path[0] else "/".join((path[0], path[-1]))
  module = _torch_module(path[1:-1], rules)
  return f"{module}.{leaf}" if module else leaf


def flax_to_torch(flat: Mapping[FlaxPath, np.ndarray], rules: FamilyRules) -> dict[str, np.ndarray]:
  """Flat Flax variables -> a PyTorch state dict (NumPy arrays), BatchNorm's `num_batches_tracked` included."""
  kinds = flax_layer_kinds({path: np.shape(value) for path, value in flat.items()})
  state_dict = {}
  for path, value in flat.items():
    kind = kinds.get(path[1:-1], "unknown")
    rule = _leaf_rule(kind, flax_name=path[-1])
    if rule is None or rule.collection != path[0]:
      raise ValueError(f"no conversion rule for {'/'.join(path)} (layer kind {kind})")
    array = np.asarray(value, dtype=np.float32)
    if rule.to_flax_axes is not None:
      array = array.transpose(np.argsort(rule.to_flax_axes))
    key = torch_key(path, kinds, rules)
    state_dict[key] = np.array(array, order="C")
    if kind == "batchnorm" and rule.torch_name == "running_var":
      for buffer, fill in DROPPED_BUFFERS.items():
        state_dict[key.rpartition(".")[0] + "." + buffer] = np.asarray(fill)
  return state_dict


def torch_shape(path: FlaxPath, shape: tuple[int, ...]) -> tuple[int, ...]:
  """A Flax variable's shape in the PyTorch layout (OIHW for a conv kernel, [out, in] for a linear one)."""
  if path[-1] == "kernel" and len(shape) in (2, 4):
    axes = (1, 0) if len(shape) == 2 else (3, 2, 0, 1)
    return tuple(shape[i] for i in axes)
  return tuple(shape)


def check_variables(shapes: Mapping[FlaxPath, tuple[int, ...]], expected: Mapping[FlaxPath, tuple[int, ...]],
                    rules: FamilyRules | None, source: str, model: str) -> None:
  """Raises a one-line `DataError` naming `source` if variables of these shapes do not fit the model.

  Names the first few missing, unexpected and mis-shaped variables: by PyTorch key and jaxvos path (and
  PyTorch-layout shapes) when `rules` is given, else by jaxvos path alone.
  """
  kinds = flax_layer_kinds({**expected, **shapes})

  def name(path: FlaxPath) -> str:
    jax_name = "/".join(path)
    return f"{torch_key(path, kinds, rules)} (jaxvos {jax_name})" if rules is not None else jax_name

  def layout(path: FlaxPath, shape: tuple[int, ...]) -> list[int]:
    return list(torch_shape(path, tuple(shape)) if rules is not None else shape)

  missing = [name(path) for path in reading_order(expected) if path not in shapes]
  unexpected = [name(path) for path in reading_order(shapes) if path not in expected]
  mismatched = [f"{name(path)} is {layout(path, shapes[path])}, the model has {layout(path, expected[path])}"
                for path in reading_order(expected)
                if path in shapes and tuple(shapes[path]) != tuple(expected[path])]
  problems = [f"{len(items)} {what} ({first_few(items)})" for what, items in
              (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", mismatched)) if items]
  if problems:
    raise DataError(source, f"does not fit the {model} model: " + "; ".join(problems))


def reading_order(paths: Iterable[FlaxPath]) -> list[FlaxPath]:
  """Module by module in the order given (definition order), each module's parameters before its statistics."""
  paths = sorted(paths, key=lambda path: path[0] != "params")
  first_seen: dict[tuple[str, ...], int] = {}
  for path in paths:
    first_seen.setdefault(path[1:-1], len(first_seen))
  return sorted(paths, key=lambda path: first_seen[path[1:-1]])


def first_few(items: Iterable[str], count: int = 3) -> str:
  items = list(items)
  more = f", and {len(items) - count} more" if len(items) > count else ""
  return ", ".join(items[:count]) + more


def flatten_variables(variables: Mapping) -> dict[FlaxPath, object]:
  """`{"params": {"a": {"kernel": x}}}` -> `{("params", "a", "kernel"): x}` (leaves unchanged)."""
  flat = {}
  for name, value in variables.items():
    if isinstance(value, Mapping):
      flat.update({(name, *path): leaf for path, leaf in flatten_variables(value).items()})
    else:
      flat[(name,)] = value
  return flat


def unflatten_variables(flat: Mapping[FlaxPath, object]) -> dict:
  """Inverse of `flatten_variables`: nested plain dicts."""
  nested: dict = {}
  for path, leaf in flat.items():
    node = nested
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = leaf
  return nested
