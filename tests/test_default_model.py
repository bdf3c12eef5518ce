"""The default model shipped in the package: found, loaded at its working size, and trained (it beats copying the
first mask on a real DAVIS sequence it never saw)."""

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

import jaxvos
from jaxvos.cli import main as cli_main
from jaxvos.convert import io as convert_io

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
BLACKSWAN = os.path.join(DATA, "davis-examples-480p")


def test_the_default_model_is_small_and_says_how_it_was_made():
  path = convert_io.default_model()
  assert os.path.getsize(os.path.join(path, convert_io.VARIABLES_FILE)) <= 10 * 2**20
  with open(os.path.join(path, convert_io.MODEL_FILE), encoding="utf-8") as f:
    meta = json.load(f)
  assert meta["trained"] and meta["scores"] and convert_io.working_size(path) == meta["inference"]["size"]
  assert os.path.isfile(os.path.join(path, "LICENCE.md"))


@pytest.mark.skipif(not os.path.isdir(BLACKSWAN), reason="needs ../shared/data")
def test_the_default_model_follows_an_unseen_object_better_than_copying_its_first_mask(tmp_path, capsys):
  """blackswan (DAVIS 2016 val, never trained on), 12 frames through `segment` with neither --model nor
  --checkpoint: the default model at its working size, no random-weights warning, J above the copy baseline."""
  frames = os.path.join(BLACKSWAN, "JPEGImages", "480p", "blackswan")
  masks = os.path.join(BLACKSWAN, "Annotations", "480p", "blackswan")
  names = sorted(os.listdir(frames))[:24:2]  # every 2nd frame: the swan moves more between them
  os.makedirs(tmp_path / "frames")
  for index, name in enumerate(names):  # renumbered: a gap in the numbers is a warning
    os.link(os.path.join(frames, name), tmp_path / "frames" / f"{index:05d}.jpg")
  first = np.array(Image.open(os.path.join(masks, names[0].replace(".jpg", ".png")))) > 127
  Image.fromarray(first.astype(np.uint8)).save(tmp_path / "first.png")
  assert cli_main.main(["segment", "--frames", str(tmp_path / "frames"), "--masks", str(tmp_path / "first.png"),
                        "--out", str(tmp_path / "out")]) == 0
  err = capsys.readouterr().err
  assert "the default model (stcn-tiny" in err and "random weights" not in err
  ours, copied = [], []
  for index, name in enumerate(names[1:], 1):
    truth = np.array(Image.open(os.path.join(masks, name.replace(".jpg", ".png")))) > 127
    predicted = np.array(Image.open(tmp_path / "out" / f"{index:05d}.png")) == 1
    ours.append(iou(truth, predicted))
    copied.append(iou(truth, first))
  assert np.mean(ours) > np.mean(copied) + 0.05, (np.mean(ours), np.mean(copied))


def iou(a: np.ndarray, b: np.ndarray) -> float:
  return float((a & b).sum() / max((a | b).sum(), 1))


def test_load_without_a_name_is_the_default_model():
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no random-weights warning
    model = jaxvos.load()
  assert model.name == "stcn-tiny" and model.size == convert_io.working_size(convert_io.default_model())
  assert jaxvos.load(size=96).size == 96
