"""Benchmarks behind `python -m jaxvos bench <name>`: one module per benchmark, each with `DESCRIPTION`,
`add_arguments(parser)` and `run(args) -> int`. Results and commands are recorded in `experiments/README.md`."""
