"""Model families by name, in one table: `build("stcn")`, `build("stcn-r18", top_k=None)`, `from_config(name, d)`.

Everything that lists or rebuilds families reads this table: the CLI's choices and help, `convert`, checkpoint
`model.json` files (`config_dict` / `from_config`) and the contract tests (`tests/test_family_contract.py`), so a
family is registered here and nowhere else. `-r18` variants use ResNet-18 encoders (the CPU-friendly sizes);
`-tiny` variants are for tests and smoke runs (ResNet-18 at a quarter width, small heads) and are meant to be
trained, not imported.
"""

import dataclasses
import types
import typing
from typing import Any, Callable

from jaxvos.models.family import Family
from jaxvos.models.gam import GAMConfig, gam
from jaxvos.models.spvos import SpVOSConfig, spvos
from jaxvos.models.stcn import STCNConfig, stcn
from jaxvos.models.stm import STMConfig, stm
from jaxvos.models.swiftnet import SwiftNetConfig, swiftnet


@dataclasses.dataclass(frozen=True)
class Entry:
  """One registered model: how to build it, its config class, the defaults it overrides, one line of help."""
  constructor: Callable[..., Family]
  config_class: type
  defaults: dict[str, Any]
  summary: str


_TINY_STCN = dict(key_depth=18, width=16, key_dim=16, value_dim=32, hidden_dim=32, decoder_dims=(32, 16, 16))
_TINY_STM = dict(depth=18, width=16, key_dim=16, value_dim=32, decoder_dim=16)
_TINY_GAM = dict(frame_depth=18, width=16, key_dim=16, value_dim=32, decoder_dim=16, mem_dim=8)
_TINY_SWIFTNET = dict(depth=18, width=16, key_dim=8, value_dim=32, aspp_dim=32, decoder_dim=16)

MODELS: dict[str, Entry] = {
    "stcn": Entry(stcn, STCNConfig, {}, "STCN, ResNet-50 key encoder (the official model's sizes)"),
    "stcn-r18": Entry(stcn, STCNConfig, dict(key_depth=18), "STCN with a ResNet-18 key encoder"),
    "stcn-tiny": Entry(stcn, STCNConfig, _TINY_STCN, "STCN at a quarter width, for tests and smoke runs"),
    "spvos": Entry(spvos, SpVOSConfig, {}, "SpVOS: STCN with triple-gated sparse convolutions (compute/reuse/skip)"),
    "spvos-r18": Entry(spvos, SpVOSConfig, dict(key_depth=18), "SpVOS on STCN with a ResNet-18 key encoder"),
    "spvos-tiny": Entry(spvos, SpVOSConfig, _TINY_STCN, "SpVOS on stcn-tiny, for tests and smoke runs"),
    "stm": Entry(stm, STMConfig, {}, "STM, two ResNet-50 encoders"),
    "stm-r18": Entry(stm, STMConfig, dict(depth=18, key_dim=32, value_dim=128), "STM with ResNet-18 encoders"),
    "stm-tiny": Entry(stm, STMConfig, _TINY_STM, "STM at a quarter width, for tests and smoke runs"),
    "gam": Entry(gam, GAMConfig, {}, "GAM, ResNet-50 frame + ResNet-18 mask encoder, global context 128x512"),
    "gam-r18": Entry(gam, GAMConfig, dict(frame_depth=18, key_dim=64, value_dim=256, decoder_dim=128),
                     "GAM with a ResNet-18 frame encoder, global context 64x256"),
    "gam-tiny": Entry(gam, GAMConfig, _TINY_GAM, "GAM at a quarter width, for tests and smoke runs"),
    "swiftnet": Entry(swiftnet, SwiftNetConfig, {},
                      "SwiftNet, ResNet-18, pixel-adaptive memory (the paper's real-time model)"),
    "swiftnet-r50": Entry(swiftnet, SwiftNetConfig, dict(depth=50, key_dim=128, value_dim=512, aspp_dim=256,
                                                         decoder_dim=256), "SwiftNet with a ResNet-50 encoder"),
    "swiftnet-tiny": Entry(swiftnet, SwiftNetConfig, _TINY_SWIFTNET,
                           "SwiftNet at a quarter width, for tests and smoke runs"),
}


def names() -> list[str]:
  return list(MODELS)


def tiny_names() -> list[str]:
  """The `-tiny` variant of every family (what the contract tests run)."""
  return [name for name in MODELS if name.endswith("-tiny")]


def describe() -> str:
  """One line per model, for `--help` texts."""
  return "\n".join(f"{name:<14} {entry.summary}" for name, entry in MODELS.items())


def build(name: str, **overrides: Any) -> Family:
  """The family `name` with config fields overridden (nested configs may be given as dicts, tuples as lists)."""
  entry = _entry(name)
  fields = {**entry.defaults, **overrides}
  return entry.constructor(_from_dict(entry.config_class, fields), name=name)


def from_config(name: str, config: dict[str, Any]) -> Family:
  """Rebuilds a family from `config_dict(family)` (what checkpoints store)."""
  return build(name, **config)


def config_dict(family: Family) -> dict[str, Any]:
  """The JSON-able config of a family (nested dataclasses as dicts)."""
  return dataclasses.asdict(family.config)


def _entry(name: str) -> Entry:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
  return MODELS[name]


def _from_dict(config_class: type, fields: dict[str, Any]) -> Any:
  """`config_class(**fields)`, turning dicts into nested config dataclasses and lists into tuples by the
  field's annotation, and naming unknown fields in the error."""
  hints = typing.get_type_hints(config_class)
  known = {field.name for field in dataclasses.fields(config_class)}
  if set(fields) - known:
    raise ValueError(f"unknown {config_class.__name__} fields: {', '.join(sorted(set(fields) - known))}")
  converted = {}
  for key, value in fields.items():
    hint = hints[key]
    if isinstance(value, dict) and dataclasses.is_dataclass(hint):
      value = _from_dict(hint, value)
    elif isinstance(value, list) and _is_tuple(hint):
      value = tuple(value)
    if not _fits(value, hint):
      raise ValueError(f"{config_class.__name__}.{key} must be {_describe(hint)}, not {value!r}")
    converted[key] = value
  return config_class(**converted)


def _fits(value: Any, hint: Any) -> bool:
  """Whether a config value fits its field's annotation, as far as JSON can tell: numbers for numbers (an int
  where a float is expected), strings for strings, sequences for tuples, None where it is allowed; nested
  configs and other annotations are not checked here."""
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_fits(value, arg) for arg in typing.get_args(hint))
  if hint is type(None):
    return value is None
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if hint is str:
    return isinstance(value, str)
  if hint is tuple or origin is tuple:
    return isinstance(value, (tuple, list))
  return True


def _describe(hint: Any) -> str:
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    return " or ".join(_describe(arg) for arg in typing.get_args(hint))
  if hint is tuple or typing.get_origin(hint) is tuple:
    return "a list"
  return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _is_tuple(hint: Any) -> bool:
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_is_tuple(arg) for arg in typing.get_args(hint))
  return hint is tuple or origin is tuple
