"""Copies a trained checkpoint into the package as the default model (`jaxvos/default/`).

    python experiments/ship_default.py RUN/export/best --size 96 --trained "..." --scores "..."

Writes `jaxvos/default/model.json` (the checkpoint's, plus `"inference": {"size": N}`, the shorter side the model
was trained to see, and `"trained"` / `"scores"` lines saying how it was made and what it scores) and
`variables.safetensors`. Refuses to replace a default already there unless `--replace`; refuses weights over
10 MB (the repository's limit for the default model).
"""

import argparse
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxvos.convert import io as convert_io  # noqa: E402  pylint: disable=wrong-import-position

MAX_BYTES = 10 * 2**20


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("checkpoint", help="a checkpoint directory (a training run's export/best or export/final)")
  parser.add_argument("--size", type=int, required=True, help="the shorter side the model was trained to see")
  parser.add_argument("--trained", required=True, help="one line: data, recipe and command")
  parser.add_argument("--scores", required=True, help="one line: what it scores, where")
  parser.add_argument("--replace", action="store_true", help="replace the default model already shipped")
  args = parser.parse_args()
  convert_io.load_model(args.checkpoint)  # a checkpoint that loads, or a one-line error
  source = os.path.join(args.checkpoint, convert_io.VARIABLES_FILE)
  if os.path.getsize(source) > MAX_BYTES:
    raise SystemExit(f"error: {source}: {os.path.getsize(source) / 2**20:.1f} MB is over the 10 MB limit")
  target = os.path.normpath(convert_io.DEFAULT_MODEL)
  if os.path.exists(os.path.join(target, convert_io.MODEL_FILE)) and not args.replace:
    raise SystemExit(f"error: {target}: a default model is already there (--replace replaces it)")
  meta = convert_io.read_meta(args.checkpoint)
  meta.update(inference={"size": args.size}, trained=args.trained, scores=args.scores)
  os.makedirs(target, exist_ok=True)
  shutil.copyfile(source, os.path.join(target, convert_io.VARIABLES_FILE))
  with open(os.path.join(target, convert_io.MODEL_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
  print(f"default model: {meta['family']} at size {args.size} in {target}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
