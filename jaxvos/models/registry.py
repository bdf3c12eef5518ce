"""Model families by name: `build("stcn")`, `build("stcn-r18", top_k=None)`, `from_config(name, dict)`.

`-r18` variants use ResNet-18 encoders (the CPU-friendly sizes); `-tiny` variants are for tests and smoke runs
(ResNet-18 at a quarter width, small heads) and are meant to be trained, not imported.
"""

import dataclasses
from typing import Any, Callable

from jaxvos.memory.key_value import MemoryConfig
from jaxvos.models.family import Family
from jaxvos.models.stcn import STCNConfig, stcn
from jaxvos.models.stm import STMConfig, stm

_TINY_STCN = dict(key_depth=18, width=16, key_dim=16, value_dim=32, hidden_dim=32, decoder_dims=(32, 16, 16))
_TINY_STM = dict(depth=18, width=16, key_dim=16, value_dim=32, decoder_dim=16)

# name -> (family constructor, config class, default overrides of the config)
_MODELS: dict[str, tuple[Callable[..., Family], type, dict[str, Any]]] = {
    "stcn": (stcn, STCNConfig, {}),
    "stcn-r18": (stcn, STCNConfig, dict(key_depth=18)),
    "stcn-tiny": (stcn, STCNConfig, _TINY_STCN),
    "stm": (stm, STMConfig, {}),
    "stm-r18": (stm, STMConfig, dict(depth=18, key_dim=32, value_dim=128)),
    "stm-tiny": (stm, STMConfig, _TINY_STM),
}


def names() -> list[str]:
  return list(_MODELS)


def build(name: str, **overrides: Any) -> Family:
  """The family `name` with config fields overridden (`memory` may be a dict of `MemoryConfig` fields)."""
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(_MODELS)}")
  constructor, config_class, defaults = _MODELS[name]
  fields = {**defaults, **overrides}
  if isinstance(fields.get("memory"), dict):
    fields["memory"] = MemoryConfig(**fields["memory"])
  if isinstance(fields.get("decoder_dims"), list):
    fields["decoder_dims"] = tuple(fields["decoder_dims"])
  return constructor(config_class(**fields), name=name)


def from_config(name: str, config: dict[str, Any]) -> Family:
  """Rebuilds a family from `dataclasses.asdict(family.config)` (what checkpoints store)."""
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(_MODELS)}")
  return build(name, **config)


def config_dict(family: Family) -> dict[str, Any]:
  return dataclasses.asdict(family.config)
