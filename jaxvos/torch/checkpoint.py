"""Twin checkpoints: one `.pth` holding the state dict, the family name and its config.

    {"format": 1, "family": "stcn-r18", "config": {...}, "state_dict": {key: tensor}, "jaxvos_version": "..."}

`config` is the family's jaxvos config as a dict (`dataclasses.asdict`, what `model.json` holds), so a file
rebuilds its twin exactly, memory policy included. The state dict's keys are the twin's, which are the official
code's where jaxvos names mirror it (STCN, STM). Plain containers and tensors only: `torch.load(weights_only=True)`
reads it, and `torch.load(f)["state_dict"]` loads strictly into the official STCN when the sizes match.
`python -m jaxvos convert to-torch` writes these files and `convert from-torch` reads them back.
"""

import os
from typing import Any, Mapping

import torch
from torch import nn

from jaxvos.torch import gam as gam_lib
from jaxvos.torch import memory as memory_lib
from jaxvos.torch import spvos as spvos_lib
from jaxvos.torch import stcn as stcn_lib
from jaxvos.torch import stm as stm_lib
from jaxvos.torch import swiftnet as swiftnet_lib

FORMAT = 1
# family (the registry name's first part) -> (network class, config fields that are not network arguments); a
# network class's `memory_config` attribute is its memory policy's config class (default `MemoryConfig`)
TWINS: dict[str, tuple[type, tuple[str, ...]]] = {
    "stcn": (stcn_lib.STCN, ("memory",)),
    "stm": (stm_lib.STM, ("memory",)),
    "gam": (gam_lib.GAM, ("memory",)),
    "spvos": (spvos_lib.SpVOS, ("memory", *spvos_lib.TRAINING_FIELDS)),
    "swiftnet": (swiftnet_lib.SwiftNet, ("memory",)),
}


def base_family(name: str) -> str:
  """`stcn-r18` -> `stcn`."""
  return name.split("-")[0]


def build(family: str, config: Mapping[str, Any]) -> tuple[nn.Module, memory_lib.MemoryConfig]:
  """The twin network of `family` (a registry name) with `config` (its jaxvos config dict), and its memory policy.

  Raises:
    ValueError: a family without a twin, or config fields the twin does not know.
  """
  base = base_family(family)
  if base not in TWINS:
    raise ValueError(f"no PyTorch twin for family {family!r} (twins: {', '.join(TWINS)})")
  network_class, other_fields = TWINS[base]
  arguments = {key: value for key, value in config.items() if key not in other_fields}
  try:
    network = network_class(**arguments)
  except TypeError as error:
    raise ValueError(f"config of {family!r} does not fit its twin: {error}") from None
  memory_config = getattr(network_class, "memory_config", memory_lib.MemoryConfig)
  return network, memory_config(**dict(config.get("memory") or {}))


def save(path: str | os.PathLike, family: str, config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
         version: str = "") -> None:
  """Writes a twin checkpoint; an existing file is not overwritten (FileExistsError)."""
  path = os.fspath(path)
  if os.path.exists(path):
    raise FileExistsError(path)
  payload = {"format": FORMAT, "family": family, "config": _plain(config), "state_dict": dict(state_dict),
             "jaxvos_version": version}
  torch.save(payload, path + ".tmp")
  os.replace(path + ".tmp", path)


def read(path: str | os.PathLike) -> dict[str, Any]:
  """The contents of a twin checkpoint (tensors on the CPU).

  Raises:
    ValueError: a file that is not a twin checkpoint (a bare state dict: say which family it is).
  """
  payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
  if not isinstance(payload, dict) or not {"family", "config", "state_dict"} <= set(payload):
    raise ValueError(f"{os.fspath(path)}: not a jaxvos twin checkpoint (a dict with family, config and "
                     "state_dict); write one with `python -m jaxvos convert to-torch`")
  if payload.get("format", FORMAT) > FORMAT:
    raise ValueError(f"{os.fspath(path)}: format {payload['format']} is newer than this jaxvos reads ({FORMAT})")
  return payload


def load_network(path: str | os.PathLike) -> tuple[nn.Module, memory_lib.MemoryConfig, dict[str, Any]]:
  """(twin network with the file's weights, loaded strictly, in eval mode; its memory policy; the file)."""
  payload = read(path)
  network, memory_config = build(payload["family"], payload["config"])
  network.load_state_dict(payload["state_dict"], strict=True)
  return network.eval(), memory_config, payload


def _plain(value: Any) -> Any:
  """Tuples as lists, recursively: what `weights_only` loading accepts and JSON writes alike."""
  if isinstance(value, Mapping):
    return {str(key): _plain(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(item) for item in value]
  return value
