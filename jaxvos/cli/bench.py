"""`jaxvos bench <benchmark>`: speed benchmarks, one sub-command per module in `jaxvos/bench/`.

    jaxvos bench metric     J&F with jaxvos and with the official DAVIS functions, side by side
    jaxvos bench segment    per-frame latency and peak memory of jaxvos and PyTorch STCN by video length;
                            with --backends jax,onnx,torch: one model run by each backend of `segment`, side by side
    jaxvos bench train      training clips per second for a config and a device count
    jaxvos bench sparse     time saved by sparse convolution (see its --help)
    jaxvos bench flops      MACs per layer, dense and as executed by SpVOS's gates
    jaxvos bench memory     peak memory and latency against resolution and video length
    jaxvos bench davis      trained models side by side on DAVIS sequences: J&F, MACs, ms per frame

A benchmark module that sets `ACCEPTS_EXTRA = True` receives unparsed arguments in `args.extra` (the
`--config.KEY=VALUE` overrides of `bench train`, as for `jaxvos train`).
"""

import importlib

DESCRIPTION = """Speed and memory benchmarks; each prints its measurements (record them in experiments/README.md
with the command and the device). `jaxvos bench <benchmark> --help` describes each."""
ACCEPTS_EXTRA = True  # for the benchmarks that take --config.KEY=VALUE overrides

# name -> (module, one-line help).
BENCHMARKS = {
    "metric": ("jaxvos.bench.metric", "J&F speed: jaxvos against the official DAVIS functions on one workload"),
    "segment": ("jaxvos.bench.segment", "per-frame latency and peak memory: jaxvos against PyTorch STCN"),
    "train": ("jaxvos.bench.train", "training throughput (clips/s) of a config on N devices"),
    "sparse": ("jaxvos.bench.sparse", "sparse convolution: time saved against the dense layer"),
    "flops": ("jaxvos.bench.flops", "MACs per layer of a model, dense and as executed by its gates"),
    "memory": ("jaxvos.bench.memory", "peak memory and latency against resolution and video length (GAM Fig. 1)"),
    "davis": ("jaxvos.bench.davis", "trained models side by side on DAVIS sequences: J&F, MACs, ms per frame"),
}


def add_arguments(parser):
  benchmarks = parser.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
  for name, (module_name, help_text) in BENCHMARKS.items():
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError:  # a benchmark whose module is not in this checkout
      continue
    sub = benchmarks.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text),
                                formatter_class=parser.formatter_class)
    module.add_arguments(sub)
    if name == "segment":
      sub.add_argument("--backends", metavar="LIST", help="instead: per-frame latency of --model (random weights) "
                       "run by each of these backends of `segment` (jax, onnx, torch), interleaved in one process, "
                       "at --size with --objects, over the longest of --lengths (jaxvos.bench.backends)")
    sub.set_defaults(run_benchmark=module.run, benchmark_parser=sub,
                     benchmark_extra=getattr(module, "ACCEPTS_EXTRA", False))


def run(args) -> int:
  if args.extra and not args.benchmark_extra:
    args.benchmark_parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
  if getattr(args, "backends", None):
    from jaxvos.bench import backends  # pylint: disable=g-import-not-at-top
    return backends.run(args)
  return args.run_benchmark(args)
