"""`python -m jaxvos bench <benchmark>`: speed benchmarks, one sub-command per module in `jaxvos/bench/`.

    python -m jaxvos bench metric     J&F with jaxvos and with the official DAVIS functions, side by side
    python -m jaxvos bench segment    per-frame latency and peak memory of jaxvos and PyTorch STCN by video length
    python -m jaxvos bench train      training clips per second for a config and a device count
"""

import importlib

DESCRIPTION = "Speed benchmarks; each prints its measurements (record them in experiments/README.md)."

# name -> (module, one-line help).
BENCHMARKS = {
    "metric": ("jaxvos.bench.metric", "J&F speed: jaxvos against the official DAVIS functions on one workload"),
    "segment": ("jaxvos.bench.segment", "per-frame latency and peak memory: jaxvos against PyTorch STCN"),
    "train": ("jaxvos.bench.train", "training throughput (clips/s) of a config on N devices"),
}


def add_arguments(parser):
  benchmarks = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
  for name, (module_name, help_text) in BENCHMARKS.items():
    module = importlib.import_module(module_name)
    sub = benchmarks.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text))
    module.add_arguments(sub)
    sub.set_defaults(run_benchmark=module.run)


def run(args) -> int:
  return args.run_benchmark(args)
