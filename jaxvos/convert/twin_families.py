"""GAM and SpVOS variables <-> twin checkpoints (`jaxvos.torch.checkpoint`, `jaxvos.torch.gam`, `jaxvos.torch.spvos`).

GAM has no public reference code, so its PyTorch keys are jaxvos's paths in PyTorch spelling (the twin is named
to fit): the generic rules of `jaxvos.convert.rules` with GAM's `nn.Sequential` containers (torchvision's
`layer1..3`, projection shortcuts, CBAM's MLP), plus one leaf the generic rules have no kind for: CAM's scalar
`cam/alpha` (a 0-d parameter, `cam.alpha`), copied as it is. SpVOS's keys are STCN's (`rules.STCN`) plus the
gates beside each gated convolution (`key_encoder.res2.0.conv1.gate.embed.weight`, a linear layer, and
`...gate.logits.weight`, a convolution), which the generic rules cover.

    write(path, family, variables)                 # what `convert to-torch` writes for a twin family
    family, variables, notes = import_twin(read_twin(path))   # and what `convert from-torch` reads back

The round trip is bit-identical, config included.
"""

import dataclasses
import os
from typing import Any, Mapping

import jax
import numpy as np

import jaxvos
from data_pipelines.errors import DataError
from jaxvos.convert import families, rules

GAM_RULES = rules.FamilyRules(sequential=r"layer\d+|downsample|mlp")


@dataclasses.dataclass(frozen=True)
class TwinRules:
  """A family's conversion: the generic rule table, and 0-d parameters (Flax path -> PyTorch key) beside it."""
  table: rules.FamilyRules
  scalars: Mapping[rules.FlaxPath, str] = dataclasses.field(default_factory=dict)

  def export_state_dict(self, variables: Any) -> dict[str, np.ndarray]:
    """jaxvos variables -> the twin's state dict (NumPy; BatchNorm's `num_batches_tracked` as 0)."""
    flat = {path: np.asarray(jax.device_get(value)) for path, value in rules.flatten_variables(variables).items()}
    scalars = {self.scalars[path]: np.array(value, np.float32) for path, value in flat.items() if path in self.scalars}
    rest = {path: value for path, value in flat.items() if path not in self.scalars}
    return {**rules.flax_to_torch(rest, self.table), **scalars}

  def import_state_dict(self, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"
                        ) -> tuple[dict[rules.FlaxPath, np.ndarray], list[str]]:
    """The twin's state dict -> flat Flax variables, and notes on dropped keys (`rules.torch_to_flax`)."""
    keys = {key: path for path, key in self.scalars.items()}
    rest = {key: value for key, value in state_dict.items() if key not in keys}
    flat, notes = rules.torch_to_flax(rest, self.table, source)
    flat.update({keys[key]: np.array(value, np.float32) for key, value in state_dict.items() if key in keys})
    return flat, notes


TWIN_RULES = {"gam": TwinRules(GAM_RULES, {("params", "cam", "alpha"): "cam.alpha"}), "spvos": TwinRules(rules.STCN)}


def twin_rules(family_name: str) -> TwinRules:
  """The conversion of a registry name (`gam-tiny` -> gam's)."""
  base = family_name.split("-")[0]
  if base not in TWIN_RULES:
    raise ValueError(f"no twin conversion for {family_name!r} here (known: {', '.join(TWIN_RULES)})")
  return TWIN_RULES[base]


def write(path: str | os.PathLike, family: Any, variables: Any) -> int:
  """Writes a twin checkpoint of `family`'s `variables`; returns the number of keys.

  Raises:
    DataError: an existing file (nothing is overwritten).
  """
  path = os.fspath(path)
  if os.path.exists(path):
    raise DataError(path, "exists; nothing is overwritten")
  import torch  # pylint: disable=g-import-not-at-top
  from jaxvos.torch import checkpoint  # pylint: disable=g-import-not-at-top
  exported = twin_rules(family.name).export_state_dict(variables)
  tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in exported.items()}
  checkpoint.save(path, family.name, families.config_dict(family), tensors, jaxvos.__version__)
  return len(exported)


def import_twin(payload: Mapping[str, Any], source: str = "checkpoint") -> tuple[Any, dict, list[str]]:
  """(family, variables, notes) of a twin checkpoint's contents (`jaxvos.convert.to_torch_twins.read_twin`).

  Raises:
    DataError: naming `source`: a config the family does not take, keys or shapes that do not fit.
  """
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  name = str(payload["family"])
  try:
    family = registry.from_config(name, dict(payload["config"]))
  except (TypeError, ValueError) as error:
    raise DataError(source, f"cannot build {name} from the file's config: {error}") from None
  converter = twin_rules(name)
  flat, notes = converter.import_state_dict(payload["state_dict"], source)
  rules.check_variables({path: np.shape(value) for path, value in flat.items()}, families.variable_shapes(family),
                        converter.table, source, family.name)
  return family, rules.unflatten_variables(flat), notes
