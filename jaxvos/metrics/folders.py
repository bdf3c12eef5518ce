"""Reading ground truth and predictions in DAVIS layout for evaluation, with the official rules and strict checks.

Layout: `<gt>/<sequence>/<frame>.png` and `<pred>/<sequence>/<frame>.png`. Ground-truth frames are the `*.png`
files of the sequence folder sorted lexicographically (`0.png, 1.png, 10.png, 2.png`, the official order, not
the numeric order that `data_pipelines` uses for frames). Predictions are read only for the scored frames (all but
the first and the last), as the official code does.

Every problem is a `DataError` naming the file: the official script exits 0 without a result on some of them.
"""

import os

import numpy as np
from PIL import Image

from data_pipelines.errors import DataError
from jaxvos.metrics import davis

# Index maps: palette (`P`) or grey (`L`) PNGs. Anything else (RGB, RGBA, 16-bit grey) is not read as ids.
ID_MODES = ("P", "L")


def list_sequences(gt_dir: str) -> list[str]:
  """The sequence folders of a ground-truth folder, sorted."""
  if not os.path.isdir(gt_dir):
    raise DataError(gt_dir, "ground-truth folder not found")
  names = sorted(n for n in os.listdir(gt_dir) if not n.startswith(".") and os.path.isdir(os.path.join(gt_dir, n)))
  if not names:
    raise DataError(gt_dir, "no sequence folders in the ground-truth folder")
  return names


def read_sequence_list(spec: str) -> list[str]:
  """Sequence names from `a,b,c` or `@file` (one name per line; blank lines and `#` comments skipped)."""
  if spec.startswith("@"):
    path = spec[1:]
    try:
      with open(path) as file:
        lines = file.read().splitlines()
    except OSError as error:
      raise DataError(path, f"cannot read the sequence list: {error.strerror}") from None
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not names:
      raise DataError(path, "the sequence list is empty")
    return names
  names = [name.strip() for name in spec.split(",") if name.strip()]
  if not names:
    raise DataError(spec, "no sequence names given")
  return names


def ground_truth_files(sequence_dir: str) -> list[str]:
  """The ground-truth PNGs of a sequence in the official (lexicographic) order; at least 3 of them."""
  if not os.path.isdir(sequence_dir):
    raise DataError(sequence_dir, "ground-truth sequence folder not found")
  names = sorted(n for n in os.listdir(sequence_dir) if n.endswith(".png") and not n.startswith("."))
  if not names:
    raise DataError(sequence_dir, "no .png ground-truth masks in this folder")
  if len(names) < 3:
    raise DataError(sequence_dir, f"has {len(names)} ground-truth frame(s); a sequence needs at least 3 (the "
                    "first and the last are not scored)")
  return [os.path.join(sequence_dir, n) for n in names]


def read_ids(path: str, what: str) -> np.ndarray:
  """Reads a `P` or `L` PNG as uint8 [h w] ids; `what` ("ground-truth mask", "prediction") names it in errors."""
  try:
    with Image.open(path) as image:
      image.load()
      mode = image.mode
      values = np.asarray(image) if mode in ID_MODES else None
  except FileNotFoundError:
    raise DataError(path, f"{what} not found") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    raise DataError(path, f"{what} cannot be decoded as a PNG (corrupt or truncated?): {error}") from None
  if values is None:
    raise DataError(path, f"{what} is a {mode} image; expected an indexed (P) or grey (L) PNG whose pixel "
                    "values are object ids")
  return values


def read_sequence(gt_dir: str, pred_dir: str, sequence: str, *, single_object: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Reads one sequence for `davis.evaluate_sequence`, checking everything the protocol needs.

  Returns:
    (ground truth uint8 [T h w], predictions uint8 [T h w] with zeros for the unscored first and last frame,
    the T frame names without extension).
  """
  gt_files = ground_truth_files(os.path.join(gt_dir, sequence))
  gt_ids = _read_ground_truth(gt_files)
  _, num_objects = davis.ground_truth_ids(gt_ids, single_object)
  if num_objects == 0:
    hint = " (0/255 DAVIS 2016 masks: pass --single-object)" if (gt_ids[0] == davis.VOID_ID).any() else ""
    raise DataError(gt_files[0], f"the first ground-truth frame has no object{hint}")
  names = [os.path.splitext(os.path.basename(path))[0] for path in gt_files]
  pred_seq_dir = os.path.join(pred_dir, sequence)
  if not os.path.isdir(pred_seq_dir):
    raise DataError(pred_seq_dir, f"prediction folder for sequence {sequence} not found")
  pred_ids = np.zeros_like(gt_ids)
  for index in range(1, len(names) - 1):
    path = os.path.join(pred_seq_dir, names[index] + ".png")
    if not os.path.isfile(path):
      raise DataError(path, f"missing prediction for ground-truth frame {os.path.basename(gt_files[index])} of "
                      f"sequence {sequence}")
    pred_ids[index] = _check_prediction(read_ids(path, "prediction"), gt_ids.shape[1:], num_objects,
                                        single_object, path)
  return gt_ids, pred_ids, names


def _read_ground_truth(gt_files: list[str]) -> np.ndarray:
  """uint8 [T h w] ground-truth ids; every mask must have the size of the first one."""
  frames = []
  for path in gt_files:
    ids = read_ids(path, "ground-truth mask")
    if frames and ids.shape != frames[0].shape:
      raise DataError(path, f"ground-truth mask is {ids.shape[1]}x{ids.shape[0]} but the sequence's first mask "
                      f"is {frames[0].shape[1]}x{frames[0].shape[0]}")
    frames.append(ids)
  return np.stack(frames)


def _check_prediction(ids: np.ndarray, shape: tuple[int, int], num_objects: int, single_object: bool,
                      path: str) -> np.ndarray:
  """The prediction's ids, or a `DataError` for a size mismatch or an id above the number of objects."""
  if ids.shape != tuple(shape):
    raise DataError(path, f"prediction is {ids.shape[1]}x{ids.shape[0]} but the ground truth is "
                    f"{shape[1]}x{shape[0]}")
  if single_object:
    return ids
  top = int(ids.max(initial=0))
  if top > num_objects:
    raise DataError(path, f"predicted id {top} but the sequence has {num_objects} object(s) (ids 1.."
                    f"{num_objects} in its first ground-truth frame)")
  return ids
