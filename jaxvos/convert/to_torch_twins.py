"""jaxvos checkpoints <-> PyTorch files for the twins (`jaxvos.torch`), in two layouts.

- `twin` (the default where a family has a twin: STCN, STM): a twin checkpoint (`jaxvos.torch.checkpoint`), the
  state dict with the family name and config, which `jaxvos.torch.load` turns into a streaming processor and
  `convert from-torch` reads back without being told the family (round trip bit-identical, config included).
- `official`: the bare state dict that the official code's `load_state_dict(strict=True)` takes (hkchengrex/STCN;
  seoungwugoh/STM, whose encoders also hold the ImageNet mean/std buffers, written back here). Backbones
  (`resnet18`, `resnet50`) have no twin and are always written in this layout (torchvision's keys).

The keys of both layouts are the same for STCN, since jaxvos and its twin name their parameters after the
official code; an STM state dict differs from the official one only by those four buffers.
"""

import os
from typing import Any, Mapping

import jax
import numpy as np

import jaxvos
from data_pipelines.errors import DataError
from jaxvos.convert import families, from_torch, rules, swiftnet_torch, twin_families

LAYOUTS = ("twin", "official")
TWIN_FAMILIES = ("stcn", "stm", "swiftnet", "gam", "spvos")
# seoungwugoh/STM's encoders normalise their input with these buffers ([1 3 1 1]).
_STM_NORMALISATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def has_twin(family_name: str) -> bool:
  return family_name.split("-")[0] in TWIN_FAMILIES


def default_layout(family_name: str) -> str:
  return "twin" if has_twin(family_name) else "official"


def state_dict(family: Any, variables: Any, layout: str, source: str = "checkpoint") -> dict[str, np.ndarray]:
  """The state dict (NumPy) of `variables` in `layout` (see the module docstring)."""
  if layout == "twin" and not has_twin(family.name):
    raise DataError(source, f"{family.name} has no PyTorch twin (twins: {', '.join(TWIN_FAMILIES)}); "
                    "use --layout official")
  converter = twin_families.TWIN_RULES.get(family.name.split("-")[0])
  if converter is not None:  # no official code: the twin's keys are the only layout
    if layout == "official":
      raise DataError(source, f"{family.name} has no official PyTorch code to load a state dict; use --layout twin")
    return converter.export_state_dict(variables)
  exported = from_torch.export_state_dict(family, variables, source)
  if layout == "official" and family.name.split("-")[0] == "stm":
    for encoder in ("Encoder_M", "Encoder_Q"):
      for name, values in _STM_NORMALISATION.items():
        exported[f"{encoder}.{name}"] = np.asarray(values, np.float32).reshape(1, 3, 1, 1)
  if layout == "official" and family.name.split("-")[0] == "swiftnet":
    if family.config.lae_norm is not None:
      raise DataError(source, f"{family.name} rescales its LAE's output (lae_norm={family.config.lae_norm}), which "
                      "the released model does not: its code would compute another model; use --layout twin")
    exported = swiftnet_torch.official_state_dict(exported)
  return exported


def write(path: str | os.PathLike, family: Any, variables: Any, layout: str | None = None,
          source: str = "checkpoint") -> tuple[str, int]:
  """Writes `variables` of `family` as a PyTorch file; returns (layout, number of keys).

  Raises:
    DataError: an existing file (nothing is overwritten), or a layout the family does not have.
  """
  path = os.fspath(path)
  layout = layout or default_layout(family.name)
  exported = state_dict(family, variables, layout, source)
  if layout == "official":
    from_torch.write_state_dict(exported, path)
    return layout, len(exported)
  if os.path.exists(path):
    raise DataError(path, "exists; nothing is overwritten")
  torch = from_torch._torch(path)  # pylint: disable=protected-access  (the one place that says how to install it)
  from jaxvos.torch import checkpoint  # pylint: disable=g-import-not-at-top
  tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in exported.items()}
  checkpoint.save(path, family.name, families.config_dict(family), tensors, jaxvos.__version__)
  return layout, len(exported)


def read_twin(path: str | os.PathLike) -> dict[str, Any] | None:
  """The contents of a twin checkpoint at `path` (state dict as NumPy), or None for any other file."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
  except Exception:  # pylint: disable=broad-except  (not a twin file: `from_torch.read_state_dict` reports why)
    return None
  if not isinstance(payload, Mapping) or not {"family", "config", "state_dict"} <= set(payload):
    return None
  tensors = payload["state_dict"]
  return {**payload, "state_dict": {key: (value.float() if value.is_floating_point() else value).numpy()
                                    for key, value in tensors.items()}}


def import_twin(payload: Mapping[str, Any], family_name: str | None = None, source: str = "checkpoint"
                ) -> tuple[Any, dict, list[str]]:
  """(family, variables, notes) of a twin checkpoint's contents (`read_twin`).

  The family is the file's, or `family_name` of the same family (e.g. `stcn` for a file of `stcn-r18`: its
  config is the file's either way).

  Raises:
    DataError: naming `source`: another family, a config the family does not take, keys or shapes that do not fit.
  """
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  name = family_name or payload["family"]
  if name.split("-")[0] != str(payload["family"]).split("-")[0]:
    raise DataError(source, f"holds a {payload['family']} model, not {name} (--family)")
  try:
    family = registry.from_config(name, dict(payload["config"]))
  except (TypeError, ValueError) as error:
    raise DataError(source, f"cannot build {name} from the file's config: {error}") from None
  converter = twin_families.TWIN_RULES.get(family.name.split("-")[0])
  table = converter.table if converter is not None else rules.rules_for(family.name)
  flat, notes = (converter.import_state_dict(payload["state_dict"], source) if converter is not None
                 else rules.torch_to_flax(payload["state_dict"], table, source))
  rules.check_variables({path: value.shape for path, value in flat.items()}, families.variable_shapes(family),
                        table, source, family.name)
  return family, rules.unflatten_variables(flat), notes


def variables_equal(a: Any, b: Any) -> bool:
  """Same paths, shapes, dtypes and bits (for round-trip checks)."""
  flat_a = {path: np.asarray(jax.device_get(value)) for path, value in rules.flatten_variables(a).items()}
  flat_b = {path: np.asarray(jax.device_get(value)) for path, value in rules.flatten_variables(b).items()}
  return flat_a.keys() == flat_b.keys() and all(
      flat_a[k].dtype == flat_b[k].dtype and flat_a[k].shape == flat_b[k].shape
      and np.array_equal(np.atleast_1d(flat_a[k]).view(np.uint8), np.atleast_1d(flat_b[k]).view(np.uint8))
      for k in flat_a)
