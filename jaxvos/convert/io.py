"""jaxvos checkpoints: a directory of `model.json` and `variables.safetensors`.

    <dir>/model.json               {"format": 1, "family": "stcn", "config": {...}, "jaxvos_version": "...",
                                    "source": "...", "notes": [...]}
    <dir>/variables.safetensors    float32 arrays keyed by flat path: "params/key_encoder/conv1/kernel",
                                    "batch_stats/key_encoder/bn1/mean", ...

`config` is `dataclasses.asdict(family.config)`; loading rebuilds the family from it and checks every variable
against the family's own variable tree, so a checkpoint never loads into a model it does not fit. An optional
`"inference": {"size": N}` is the shorter side the model was trained to see (`working_size`): `segment` and
`jaxvos.load` use it when no size is given; `jaxvos train` records the size its validation ran at.

The default model (`DEFAULT_MODEL`, `jaxvos/default/`) is such a directory shipped in the package: what
`jaxvos segment` runs without --model or --checkpoint (how it was trained: its model.json and the README).
"""

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

import jaxvos
from data_pipelines.errors import DataError
from jaxvos.convert import families
from jaxvos.convert.rules import check_variables, flatten_variables, unflatten_variables

DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "default")
DEFAULT_SIZE = 480  # the shorter side a model without a working size sees
MODEL_FILE = "model.json"
VARIABLES_FILE = "variables.safetensors"
FORMAT = 1


def save_model(path: str | os.PathLike, family: Any, variables: Any, *, source: str | None = None,
               notes: Sequence[str] = (), inference_size: int | None = None) -> None:
  """Writes `variables` of `family` as a checkpoint directory at `path`.

  Args:
    path: the directory; created if missing, refused if it exists and is not empty (nothing is overwritten).
    family: the family (or `families.Backbone`) the variables belong to.
    variables: `{"params": ..., "batch_stats": ...}`, JAX or NumPy arrays.
    source: where the variables came from (e.g. the imported PyTorch file), recorded in model.json.
    notes: lines recorded in model.json (e.g. which keys an import dropped).
    inference_size: the working size (`working_size`), recorded as `"inference": {"size": N}` when given.
  """
  path = os.fspath(path)
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise DataError(path, "exists and is not an empty directory; nothing is overwritten")
  check_variables({key: np.shape(value) for key, value in flatten_variables(variables).items()},
                  families.variable_shapes(family), None, path, family.name)
  tensors = {"/".join(key): np.array(value, dtype=np.float32, order="C")
             for key, value in flatten_variables(variables).items()}
  meta = {"format": FORMAT, "family": family.name, "config": families.config_dict(family),
          "jaxvos_version": jaxvos.__version__, "source": source, "notes": list(notes)}
  if inference_size is not None:
    meta["inference"] = {"size": int(inference_size)}
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  # Written with open() rather than safetensors' save_file, which makes the file private to its owner.
  with open(os.path.join(path, VARIABLES_FILE + ".tmp"), "wb") as f:
    f.write(save(tensors, metadata={"format": str(FORMAT)}))
  with open(os.path.join(path, MODEL_FILE + ".tmp"), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
  # model.json last: a directory without it is not a checkpoint, so an interrupted save is never loaded.
  os.replace(os.path.join(path, VARIABLES_FILE + ".tmp"), os.path.join(path, VARIABLES_FILE))
  os.replace(os.path.join(path, MODEL_FILE + ".tmp"), os.path.join(path, MODEL_FILE))


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
  """The parsed model.json of the checkpoint directory `path`."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    hint = (" (a PyTorch file? import it with `python -m jaxvos convert from-torch`)"
            if path.endswith((".pth", ".pt")) else "")
    raise DataError(path, f"not a jaxvos checkpoint directory{hint}")
  meta_path = os.path.join(path, MODEL_FILE)
  if not os.path.isfile(meta_path):
    raise DataError(meta_path, f"not found: a jaxvos checkpoint directory holds {MODEL_FILE} and {VARIABLES_FILE}")
  try:
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise DataError(meta_path, f"cannot be read as JSON ({error})") from None
  if not isinstance(meta, dict) or not isinstance(meta.get("family"), str) or not isinstance(
      meta.get("config"), dict):
    raise DataError(meta_path, "is not a jaxvos model description (needs a \"family\" name and a \"config\")")
  if meta.get("format", FORMAT) > FORMAT:
    raise DataError(meta_path, f"format {meta['format']} is newer than this jaxvos reads ({FORMAT})")
  return meta


def load_model(path: str | os.PathLike) -> tuple[Any, dict]:
  """Reads a checkpoint directory: returns (family, variables) with variables as nested dicts of NumPy arrays.

  Raises:
    DataError: a missing or corrupt directory, an unknown family or config, or variables that do not fit the
      family (naming the first offending variables).
  """
  path = os.fspath(path)
  meta = read_meta(path)
  meta_path = os.path.join(path, MODEL_FILE)
  try:
    family = families.build(meta["family"], meta["config"])
  except (ValueError, TypeError) as error:
    raise DataError(meta_path, f"cannot build family {meta['family']!r}: {error}") from None
  variables_path = os.path.join(path, VARIABLES_FILE)
  if not os.path.isfile(variables_path):
    raise DataError(variables_path, "not found")
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    tensors = load_file(variables_path)
  except Exception as error:  # pylint: disable=broad-except  (safetensors raises its own error types)
    raise DataError(variables_path, f"cannot be read as safetensors ({type(error).__name__}: {error})") from None
  flat = {tuple(key.split("/")): value for key, value in tensors.items()}
  check_variables({key: value.shape for key, value in flat.items()}, families.variable_shapes(family), None,
                  variables_path, family.name)
  return family, unflatten_variables(flat)


def default_model() -> str:
  """The directory of the default model shipped in the package.

  Raises:
    DataError: it is missing (a build of jaxvos without its package data).
  """
  path = os.path.normpath(DEFAULT_MODEL)
  if not os.path.isfile(os.path.join(path, MODEL_FILE)):
    raise DataError(path, "the default model is not installed (reinstall jaxvos, or give --checkpoint DIR)")
  return path


def working_size(path: str | os.PathLike) -> int:
  """The shorter side the checkpoint at `path` was trained to see (its model.json), else `DEFAULT_SIZE`."""
  size = read_meta(path).get("inference", {}).get("size")
  return int(size) if isinstance(size, int) and (size == -1 or size >= 16) else DEFAULT_SIZE
