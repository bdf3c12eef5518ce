"""Import PyTorch checkpoints into jaxvos, and export jaxvos variables as PyTorch state dicts.

Imports:
- `stm`: the official STM checkpoint (seoungwugoh/STM, usually saved from `nn.DataParallel`: `module.` prefixes
  are removed); the encoders' ImageNet mean/std buffers are dropped with a note.
- `stcn`: the official STCN checkpoints (hkchengrex/STCN, and the stcnbuf fork): a flat state dict. The old
  single-object variant (static-image pretraining, `ValueEncoderSO`) has a value encoder whose conv1 takes 4
  input channels (RGB and the mask) instead of 5 (and the other objects' masks); it is detected from that shape
  and imported as `single_object=True`.
- `resnet18` / `resnet50`: torchvision ImageNet weights, imported as a backbone checkpoint (the trunk to
  layer3; `layer4.*` and `fc.*` are dropped with a note).

Export writes the reference model's keys (`load_state_dict(strict=True)` accepts them), BatchNorm's
`num_batches_tracked` as 0. PyTorch is needed only here and is imported when a file is read or written.
"""

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from data_pipelines.errors import DataError
from jaxvos.convert import families, swiftnet_torch
from jaxvos.convert.rules import (FAMILY_RULES, check_variables, flatten_variables, flax_to_torch, rules_for,
                                  torch_to_flax, unflatten_variables)

TORCH_PIN = "torch==2.13.0"
FAMILIES = tuple(FAMILY_RULES)  # what has import rules (`jaxvos.convert.rules`)
# Wrappers that training scripts save around a state dict.
_WRAPPER_KEYS = ("state_dict", "model", "network")


def _torch(path: str):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(path, f"reading and writing PyTorch checkpoints needs PyTorch: pip install {TORCH_PIN}") from None
  return torch


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A PyTorch checkpoint's state dict as NumPy arrays (`module.` prefixes of DataParallel removed).

  Accepts a flat state dict or a dict holding one under `state_dict` / `model` / `network`. Loads with
  `weights_only=True`: tensors and plain containers only, no pickled code.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(path, "PyTorch checkpoint not found")
  torch = _torch(path)
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except  (torch raises many types for a bad file)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise DataError(path, f"cannot be read as a PyTorch checkpoint ({type(error).__name__}: {message})") from None
  for key in _WRAPPER_KEYS:
    if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
      loaded = loaded[key]
      break
  if not isinstance(loaded, Mapping) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
    raise DataError(path, "is not a PyTorch state dict (a mapping of parameter names to tensors)")
  state_dict = {}
  for key, value in loaded.items():
    value = value.detach().cpu()
    state_dict[key.removeprefix("module.")] = (value.float() if value.is_floating_point() else value).numpy()
  return state_dict


# STCN config fields that a state dict decides: field -> (key, axis of its shape). Checkpoints of the official
# model give the defaults; smaller models exported from jaxvos come back with their own sizes.
_STCN_SIZES = {
    "width": ("key_encoder.conv1.weight", 0),
    "key_dim": ("key_proj.key_proj.weight", 0),
    "hidden_dim": ("key_comp.weight", 0),
    "value_dim": ("value_encoder.fuser.block2.conv2.weight", 0),
}
_STCN_DECODER = ("decoder.compress.conv2.weight", "decoder.up_16_8.out_conv.conv2.weight",
                 "decoder.up_8_4.out_conv.conv2.weight")


def _stcn_config(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """STCN sizes and variant from the state dict; fields whose keys are absent keep their defaults."""
  config = {field: int(state_dict[key].shape[axis]) for field, (key, axis) in _STCN_SIZES.items()
            if key in state_dict}
  if all(key in state_dict for key in _STCN_DECODER):
    config["decoder_dims"] = tuple(int(state_dict[key].shape[0]) for key in _STCN_DECODER)
  # Bottleneck blocks have a third convolution.
  if "key_encoder.res2.0.conv1.weight" in state_dict:
    config["key_depth"] = 50 if "key_encoder.res2.0.conv3.weight" in state_dict else 18
  if "value_encoder.layer1.0.conv1.weight" in state_dict:
    config["value_depth"] = 50 if "value_encoder.layer1.0.conv3.weight" in state_dict else 18
  conv1 = state_dict.get("value_encoder.conv1.weight")
  if conv1 is not None:
    # RGB + the object's mask (+ the other objects' masks): 4 input channels is the single-object variant.
    config["single_object"] = conv1.shape[1] == 4
  return config


def _backbone_config(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  conv1 = state_dict.get("conv1.weight")
  if conv1 is None:
    return {}
  return {"width": int(conv1.shape[0]), "in_channels": int(conv1.shape[1]), "conv_bias": "conv1.bias" in state_dict}


# STM config fields that a state dict decides (seoungwugoh/STM's keys; the official model gives the defaults).
_STM_SIZES = {
    "width": ("Encoder_Q.conv1.weight", 0),
    "key_dim": ("KV_Q_r4.Key.weight", 0),
    "value_dim": ("KV_Q_r4.Value.weight", 0),
    "decoder_dim": ("Decoder.convFM.weight", 0),
}


def _stm_config(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """STM sizes from the state dict; fields whose keys are absent keep their defaults."""
  config = {field: int(state_dict[key].shape[axis]) for field, (key, axis) in _STM_SIZES.items()
            if key in state_dict}
  if "Encoder_Q.res2.0.conv1.weight" in state_dict:
    config["depth"] = 50 if "Encoder_Q.res2.0.conv3.weight" in state_dict else 18
  return config


_CONFIG_FROM_STATE_DICT = {"stcn": _stcn_config, "stm": _stm_config,
                           "swiftnet": swiftnet_torch.config_from_state_dict, "resnet18": _backbone_config,
                           "resnet50": _backbone_config}


def build_family(family: str, overrides: Mapping[str, Any]) -> Any:
  """The family `family` with config overrides (registry families via `registry.build`)."""
  if family in families.BACKBONES:
    return families.build(family, dict(overrides))
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  return registry.build(family, **overrides)


def import_state_dict(family_name: str, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint",
                      **config: Any) -> tuple[Any, dict, list[str]]:
  """Converts a PyTorch state dict of `family_name`; returns (family, variables, notes).

  Sizes and variants (STCN's single-object value encoder) come from the state dict; `config` sets other config
  fields of the family (e.g. its memory policy).

  Raises:
    DataError: keys or shapes that do not fit the family, naming the first offending keys and `source`.
  """
  if family_name not in FAMILIES:
    raise DataError(source, f"unknown family {family_name!r} (one of {', '.join(FAMILIES)})")
  rules = rules_for(family_name)
  overrides = {**_CONFIG_FROM_STATE_DICT[family_name](state_dict), **config}
  try:
    family = build_family(family_name, overrides)
  except (TypeError, ValueError) as error:
    raise DataError(source, f"cannot build family {family_name!r} with {overrides}: {error}") from None
  flat, notes = torch_to_flax(state_dict, rules, source)
  check_variables({path: value.shape for path, value in flat.items()}, families.variable_shapes(family), rules,
                  source, family.name)
  if overrides.get("single_object"):
    notes.append("the value encoder's conv1 takes 4 input channels: imported as the single-object variant")
  return family, unflatten_variables(flat), notes


def import_torch(family_name: str, path: str | os.PathLike, **config: Any) -> tuple[Any, dict, list[str]]:
  """Reads and converts the PyTorch checkpoint at `path`; returns (family, variables, notes)."""
  return import_state_dict(family_name, read_state_dict(path), os.fspath(path), **config)


def export_state_dict(family: Any, variables: Any, source: str = "checkpoint") -> dict[str, np.ndarray]:
  """The PyTorch state dict (NumPy arrays) of jaxvos `variables`, keyed as the reference model's.

  Raises:
    DataError: naming `source`, for a family without a PyTorch reference layout.
  """
  try:
    rules = rules_for(family.name)
  except ValueError as error:
    raise DataError(source, str(error)) from None
  flat = {path: np.asarray(jax.device_get(value)) for path, value in flatten_variables(variables).items()}
  return flax_to_torch(flat, rules)


def write_state_dict(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
  """Saves a state dict of NumPy arrays as a PyTorch file; an existing file is not overwritten."""
  path = os.fspath(path)
  if os.path.exists(path):
    raise DataError(path, "exists; nothing is overwritten")
  torch = _torch(path)
  tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in state_dict.items()}
  torch.save(tensors, path + ".tmp")
  os.replace(path + ".tmp", path)
