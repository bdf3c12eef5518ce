"""A SpVOS checkpoint that reuses by the change guard alone, made from a trained dense STCN without training.

With `force="compute"` and `change_threshold` set, every gated 3x3 convolution computes the tiles whose receptive
field's input changed by more than the threshold (times the mean pixel norm) since the input their output was
computed from, and reuses the others: the dense model's weights, no learnt gate (their parameters stay at their
initialisation and are not read). Session 21 (`experiments/README.md`) found this beats the trained gates.
`--read-threshold` adds the read guard (`jaxvos.memory.key_value`: a query position whose key barely moved keeps its
memory read-out while the memory is unchanged; session 22).

    python experiments/spvos_guarded.py --dense default --out RUNS/spvos-guard-t16 --tile 16,16 \\
        --change-threshold 0.5 --refresh-every 1000
    python -m jaxvos bench davis --checkpoints RUNS/spvos-guard-t16,default --dense-twins \\
        --davis-root ../shared/data/davis2016-240p --sequences dog-agility,motorbike,soccerball
"""

import argparse
import os
import sys

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.convert import graft, io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.convert import rules  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models import registry  # noqa: E402  pylint: disable=g-import-not-at-top


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dense", default="default", help="a trained STCN checkpoint (`default`: the shipped model)")
  parser.add_argument("--out", required=True, help="the new checkpoint directory (must not exist)")
  parser.add_argument("--tile", default="16,16", help="decision tile in frame pixels: rows,columns")
  parser.add_argument("--change-threshold", type=float, default=0.5)
  parser.add_argument("--refresh-every", type=int, default=1000, help="a dense frame every this many")
  parser.add_argument("--read-threshold", type=float, default=None, help="the read guard's (default: off)")
  args = parser.parse_args()
  dense_path = io.default_model() if args.dense == "default" else args.dense
  dense_family, dense_variables = io.load_model(dense_path)
  name = dense_family.name.replace("stcn", "spvos")
  family = registry.build(name, **{**registry.config_dict(dense_family), "force": "compute",
                                   "change_threshold": args.change_threshold, "refresh_every": args.refresh_every,
                                   "tile_pixels": tuple(int(v) for v in args.tile.split(",")),
                                   "read_threshold": args.read_threshold})
  fresh = rules.flatten_variables(jax.device_get(family.init(jax.random.key(0))))
  grafted, _ = graft.graft(rules.flatten_variables(jax.device_get(dense_variables)), fresh,
                           graft.rules_for(dense_family.name, name), source_name=dense_path, model=name)
  io.save_model(args.out, family, rules.unflatten_variables(grafted), inference_size=io.working_size(dense_path),
                source=f"experiments/spvos_guarded.py from {os.path.abspath(dense_path)}",
                notes=[f"change guard only: force=compute, change_threshold={args.change_threshold}, tile "
                       f"{args.tile}, refresh_every={args.refresh_every}, read_threshold={args.read_threshold}; "
                       "the gates' parameters are not read"])
  print(f"wrote {args.out} ({name}, working size {io.working_size(args.out)})")


if __name__ == "__main__":
  main()
